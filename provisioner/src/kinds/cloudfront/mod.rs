//! CloudFront: distributions, their origin access controls and VPC origins, and what they share: the client
//! and CloudFront's error codes. CloudFront is global (one endpoint whatever the region), so its
//! resources are read once, in the stack's own region. Every write names the ETag of the last
//! read (`IfMatch`): a change made meanwhile by someone else fails instead of being overwritten.

use crate::error::{Codes, OpError};
use crate::provider::Cx;

pub mod cloudfront_distribution;
pub mod cloudfront_origin_access_control;
pub mod cloudfront_vpc_origin;

super::kinds!(cloudfront_origin_access_control, cloudfront_vpc_origin, cloudfront_distribution);

/// The CloudFront client.
pub fn cloudfront(cx: &Cx) -> aws_sdk_cloudfront::Client {
    cx.client::<aws_sdk_cloudfront::Client>()
}

struct CloudFrontCodes;

impl Codes for CloudFrontCodes {
    fn not_found(&self, code: &str) -> bool {
        // VPC origins answer `EntityNotFound`.
        matches!(code, "NoSuchDistribution" | "NoSuchOriginAccessControl" | "NoSuchResource" | "EntityNotFound")
    }

    /// A write that raced another (stale ETag), an origin access control or VPC origin still
    /// used by a distribution whose change is deploying, a distribution not yet disabled
    /// everywhere.
    fn retryable(&self, code: &str) -> bool {
        matches!(
            code,
            "PreconditionFailed"
                | "OriginAccessControlInUse"
                | "DistributionNotDisabled"
                | "CannotDeleteEntityWhileInUse"
        )
    }
}

super::service!(aws_sdk_cloudfront::Client, CloudFrontCodes);

/// The ETag a conditional write must name.
pub fn etag(op: &str, e: Option<&str>) -> Result<String, OpError> {
    e.map(str::to_owned).ok_or_else(|| OpError::fatal(op, "CloudFront answered without an ETag"))
}

/// A resource's tags (CloudFront tags by ARN).
pub async fn tags_of(cx: &Cx, arn: &str) -> Result<std::collections::BTreeMap<String, String>, OpError> {
    let t = cloudfront(cx)
        .list_tags_for_resource()
        .resource(arn)
        .send()
        .await
        .map_err(|e| err("ListTagsForResource", e))?;
    let items = t.tags().map(|t| t.items()).unwrap_or_default();
    Ok(items.iter().map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned())).collect())
}

/// Tags as CloudFront's API takes them.
pub fn tags(m: &std::collections::BTreeMap<String, String>) -> Result<aws_sdk_cloudfront::types::Tags, OpError> {
    use aws_sdk_cloudfront::types::{Tag, Tags};
    let items = m
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| OpError::fatal("Tag", e.to_string()))?;
    Ok(Tags::builder().set_items(Some(items)).build())
}

/// Brings a resource's tags from `have` to `want` (CloudFront tags by ARN).
pub async fn retag(
    cx: &Cx,
    arn: &str,
    have: &std::collections::BTreeMap<String, String>,
    want: &std::collections::BTreeMap<String, String>,
) -> Result<(), OpError> {
    use aws_sdk_cloudfront::types::TagKeys;
    let (unset, set) = crate::provider::tag_changes(have, want);
    if !unset.is_empty() {
        let keys = TagKeys::builder().set_items(Some(unset)).build();
        cloudfront(cx)
            .untag_resource()
            .resource(arn)
            .tag_keys(keys)
            .send()
            .await
            .map_err(|e| err("UntagResource", e))?;
    }
    if !set.is_empty() {
        cloudfront(cx)
            .tag_resource()
            .resource(arn)
            .tags(tags(&set)?)
            .send()
            .await
            .map_err(|e| err("TagResource", e))?;
    }
    Ok(())
}

/// The name `<stack>-<name>` of a resource CloudFront names uniquely per account.
pub fn name_of(cx: &Cx, address: &str) -> String {
    format!("{}-{}", cx.stack, address.split_once('.').map_or(address, |(_, n)| n))
}

/// What the distribution list says of one distribution.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub arn: String,
    pub domain: String,
    pub comment: String,
}

/// Every distribution of the account, read once per pass: the stack's are told by their
/// comment, and what names a distribution on the web (a sign-in client's callback URLs) finds
/// its id by its domain.
pub async fn distributions(cx: &Cx) -> Result<Vec<Listed>, OpError> {
    cx.once("cloudfront:distributions", || async {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = cloudfront(cx)
                .list_distributions()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| err("ListDistributions", e))?;
            let Some(list) = page.distribution_list() else { break };
            out.extend(list.items().iter().map(|d| Listed {
                id: d.id().to_owned(),
                arn: d.arn().to_owned(),
                domain: d.domain_name().to_owned(),
                comment: d.comment().to_owned(),
            }));
            match list.next_marker() {
                Some(m) if list.is_truncated() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    })
    .await
}

/// Every distribution's domain name by its id.
pub async fn domains(cx: &Cx) -> Result<std::collections::BTreeMap<String, String>, OpError> {
    Ok(distributions(cx).await?.into_iter().map(|d| (d.id, d.domain)).collect())
}
