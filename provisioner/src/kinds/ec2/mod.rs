//! EC2: the network kinds, and what they share: the client, EC2's error codes, ownership tags
//! (filters, tags at birth, tag updates) and the discovery gate (one `DescribeTags` per pass
//! says which resource types carry the stack's tag, so kinds with nothing tagged cost no call).

use crate::error::{Codes, OpError};
use crate::provider::{Cx, ID_TAG, STACK_TAG};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub mod eip;
pub mod instance;
pub mod internet_gateway;
pub mod nat_gateway;
pub mod route_table;
pub mod security_group;
pub mod subnet;
pub mod vpc;
pub mod vpc_endpoint;

super::kinds!(vpc, subnet, internet_gateway, eip, nat_gateway, route_table, security_group, vpc_endpoint, instance);

/// The EC2 client of the context's region.
pub fn ec2(cx: &Cx) -> aws_sdk_ec2::Client {
    cx.client::<aws_sdk_ec2::Client>()
}

struct Ec2Codes;

impl Codes for Ec2Codes {
    /// `InvalidVpcID.NotFound`, `InvalidGroup.NotFound`, `InvalidAllocationID.NotFound`, ...
    fn not_found(&self, code: &str) -> bool {
        code.ends_with(".NotFound") || code.ends_with("NotFound")
    }

    /// A dependency still draining, a resource in a passing state.
    fn retryable(&self, code: &str) -> bool {
        matches!(code, "DependencyViolation" | "IncorrectState" | "ResourceInUseException")
    }
}

/// Whether an EC2 error code means "no such resource".
pub fn not_found(code: &str) -> bool {
    Ec2Codes.not_found(code)
}

super::service!(aws_sdk_ec2::Client, Ec2Codes);

/// Whether EC2 knows a resource of one of these types (as `DescribeTags` spells them; the
/// emulator spells some differently, so a kind may list several) with the stack's tag.
pub async fn tagged(cx: &Cx, types: &[&str]) -> Result<bool, OpError> {
    let present = cx.once("ec2:DescribeTags", || tagged_types(cx)).await?;
    Ok(types.iter().any(|t| present.contains(*t)))
}

async fn tagged_types(cx: &Cx) -> Result<BTreeSet<String>, OpError> {
    let filters = [
        Filter::builder().name("key").values(STACK_TAG).build(),
        Filter::builder().name("value").values(&cx.stack).build(),
    ];
    let mut types = BTreeSet::new();
    let mut pages = ec2(cx).describe_tags().set_filters(Some(filters.to_vec())).into_paginator().send();
    while let Some(page) = pages.next().await {
        for t in page.map_err(|e| err("DescribeTags", e))?.tags() {
            if let Some(rt) = t.resource_type() {
                types.insert(rt.as_str().to_owned());
            }
        }
    }
    Ok(types)
}

/// The filter selecting what this stack owns.
pub fn owned(cx: &Cx) -> Filter {
    Filter::builder().name(format!("tag:{STACK_TAG}")).values(&cx.stack).build()
}

/// The `provisioner:id` of a tagged resource.
pub fn address_of(tags: &[Tag]) -> Option<String> {
    tags.iter().find(|t| t.key() == Some(ID_TAG)).and_then(|t| t.value()).map(str::to_owned)
}

/// Tags as a map.
pub fn tags_of(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

/// Tags as a JSON object.
pub fn tags_json(tags: &[Tag]) -> Value {
    Value::Object(
        tags.iter()
            .filter_map(|t| Some((t.key()?.to_owned(), Value::String(t.value().unwrap_or_default().to_owned()))))
            .collect(),
    )
}

/// The `tags` of an attribute value (the kinds that still compare rule lists as JSON).
pub fn tag_map(v: &Value) -> BTreeMap<String, String> {
    v.get("tags")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

fn tag_list(m: &BTreeMap<String, String>) -> Vec<Tag> {
    m.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// Tags applied in the create call itself.
pub fn tag_spec(rt: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder().resource_type(rt).set_tags(Some(tag_list(tags))).build()
}

/// Brings the tags of `id` from `have` to `want`.
pub async fn set_tags(
    cx: &Cx,
    id: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<(), OpError> {
    let (gone, changed) = crate::provider::tag_changes(have, want);
    let stale: Vec<Tag> = gone.iter().map(|k| Tag::builder().key(k).build()).collect();
    if !stale.is_empty() {
        ec2(cx).delete_tags().resources(id).set_tags(Some(stale)).send().await.map_err(|e| err("DeleteTags", e))?;
    }
    if !changed.is_empty() {
        ec2(cx)
            .create_tags()
            .resources(id)
            .set_tags(Some(tag_list(&changed)))
            .send()
            .await
            .map_err(|e| err("CreateTags", e))?;
    }
    Ok(())
}
