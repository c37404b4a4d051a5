//! `route_table`: routes of a VPC and the subnets that use them.

use crate::diag::Diags;
use crate::schema::{Field, FieldType, Kind, Update};
use crate::stack::{Resource, Stack, Val};

static ROUTE: [Field; 3] = [
    Field::required("destination", FieldType::Cidr, Update::InPlace, "Destination range, e.g. \"0.0.0.0/0\"."),
    Field::optional(
        "internet_gateway",
        FieldType::Ref(&["internet_gateway"]),
        None,
        Update::InPlace,
        "Target: an internet gateway.",
    ),
    Field::optional("nat_gateway", FieldType::Ref(&["nat_gateway"]), None, Update::InPlace, "Target: a NAT gateway."),
];

pub static KIND: Kind = Kind {
    name: "route_table",
    doc: "A route table with its routes and subnet associations.",
    fields: &[
        Field::required("vpc", FieldType::Ref(&["vpc"]), Update::Replace, "The VPC."),
        Field::optional(
            "routes",
            FieldType::List(&FieldType::Table(&ROUTE)),
            Some("[]"),
            Update::InPlace,
            "Routes besides the VPC-local one.",
        ),
        Field::optional(
            "subnets",
            FieldType::List(&FieldType::Ref(&["subnet"])),
            Some("[]"),
            Update::InPlace,
            "Subnets associated with this table.",
        ),
        Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own."),
    ],
    outputs: &[("id", "Route table id (rtb-...)")],
    check,
};

/// Each route has exactly one target.
fn check(r: &Resource, _: &Stack, d: &mut Diags) {
    let Some((Val::List(routes), _)) = r.fields.get("routes") else { return };
    for (i, (route, span)) in routes.iter().enumerate() {
        let Val::Table(t) = route else { continue };
        let targets = ["internet_gateway", "nat_gateway"].iter().filter(|k| t.contains_key(**k)).count();
        if targets != 1 {
            d.error(
                "bad-route",
                span.clone(),
                format!("{}.routes[{i}] needs exactly one target: internet_gateway or nat_gateway", r.address()),
                None,
            );
        }
    }
}
