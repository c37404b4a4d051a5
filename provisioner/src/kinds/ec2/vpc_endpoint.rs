//! `vpc_endpoint`: a gateway endpoint (DynamoDB, S3) on route tables, so traffic to the service
//! needs no internet path.

use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_json};
use crate::error::{gone_ok, Class, OpError};
use crate::provider::{Attributes, Cx, Live, Ops};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, VpcEndpointType};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new(
    "vpc_endpoint",
    "A gateway VPC endpoint for DynamoDB or S3, routed from the given route tables.",
    &Endpoint,
)
.fields(&[
    Field::required("vpc", FieldType::Ref(&["vpc"]), Update::Replace, "The VPC."),
    Field::required("service", FieldType::Enum(&["dynamodb", "s3"]), Update::Replace, "The AWS service."),
    Field::required(
        "route_tables",
        FieldType::List(&FieldType::Ref(&["route_table"])),
        Update::InPlace,
        "Route tables that get the service's prefix-list route.",
    ),
    TAGS,
])
.outputs(&[("id", "Endpoint id (vpce-...)")]);

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    vpc: String,
    service: String,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    route_tables: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attributes for Attrs {}

struct Endpoint;

#[async_trait]
impl Ops for Endpoint {
    async fn discover(&self, cx: &Cx) -> Result<Vec<Live>, OpError> {
        if !tagged(cx, &["vpc-endpoint"]).await? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut pages = ec2(cx).describe_vpc_endpoints().filters(owned(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for e in page.map_err(|e| err("DescribeVpcEndpoints", e))?.vpc_endpoints() {
                // AWS answers "deleted" in lower case although the model says "Deleted".
                let state = e.state().map(|s| s.as_str().to_ascii_lowercase()).unwrap_or_default();
                if matches!(state.as_str(), "deleting" | "deleted" | "rejected" | "failed" | "expired") {
                    continue;
                }
                let (Some(id), Some(address)) = (e.vpc_endpoint_id(), address_of(e.tags())) else { continue };
                let service = e.service_name().and_then(|n| n.rsplit('.').next());
                out.push(Live {
                    id: id.to_owned(),
                    address,
                    attrs: json!({
                        "vpc": e.vpc_id(),
                        "service": service,
                        "route_tables": e.route_table_ids(),
                        "tags": tags_json(e.tags()),
                    }),
                    outputs: Map::new(),
                });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: &str, want: &Value, token: &str) -> Result<String, OpError> {
        let w = Attrs::of(want)?;
        let out = ec2(cx)
            .create_vpc_endpoint()
            .vpc_id(&w.vpc)
            .service_name(format!("com.amazonaws.{}.{}", cx.region, w.service))
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .set_route_table_ids(Some(w.route_tables))
            .client_token(token)
            .tag_specifications(tag_spec(ResourceType::VpcEndpoint, &w.tags))
            .send()
            .await
            .map_err(|e| err("CreateVpcEndpoint", e))?;
        out.vpc_endpoint()
            .and_then(|e| e.vpc_endpoint_id())
            .map(str::to_owned)
            .ok_or_else(|| OpError::fatal("CreateVpcEndpoint", "no id"))
    }

    async fn update(&self, cx: &Cx, id: &str, have: &Value, want: &Value) -> Result<(), OpError> {
        let (h, w) = (Attrs::of(have)?, Attrs::of(want)?);
        let (had, wanted) = (&h.route_tables, &w.route_tables);
        let add: Vec<String> = wanted.iter().filter(|t| !had.contains(t)).cloned().collect();
        let remove: Vec<String> = had.iter().filter(|t| !wanted.contains(t)).cloned().collect();
        if !add.is_empty() || !remove.is_empty() {
            ec2(cx)
                .modify_vpc_endpoint()
                .vpc_endpoint_id(id)
                .set_add_route_table_ids((!add.is_empty()).then_some(add))
                .set_remove_route_table_ids((!remove.is_empty()).then_some(remove))
                .send()
                .await
                .map_err(|e| err("ModifyVpcEndpoint", e))?;
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: &Value) -> Result<(), OpError> {
        let out =
            ec2(cx).delete_vpc_endpoints().vpc_endpoint_ids(id).send().await.map_err(|e| err("DeleteVpcEndpoints", e));
        let out = match out {
            Ok(o) => o,
            Err(e) => return gone_ok::<()>(Err(e)),
        };
        match out.unsuccessful().first().and_then(|u| u.error()) {
            Some(e) if !e.code().is_some_and(super::not_found) => Err(OpError {
                class: Class::Retryable,
                op: "DeleteVpcEndpoints".into(),
                code: e.code().map(str::to_owned),
                message: e.message().unwrap_or_default().to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_attributes_hold_every_declared_field() {
        // The struct refuses unknown fields, so a declared field it lacks fails here.
        let sample = crate::schema::sample(KIND.fields);
        assert!(Attrs::of(&sample).is_ok(), "{sample}");
        let mut extra = sample.clone();
        extra["extra"] = json!(1);
        assert!(Attrs::of(&extra).is_err());
    }
}
