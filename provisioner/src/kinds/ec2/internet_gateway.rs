//! `internet_gateway`: the VPC's door to the internet, attached to one VPC.

use crate::provider::{need, s, Cx, Live, Ops};
use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_json};
use crate::error::{OpError, gone_ok};
use crate::schema::{as_is, no_check, Field, FieldType, Kind, Update};
use async_trait::async_trait;
use aws_sdk_ec2::types::ResourceType;
use serde_json::{json, Map, Value};

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
    normalize: as_is,
    ops: &Igw,
};

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
impl Ops for Igw {
    async fn discover(&self, cx: &Cx) -> Result<Vec<Live>, OpError> {
        if !tagged(cx, &["internet-gateway"]).await? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut pages = ec2(cx).describe_internet_gateways().filters(owned(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for g in page.map_err(|e| err("DescribeInternetGateways", e))?.internet_gateways() {
                let (Some(id), Some(address)) = (g.internet_gateway_id(), address_of(g.tags())) else { continue };
                let vpc = g.attachments().first().and_then(|a| a.vpc_id());
                out.push(Live {
                    id: id.to_owned(),
                    address,
                    attrs: json!({"vpc": vpc, "tags": tags_json(g.tags())}),
                    outputs: Map::new(),
                });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: &str, want: &Value, _token: &str) -> Result<String, OpError> {
        let out = ec2(cx)
            .create_internet_gateway()
            .tag_specifications(tag_spec(ResourceType::InternetGateway, want))
            .send()
            .await
            .map_err(|e| err("CreateInternetGateway", e))?;
        let id = out
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .ok_or_else(|| OpError::fatal("CreateInternetGateway", "no id"))?;
        attach(cx, id, need(want, "vpc")?).await?;
        Ok(id.to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: &Value, want: &Value) -> Result<(), OpError> {
        if s(have, "vpc") != s(want, "vpc") {
            if let Some(old) = s(have, "vpc") {
                detach(cx, id, old).await?;
            }
            attach(cx, id, need(want, "vpc")?).await?;
        }
        set_tags(cx, id, have, want).await
    }

    async fn delete(&self, cx: &Cx, id: &str, have: &Value) -> Result<(), OpError> {
        if let Some(vpc) = s(have, "vpc") {
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
