//! CloudWatch Logs: log groups, and what they share: the client and the service's error codes.
//! Log groups cannot be listed by tag, so the stack's are named `/<stack>/<name>` and found by
//! that prefix.

use crate::error::{gone_ok, Codes, OpError};
use crate::provider::Cx;
use std::collections::BTreeMap;

pub mod log_group;

super::kinds!(log_group);

/// The CloudWatch Logs client of the context's region.
pub fn logs(cx: &Cx) -> aws_sdk_cloudwatchlogs::Client {
    cx.client::<aws_sdk_cloudwatchlogs::Client>()
}

struct LogsCodes;

impl Codes for LogsCodes {
    fn not_found(&self, code: &str) -> bool {
        code == "ResourceNotFoundException"
    }

    fn retryable(&self, code: &str) -> bool {
        code == "OperationAbortedException"
    }
}

super::service!(aws_sdk_cloudwatchlogs::Client, LogsCodes);

/// The tags of the resource `arn`.
pub async fn tags_of(cx: &Cx, arn: &str) -> Result<BTreeMap<String, String>, OpError> {
    let out =
        logs(cx).list_tags_for_resource().resource_arn(arn).send().await.map_err(|e| err("ListTagsForResource", e))?;
    Ok(out.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default())
}

/// Brings the tags of the resource `arn` from `have` to `want`.
pub async fn set_tags(
    cx: &Cx,
    arn: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<(), OpError> {
    let (gone, changed) = crate::provider::tag_changes(have, want);
    if !gone.is_empty() {
        logs(cx)
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(gone))
            .send()
            .await
            .map_err(|e| err("UntagResource", e))?;
    }
    if !changed.is_empty() {
        let tags = Some(changed.into_iter().collect());
        logs(cx).tag_resource().resource_arn(arn).set_tags(tags).send().await.map_err(|e| err("TagResource", e))?;
    }
    Ok(())
}

/// The prefix of every log group the stack owns.
pub fn prefix(cx: &Cx) -> String {
    format!("/{}/", cx.stack)
}

/// The regions with CloudFront regional edge caches: a Lambda@Edge copy logs to the one nearest
/// the edge location that ran it (AWS's Lambda@Edge documentation, "CloudWatch Logs").
pub const EDGE_LOG_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "sa-east-1",
];

/// Deletes the log groups Lambda makes for a function on its own, which nothing else owns:
/// `/aws/lambda/<name>` where it runs and, for a Lambda@Edge function, `/aws/lambda/us-east-1.<name>`
/// in every region an edge copy may have logged to. Gone already is success.
pub async fn delete_function_logs(cx: &Cx, name: &str, edge: bool) -> Result<(), OpError> {
    let mut groups = vec![(cx.region.clone(), format!("/aws/lambda/{name}"))];
    if edge {
        groups.extend(EDGE_LOG_REGIONS.iter().map(|r| ((*r).to_owned(), format!("/aws/lambda/us-east-1.{name}"))));
    }
    let deletes = groups.into_iter().map(|(region, group)| async move {
        let cx = cx.in_region(&region);
        gone_ok(logs(&cx).delete_log_group().log_group_name(&group).send().await.map_err(|e| err("DeleteLogGroup", e)))
    });
    futures::future::try_join_all(deletes).await.map(|_| ())
}
