//! `internet_gateway`: the VPC's door to the internet, attached to one VPC.

use crate::schema::{no_check, Field, FieldType, Kind, Update};

pub static KIND: Kind = Kind {
    name: "internet_gateway",
    doc: "An internet gateway, attached to its VPC.",
    fields: &[
        Field::required(
            "vpc",
            FieldType::Ref(&["vpc"]),
            Update::InPlace,
            "The VPC it is attached to (re-attached on change).",
        ),
        Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own."),
    ],
    outputs: &[("id", "Internet gateway id (igw-...)")],
    check: no_check,
};
