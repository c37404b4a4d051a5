//! `subnet`: a range of a VPC in one availability zone; checks that it lies inside its VPC, does
//! not overlap its siblings, and names an availability zone the region has.

use crate::diag::Diags;
use crate::schema::{Field, FieldType, Kind, Update};
use crate::stack::{Resource, Stack};
use ipnet::Ipv4Net;

pub static KIND: Kind = Kind {
    name: "subnet",
    doc: "A subnet of a VPC in one availability zone.",
    fields: &[
        Field::required("vpc", FieldType::Ref(&["vpc"]), Update::Replace, "The VPC."),
        Field::required(
            "cidr",
            FieldType::Cidr,
            Update::Replace,
            "IPv4 range, inside the VPC's and overlapping no other subnet.",
        ),
        Field::required(
            "az",
            FieldType::String,
            Update::Replace,
            "Availability zone letter in the stack's region: \"a\", \"b\", ...",
        ),
        Field::optional(
            "public_ip_on_launch",
            FieldType::Bool,
            Some("false"),
            Update::InPlace,
            "Give instances launched here a public IPv4 address.",
        ),
        Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own."),
    ],
    outputs: &[("id", "Subnet id (subnet-...)"), ("availability_zone", "Full zone name")],
    check,
};

/// Availability-zone letters of the regions this product deploys to.
fn zones(region: &str) -> Option<&'static str> {
    Some(match region {
        "us-east-1" => "abcdef",
        "us-west-1" => "ac",
        "eu-west-3" | "eu-north-1" | "eu-central-1" | "eu-west-1" | "eu-west-2" | "us-east-2" | "us-west-2" => "abc",
        "eu-south-1" | "ap-southeast-1" | "ap-southeast-2" | "ap-northeast-1" | "ca-central-1" | "sa-east-1" => "abc",
        _ => return None,
    })
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    if let Some((az, span)) = r.str("az") {
        if let Some(letters) = zones(&stack.region) {
            if az.len() != 1 || !letters.contains(az) {
                d.error(
                    "unknown-az",
                    span,
                    format!("{} is in availability zone \"{az}\", which {} does not have", r.address(), stack.region),
                    Some(format!(
                        "{} has {}",
                        stack.region,
                        letters.chars().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
                    )),
                );
            }
        }
    }
    let (Some((cidr, cspan)), Some((vpc, _))) = (r.str("cidr"), r.str("vpc")) else { return };
    let Ok(net) = cidr.parse::<Ipv4Net>() else { return };
    if let Some(vnet) = stack.get(vpc).and_then(|v| v.str("cidr")).and_then(|(c, _)| c.parse::<Ipv4Net>().ok()) {
        if !vnet.contains(&net) {
            d.error(
                "subnet-outside-vpc",
                cspan.clone(),
                format!("{} ({net}) is not inside {vpc} ({vnet})", r.address()),
                Some(format!("choose a range inside {vnet}")),
            );
        }
    }
    // Report each overlapping pair once, at the later subnet.
    for other in stack.resources.iter().filter(|o| o.kind.name == "subnet") {
        if other.span.start >= r.span.start || other.str("vpc").map(|v| v.0) != Some(vpc) {
            continue;
        }
        if let Some(onet) = other.str("cidr").and_then(|(c, _)| c.parse::<Ipv4Net>().ok()) {
            if onet.contains(&net) || net.contains(&onet) {
                d.error(
                    "overlapping-subnets",
                    cspan.clone(),
                    format!("{} ({net}) overlaps {} ({onet})", r.address(), other.address()),
                    Some("subnets of one VPC need disjoint ranges".into()),
                );
            }
        }
    }
}
