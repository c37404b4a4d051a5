//! The AWS side of a resource kind (discover by tag, create, update, delete) and the helpers
//! the EC2 kinds share: ownership tags, tag filters, tag updates, error classification.

use crate::walk::OpError;
use async_trait::async_trait;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The tag naming the stack that owns a resource.
pub const STACK_TAG: &str = "provisioner:stack";
/// The tag naming a resource's address (`kind.name`) in its stack.
pub const ID_TAG: &str = "provisioner:id";

/// What every operation needs: clients and the stack's identity.
#[derive(Clone, Debug)]
pub struct Cx {
    pub ec2: aws_sdk_ec2::Client,
    pub stack: String,
    pub region: String,
}

/// A resource found by its ownership tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// The AWS id (vpc-..., sg-..., eipalloc-...).
    pub id: String,
    /// Its `provisioner:id` tag.
    pub address: String,
    /// Attributes in the declared shape; references hold AWS ids, `tags` every tag.
    pub attrs: Value,
    /// The kind's declared outputs besides `id`.
    pub outputs: Map<String, Value>,
}

/// Reads and writes one kind of resource. `want` values come with references resolved to AWS
/// ids and `tags` complete (the stack's, the resource's and the ownership tags), so a kind
/// only translates between its declared shape and its API.
#[async_trait]
pub trait Ops: Sync {
    /// The EC2 resource types `DescribeTags` reports for this kind (`vpc`, `security-group`,
    /// ...; the emulator spells some differently, so a kind may list several).
    fn resource_types(&self) -> &'static [&'static str];
    /// Every resource of this kind carrying the stack's tag: one paginated describe.
    async fn discover(&self, cx: &Cx) -> Result<Vec<Live>, OpError>;
    /// Creates the resource tagged at birth (so a crash right after leaves a findable resource),
    /// with `token` as the client token where the API has one; returns its id.
    async fn create(&self, cx: &Cx, address: &str, want: &Value, token: &str) -> Result<String, OpError>;
    /// Changes in-place fields from `have` to `want`.
    async fn update(&self, cx: &Cx, id: &str, have: &Value, want: &Value) -> Result<(), OpError>;
    /// Deletes it (and what only it holds: attachments, associations); gone already is success.
    async fn delete(&self, cx: &Cx, id: &str, have: &Value) -> Result<(), OpError>;
}

/// Classifies an SDK error: throttling, eventual consistency and transport trouble are worth
/// another try, the rest is reported.
pub fn aws_err<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(
    op: &str,
    e: SdkError<E, R>,
) -> OpError {
    let code = e.code().unwrap_or_default().to_owned();
    let text = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{op}: {c}: {m}"),
        (Some(c), None) => format!("{op}: {c}"),
        _ => format!("{op}: {}", aws_sdk_ec2::error::DisplayErrorContext(&e)),
    };
    let transient = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_));
    if transient || retryable_code(&code) {
        OpError::Retryable(text)
    } else {
        OpError::Fatal(text)
    }
}

/// Codes AWS documents as "try again": throttling, a dependency still draining, an id not yet
/// visible right after its creation.
pub fn retryable_code(code: &str) -> bool {
    throttled(code)
        || matches!(code, "DependencyViolation" | "IncorrectState" | "ResourceInUseException")
        || is_not_found(code)
}

/// AWS asking to slow down, or briefly unable to answer.
pub fn throttled(code: &str) -> bool {
    matches!(
        code,
        "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "RequestThrottled"
            | "ServiceUnavailable"
            | "Unavailable"
            | "InternalError"
            | "InternalFailure"
            | "InternalServerError"
    )
}

/// `InvalidVpcID.NotFound`, `InvalidGroup.NotFound`, ...: the resource is not (yet, or any
/// more) visible.
pub fn is_not_found(code: &str) -> bool {
    code.ends_with(".NotFound") || code.ends_with("NotFound") || code == "InvalidAllocationID.NotFound"
}

/// For deletes: "already gone" is success.
pub fn gone_ok<T>(r: Result<T, OpError>) -> Result<(), OpError> {
    match r {
        Ok(_) => Ok(()),
        Err(OpError::Retryable(m) | OpError::Fatal(m)) if not_found_text(&m) => Ok(()),
        Err(e) => Err(e),
    }
}

fn not_found_text(m: &str) -> bool {
    m.split(": ").nth(1).is_some_and(is_not_found)
}

/// The filter selecting what this stack owns.
pub fn owned(cx: &Cx) -> Filter {
    Filter::builder().name(format!("tag:{STACK_TAG}")).values(&cx.stack).build()
}

/// The `provisioner:id` of a tagged resource.
pub fn address_of(tags: &[Tag]) -> Option<String> {
    tags.iter().find(|t| t.key() == Some(ID_TAG)).and_then(|t| t.value()).map(str::to_owned)
}

/// Tags as a JSON object.
pub fn tags_json(tags: &[Tag]) -> Value {
    Value::Object(
        tags.iter()
            .filter_map(|t| Some((t.key()?.to_owned(), Value::String(t.value().unwrap_or_default().to_owned()))))
            .collect(),
    )
}

fn tag_map(v: &Value) -> BTreeMap<String, String> {
    v.get("tags")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

fn tag_list(m: &BTreeMap<String, String>) -> Vec<Tag> {
    m.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// Tags applied in the create call itself (`want.tags`).
pub fn tag_spec(rt: ResourceType, want: &Value) -> TagSpecification {
    TagSpecification::builder().resource_type(rt).set_tags(Some(tag_list(&tag_map(want)))).build()
}

/// Brings the tags of `id` from `have.tags` to `want.tags`.
pub async fn set_tags(cx: &Cx, id: &str, have: &Value, want: &Value) -> Result<(), OpError> {
    let (have, want) = (tag_map(have), tag_map(want));
    let stale: Vec<Tag> =
        have.keys().filter(|k| !want.contains_key(*k)).map(|k| Tag::builder().key(k).build()).collect();
    let changed: BTreeMap<String, String> =
        want.iter().filter(|(k, v)| have.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !stale.is_empty() {
        cx.ec2.delete_tags().resources(id).set_tags(Some(stale)).send().await.map_err(|e| aws_err("DeleteTags", e))?;
    }
    if !changed.is_empty() {
        cx.ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(tag_list(&changed)))
            .send()
            .await
            .map_err(|e| aws_err("CreateTags", e))?;
    }
    Ok(())
}

/// A string attribute of a desired value.
pub fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// A boolean attribute of a desired value (absent is false).
pub fn b(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// A list of strings (references resolved to ids).
pub fn strs(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// A required string attribute, or a fatal error naming it.
pub fn need<'a>(v: &'a Value, k: &str) -> Result<&'a str, OpError> {
    s(v, k).ok_or_else(|| OpError::Fatal(format!("`{k}` is missing or not resolved")))
}
