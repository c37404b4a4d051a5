//! `subnet`: a range of a VPC in one availability zone; checks that it lies inside its VPC, does
//! not overlap its siblings, and names an availability zone the region has.

use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_of};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new("subnet", "A subnet of a VPC in one availability zone.", &Subnet)
    .fields(&[
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
        )
        .security(Security::Exposure(|v| v == true)),
        TAGS,
    ])
    .outputs(&[("id", "Subnet id (subnet-...)"), ("availability_zone", "Full zone name")])
    .check(check);

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    vpc: String,
    cidr: String,
    az: String,
    #[serde(default)]
    public_ip_on_launch: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Default, Serialize)]
struct Outputs {
    availability_zone: String,
}

struct Subnet;

async fn set_public_ip(cx: &Cx, id: &str, on: bool) -> Result<(), OpError> {
    ec2(cx)
        .modify_subnet_attribute()
        .subnet_id(id)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(on).build())
        .send()
        .await
        .map_err(|e| err("ModifySubnetAttribute", e))?;
    Ok(())
}

#[async_trait]
impl Typed for Subnet {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        if !tagged(cx, &["subnet"]).await? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut pages = ec2(cx).describe_subnets().filters(owned(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for sn in page.map_err(|e| err("DescribeSubnets", e))?.subnets() {
                let (Some(id), Some(address)) = (sn.subnet_id(), address_of(sn.tags())) else { continue };
                let zone = sn.availability_zone().unwrap_or_default();
                let letter = zone.strip_prefix(cx.region.as_str()).unwrap_or(zone);
                let attrs = Attrs {
                    vpc: sn.vpc_id().unwrap_or_default().to_owned(),
                    cidr: sn.cidr_block().unwrap_or_default().to_owned(),
                    az: letter.to_owned(),
                    public_ip_on_launch: sn.map_public_ip_on_launch().unwrap_or(false),
                    tags: tags_of(sn.tags()),
                };
                out.push(Found {
                    id: id.to_owned(),
                    address,
                    attrs,
                    outputs: Outputs { availability_zone: zone.to_owned() },
                });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let out = ec2(cx)
            .create_subnet()
            .vpc_id(&w.vpc)
            .cidr_block(&w.cidr)
            .availability_zone(format!("{}{}", cx.region, w.az))
            .tag_specifications(tag_spec(ResourceType::Subnet, &w.tags))
            .send()
            .await
            .map_err(|e| err("CreateSubnet", e))?;
        let id = out.subnet().and_then(|v| v.subnet_id()).ok_or_else(|| OpError::fatal("CreateSubnet", "no id"))?;
        let fresh = Attrs { public_ip_on_launch: false, ..w.clone() };
        cx.born(id, &fresh);
        Typed::update(self, cx, id, Some(&fresh), w).await?;
        Ok(id.to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        if h.public_ip_on_launch != w.public_ip_on_launch {
            set_public_ip(cx, id, w.public_ip_on_launch).await?;
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(ec2(cx).delete_subnet().subnet_id(id).send().await.map_err(|e| err("DeleteSubnet", e)))
    }
}

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
        let region = stack.region_of(r);
        if let Some(letters) = zones(region) {
            if az.len() != 1 || !letters.contains(az) {
                d.error(
                    "unknown-az",
                    span,
                    format!("{} is in availability zone \"{az}\", which {region} does not have", r.address()),
                    Some(format!(
                        "{region} has {}",
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
