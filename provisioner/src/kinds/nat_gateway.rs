//! `nat_gateway`: outbound internet for private subnets (costs about $33-38 a month).

use crate::schema::{no_check, Field, FieldType, Kind, Update};

pub static KIND: Kind = Kind {
    name: "nat_gateway",
    doc: "A public NAT gateway in a public subnet, with an Elastic IP.",
    fields: &[
        Field::required("subnet", FieldType::Ref(&["subnet"]), Update::Replace, "The public subnet it sits in."),
        Field::required("eip", FieldType::Ref(&["eip"]), Update::Replace, "Its Elastic IP."),
        Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own."),
    ],
    outputs: &[("id", "NAT gateway id (nat-...)")],
    check: no_check,
};
