//! `eip`: an Elastic IP address.

use crate::schema::{no_check, Field, FieldType, Kind, Update};

pub static KIND: Kind = Kind {
    name: "eip",
    doc: "An Elastic IP address in the VPC scope (for a NAT gateway, for example).",
    fields: &[Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own.")],
    outputs: &[("id", "Allocation id (eipalloc-...)"), ("public_ip", "The address")],
    check: no_check,
};
