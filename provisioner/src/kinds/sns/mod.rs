//! SNS: topics, and what they share: the client and the service's error codes. Topics cannot be
//! listed by tag, so the stack's are named `<stack>-<name>` and found by that prefix, then
//! confirmed by their tags.

use crate::error::{Codes, OpError};
use crate::provider::Cx;
use aws_sdk_sns::types::Tag;
use std::collections::BTreeMap;

pub mod sns_topic;

super::kinds!(sns_topic);

/// The SNS client of the context's region.
pub fn sns(cx: &Cx) -> aws_sdk_sns::Client {
    cx.client::<aws_sdk_sns::Client>()
}

struct SnsCodes;

impl Codes for SnsCodes {
    fn not_found(&self, code: &str) -> bool {
        matches!(code, "NotFound" | "ResourceNotFound")
    }

    fn retryable(&self, code: &str) -> bool {
        matches!(code, "Throttled" | "ConcurrentAccess")
    }
}

super::service!(aws_sdk_sns::Client, SnsCodes);

/// Tags as SNS takes them.
pub fn tag_list(m: &BTreeMap<String, String>) -> Result<Vec<Tag>, OpError> {
    m.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| OpError::fatal("Tag", e.to_string())))
        .collect()
}

/// The tags of the resource `arn`.
pub async fn tags_of(cx: &Cx, arn: &str) -> Result<BTreeMap<String, String>, OpError> {
    let out =
        sns(cx).list_tags_for_resource().resource_arn(arn).send().await.map_err(|e| err("ListTagsForResource", e))?;
    Ok(out.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())
}

/// Brings the tags of the resource `arn` from `have` to `want`.
pub async fn set_tags(
    cx: &Cx,
    arn: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<(), OpError> {
    let (gone, set) = crate::provider::tag_changes(have, want);
    if !gone.is_empty() {
        sns(cx)
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(gone))
            .send()
            .await
            .map_err(|e| err("UntagResource", e))?;
    }
    if !set.is_empty() {
        let tags = Some(tag_list(&set)?);
        sns(cx).tag_resource().resource_arn(arn).set_tags(tags).send().await.map_err(|e| err("TagResource", e))?;
    }
    Ok(())
}
