//! `vpc`: a virtual network.

use crate::schema::{no_check, Field, FieldType, Kind, Update};

pub static KIND: Kind = Kind {
    name: "vpc",
    doc: "A virtual private cloud: the network every other network resource lives in.",
    fields: &[
        Field::required("cidr", FieldType::Cidr, Update::Replace, "IPv4 range of the VPC, /16 to /28."),
        Field::optional("dns_support", FieldType::Bool, Some("true"), Update::InPlace, "Amazon DNS server in the VPC."),
        Field::optional(
            "dns_hostnames",
            FieldType::Bool,
            Some("true"),
            Update::InPlace,
            "DNS hostnames for instances with public addresses.",
        ),
        Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own."),
    ],
    outputs: &[("id", "VPC id (vpc-...)")],
    check: no_check,
};
