//! `internet_gateway`: the VPC's door to the internet, attached to one VPC.

use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_of};
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_ec2::types::ResourceType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new("internet_gateway", "An internet gateway, attached to its VPC.", &Igw)
    .fields(&[
        Field::required(
            "vpc",
            FieldType::Ref(&["vpc"]),
            Update::InPlace,
            "The VPC it is attached to (re-attached on change).",
        ),
        TAGS,
    ])
    .outputs(&[("id", "Internet gateway id (igw-...)")]);

/// The declared shape, decoded once from `want` or `have` (`vpc` is absent when detached).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    vpc: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attrs {
    fn vpc(&self) -> Result<&str, OpError> {
        self.vpc.as_deref().ok_or_else(|| OpError::fatal("resolve", "`vpc` is missing or not resolved"))
    }
}

struct Igw;

async fn attach(cx: &Cx, id: &str, vpc: &str) -> Result<(), OpError> {
    ec2(cx)
        .attach_internet_gateway()
        .internet_gateway_id(id)
        .vpc_id(vpc)
        .send()
        .await
        .map_err(|e| err("AttachInternetGateway", e))?;
    Ok(())
}

async fn detach(cx: &Cx, id: &str, vpc: &str) -> Result<(), OpError> {
    let r = ec2(cx).detach_internet_gateway().internet_gateway_id(id).vpc_id(vpc).send().await;
    match r.map_err(|e| err("DetachInternetGateway", e)) {
        Err(e) if e.has_code("Gateway.NotAttached") => Ok(()),
        other => gone_ok(other),
    }
}

#[async_trait]
impl Typed for Igw {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        if !tagged(cx, &["internet-gateway"]).await? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut pages = ec2(cx).describe_internet_gateways().filters(owned(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for g in page.map_err(|e| err("DescribeInternetGateways", e))?.internet_gateways() {
                let (Some(id), Some(address)) = (g.internet_gateway_id(), address_of(g.tags())) else { continue };
                let vpc = g.attachments().first().and_then(|a| a.vpc_id()).map(str::to_owned);
                out.push(Found {
                    id: id.to_owned(),
                    address,
                    attrs: Attrs { vpc, tags: tags_of(g.tags()) },
                    outputs: (),
                });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, want: &Attrs, _token: &str) -> Result<String, OpError> {
        let out = ec2(cx)
            .create_internet_gateway()
            .tag_specifications(tag_spec(ResourceType::InternetGateway, &want.tags))
            .send()
            .await
            .map_err(|e| err("CreateInternetGateway", e))?;
        let id = out
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .ok_or_else(|| OpError::fatal("CreateInternetGateway", "no id"))?;
        // Made detached: the update attaches it.
        let fresh = Attrs { vpc: None, tags: want.tags.clone() };
        cx.born(id, &fresh);
        Typed::update(self, cx, id, Some(&fresh), want).await?;
        Ok(id.to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        if h.vpc != w.vpc {
            if let Some(old) = &h.vpc {
                detach(cx, id, old).await?;
            }
            attach(cx, id, w.vpc()?).await?;
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        // What was found; a resource from an older run may not decode: then nothing to detach.
        if let Some(vpc) = have.and_then(|h| h.vpc.as_deref()) {
            detach(cx, id, vpc).await?;
        }
        gone_ok(
            ec2(cx)
                .delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
                .await
                .map_err(|e| err("DeleteInternetGateway", e)),
        )
    }
}
