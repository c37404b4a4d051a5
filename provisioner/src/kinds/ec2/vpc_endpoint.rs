//! `vpc_endpoint`: a gateway endpoint (DynamoDB, S3) on route tables, so traffic to the service
//! needs no internet path.

use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_of};
use crate::error::{gone_ok, Class, OpError};
use crate::provider::{known, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, VpcEndpointType};
use serde::{Deserialize, Serialize};
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
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    vpc: String,
    service: String,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    route_tables: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

struct Endpoint;

#[async_trait]
impl Typed for Endpoint {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
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
                let attrs = Attrs {
                    vpc: e.vpc_id().unwrap_or_default().to_owned(),
                    service: service.unwrap_or_default().to_owned(),
                    route_tables: e.route_table_ids().to_vec(),
                    tags: tags_of(e.tags()),
                };
                out.push(Found { id: id.to_owned(), address, attrs, outputs: () });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, w: &Attrs, token: &str) -> Result<String, OpError> {
        let out = ec2(cx)
            .create_vpc_endpoint()
            .vpc_id(&w.vpc)
            .service_name(format!("com.amazonaws.{}.{}", cx.region, w.service))
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .set_route_table_ids(Some(w.route_tables.clone()))
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

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
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

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
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
