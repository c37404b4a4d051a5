//! `vpc`: a virtual network.

use super::{ec2, err, owned, set_tags, tag_spec, tagged, tags_of};
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind =
    Kind::new("vpc", "A virtual private cloud: the network every other network resource lives in.", &Vpc)
        .fields(&[
            Field::required("cidr", FieldType::Cidr, Update::Replace, "IPv4 range of the VPC, /16 to /28."),
            Field::optional(
                "dns_support",
                FieldType::Bool,
                Some("true"),
                Update::InPlace,
                "Amazon DNS server in the VPC.",
            ),
            Field::optional(
                "dns_hostnames",
                FieldType::Bool,
                Some("true"),
                Update::InPlace,
                "DNS hostnames for instances with public addresses.",
            ),
            TAGS,
        ])
        .outputs(&[("id", "VPC id (vpc-...)")]);

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    cidr: String,
    #[serde(default)]
    dns_support: bool,
    #[serde(default)]
    dns_hostnames: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attrs {
    fn dns(&self) -> (bool, bool) {
        (self.dns_support, self.dns_hostnames)
    }
}

struct Vpc;

async fn attribute(cx: &Cx, id: &str, name: VpcAttributeName) -> Result<bool, OpError> {
    let out = ec2(cx)
        .describe_vpc_attribute()
        .vpc_id(id)
        .attribute(name.clone())
        .send()
        .await
        .map_err(|e| err("DescribeVpcAttribute", e))?;
    let v = match name {
        VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
        _ => out.enable_dns_support(),
    };
    Ok(v.and_then(AttributeBooleanValue::value).unwrap_or(false))
}

async fn set_dns(cx: &Cx, id: &str, have: (bool, bool), want: (bool, bool)) -> Result<(), OpError> {
    let flag = |on: bool| AttributeBooleanValue::builder().value(on).build();
    let support = async {
        if have.0 != want.0 {
            ec2(cx)
                .modify_vpc_attribute()
                .vpc_id(id)
                .enable_dns_support(flag(want.0))
                .send()
                .await
                .map_err(|e| err("ModifyVpcAttribute", e))?;
        }
        Ok::<_, OpError>(())
    };
    let hostnames = async {
        if have.1 != want.1 {
            ec2(cx)
                .modify_vpc_attribute()
                .vpc_id(id)
                .enable_dns_hostnames(flag(want.1))
                .send()
                .await
                .map_err(|e| err("ModifyVpcAttribute", e))?;
        }
        Ok::<_, OpError>(())
    };
    // Hostnames need DNS support: turn support on first and off last.
    if want.0 {
        support.await?;
        hostnames.await
    } else {
        hostnames.await?;
        support.await
    }
}

#[async_trait]
impl Typed for Vpc {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        if !tagged(cx, &["vpc"]).await? {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        let mut pages = ec2(cx).describe_vpcs().filters(owned(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for v in page.map_err(|e| err("DescribeVpcs", e))?.vpcs() {
                let (Some(id), Some(address)) = (v.vpc_id(), super::address_of(v.tags())) else { continue };
                found.push((id.to_owned(), address, v.cidr_block().unwrap_or_default().to_owned(), tags_of(v.tags())));
            }
        }
        // DescribeVpcs does not carry the DNS attributes: two reads per VPC, all at once.
        let reads = found.iter().map(|(id, ..)| async move {
            tokio::try_join!(
                attribute(cx, id, VpcAttributeName::EnableDnsSupport),
                attribute(cx, id, VpcAttributeName::EnableDnsHostnames)
            )
        });
        let flags = futures::future::try_join_all(reads).await?;
        Ok(found
            .into_iter()
            .zip(flags)
            .map(|((id, address, cidr, tags), (dns_support, dns_hostnames))| Found {
                id,
                address,
                attrs: Attrs { cidr, dns_support, dns_hostnames, tags },
                outputs: (),
            })
            .collect())
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let out = ec2(cx)
            .create_vpc()
            .cidr_block(&w.cidr)
            .tag_specifications(tag_spec(ResourceType::Vpc, &w.tags))
            .send()
            .await
            .map_err(|e| err("CreateVpc", e))?;
        let id = out.vpc().and_then(|v| v.vpc_id()).ok_or_else(|| OpError::fatal("CreateVpc", "no id"))?;
        // A new VPC has DNS support on and hostnames off.
        let fresh = Attrs { dns_support: true, dns_hostnames: false, ..w.clone() };
        cx.born(id, &fresh);
        Typed::update(self, cx, id, Some(&fresh), w).await?;
        Ok(id.to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, w: &Attrs) -> Result<(), OpError> {
        let h = known(have)?;
        set_dns(cx, id, h.dns(), w.dns()).await?;
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(ec2(cx).delete_vpc().vpc_id(id).send().await.map_err(|e| err("DeleteVpc", e)))
    }
}
