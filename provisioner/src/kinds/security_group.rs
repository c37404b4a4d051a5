//! `security_group`: a VPC firewall with ingress and egress rules whose source is a CIDR or
//! another (or the same) group.

use crate::diag::Diags;
use crate::schema::{Field, FieldType, Kind, Update};
use crate::stack::{table_str, Resource, Stack, Val};

static RULE: [Field; 7] = [
    Field::required("protocol", FieldType::Enum(&["tcp", "udp", "icmp", "all"]), Update::InPlace, "IP protocol."),
    Field::optional("from_port", FieldType::Int { min: 0, max: 65535 }, None, Update::InPlace, "First port (tcp/udp)."),
    Field::optional(
        "to_port",
        FieldType::Int { min: 0, max: 65535 },
        None,
        Update::InPlace,
        "Last port (tcp/udp); defaults to from_port.",
    ),
    Field::optional("cidr", FieldType::Cidr, None, Update::InPlace, "Peer range (exactly one of cidr, group, self)."),
    Field::optional("group", FieldType::Peer(&["security_group"]), None, Update::InPlace, "Peer security group."),
    Field::optional("self", FieldType::Bool, Some("false"), Update::InPlace, "Peer is this group itself."),
    Field::optional("description", FieldType::String, None, Update::InPlace, "Why the rule exists."),
];

pub static KIND: Kind = Kind {
    name: "security_group",
    doc: "A security group with its rules; rules are listed in plans under \"security\".",
    fields: &[
        Field::required("vpc", FieldType::Ref(&["vpc"]), Update::Replace, "The VPC."),
        Field::required(
            "description",
            FieldType::String,
            Update::Replace,
            "What the group is for (AWS cannot change it later).",
        ),
        Field::optional(
            "ingress",
            FieldType::List(&FieldType::Table(&RULE)),
            Some("[]"),
            Update::InPlace,
            "Inbound rules.",
        ),
        Field::optional(
            "egress",
            FieldType::List(&FieldType::Table(&RULE)),
            Some("[]"),
            Update::InPlace,
            "Outbound rules.",
        ),
        Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own."),
    ],
    outputs: &[("id", "Security group id (sg-...)")],
    check,
};

fn check(r: &Resource, _: &Stack, d: &mut Diags) {
    for dir in ["ingress", "egress"] {
        let Some((Val::List(rules), _)) = r.fields.get(dir) else { continue };
        for (i, (rule, span)) in rules.iter().enumerate() {
            let Val::Table(t) = rule else { continue };
            let path = format!("{}.{dir}[{i}]", r.address());
            let peers =
                [t.contains_key("cidr"), t.contains_key("group"), matches!(t.get("self"), Some((Val::Bool(true), _)))];
            if peers.iter().filter(|p| **p).count() != 1 {
                d.error(
                    "bad-rule",
                    span.clone(),
                    format!("{path} needs exactly one peer: cidr, group or self = true"),
                    Some("e.g. cidr = \"0.0.0.0/0\", or group = \"security_group.alb\"".into()),
                );
            }
            let port = |k: &str| match t.get(k) {
                Some((Val::Int(p), _)) => Some(*p),
                _ => None,
            };
            let proto = table_str(t, "protocol").unwrap_or("");
            match (proto, port("from_port"), port("to_port")) {
                ("tcp" | "udp", None, _) => d.error(
                    "bad-rule",
                    span.clone(),
                    format!("{path}: {proto} needs from_port"),
                    Some("add from_port (and to_port for a range)".into()),
                ),
                (_, Some(a), Some(b)) if a > b => {
                    d.error("bad-rule", span.clone(), format!("{path}: from_port {a} is above to_port {b}"), None)
                }
                _ => {}
            }
        }
    }
}
