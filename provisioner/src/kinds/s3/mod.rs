//! S3: buckets, their policies and the cost site published into them, and what they share: the
//! client, S3's error codes, the stack's buckets and deleting objects. Buckets have no tag
//! filter and one global namespace, so the stack's are named `<stack>-<name>` (lowercase) and
//! found by that prefix in `ListBuckets`, then confirmed by their region and tags.

use crate::error::{Codes, OpError};
use crate::provider::{Cx, STACK_TAG};
use aws_sdk_s3::types::BucketLocationConstraint;
use std::collections::BTreeMap;

pub mod cost_site;
pub mod s3_bucket;
pub mod s3_bucket_policy;

super::kinds!(s3_bucket, s3_bucket_policy, cost_site);

/// The S3 client of the context's region.
pub fn s3(cx: &Cx) -> aws_sdk_s3::Client {
    cx.client::<aws_sdk_s3::Client>()
}

struct S3Codes;

impl Codes for S3Codes {
    fn not_found(&self, code: &str) -> bool {
        matches!(code, "NoSuchBucket" | "NotFound")
    }

    /// A bucket just deleted keeps its name for a while; one still being made answers conflicts.
    fn retryable(&self, code: &str) -> bool {
        matches!(code, "OperationAborted" | "SlowDown" | "ServiceUnavailable")
    }
}

super::service!(aws_sdk_s3::Client, S3Codes);

/// A bucket's tags (none is an empty set).
pub async fn tags_of(cx: &Cx, bucket: &str) -> Result<BTreeMap<String, String>, OpError> {
    match s3(cx).get_bucket_tagging().bucket(bucket).send().await.map_err(|e| err("GetBucketTagging", e)) {
        Ok(t) => Ok(t.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()),
        Err(e) if e.has_code("NoSuchTagSet") => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// The stack's buckets in `cx.region` with their tags, read once per discovery pass: one global
/// list by name prefix, shared by every region's pass, then each bucket's region and tags.
pub async fn owned(cx: &Cx) -> Result<Vec<(String, BTreeMap<String, String>)>, OpError> {
    cx.once("s3:owned", || async {
        let prefix = s3_bucket::bucket_name(&cx.stack, "");
        let names: Vec<String> = cx
            .once("s3:buckets", || async {
                let out = s3(cx).list_buckets().send().await.map_err(|e| err("ListBuckets", e))?;
                Ok(out
                    .buckets()
                    .iter()
                    .filter_map(|b| b.name())
                    .filter(|n| n.starts_with(&prefix))
                    .map(str::to_owned)
                    .collect())
            })
            .await?;
        let mut out = Vec::new();
        for name in names {
            let loc = match s3(cx)
                .get_bucket_location()
                .bucket(&name)
                .send()
                .await
                .map_err(|e| err("GetBucketLocation", e))
            {
                Ok(l) => l,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            // No constraint is us-east-1 (and `EU` the old name of eu-west-1).
            let region = match loc.location_constraint().map(BucketLocationConstraint::as_str) {
                None | Some("") => "us-east-1",
                Some("EU") => "eu-west-1",
                Some(r) => r,
            };
            if region != cx.region {
                continue;
            }
            let tags = tags_of(cx, &name).await?;
            if tags.get(STACK_TAG) == Some(&cx.stack) {
                out.push((name, tags));
            }
        }
        Ok(out)
    })
    .await
}

/// Deletes these objects (or versions) of `bucket`, a thousand a call; a bucket already gone
/// has none.
pub async fn delete_objects(
    cx: &Cx,
    bucket: &str,
    ids: Vec<aws_sdk_s3::types::ObjectIdentifier>,
) -> Result<(), OpError> {
    for chunk in ids.chunks(1000) {
        let delete = aws_sdk_s3::types::Delete::builder()
            .set_objects(Some(chunk.to_vec()))
            .quiet(true)
            .build()
            .map_err(|e| OpError::fatal("Delete", e.to_string()))?;
        crate::error::gone_ok(
            s3(cx).delete_objects().bucket(bucket).delete(delete).send().await.map_err(|e| err("DeleteObjects", e)),
        )?;
    }
    Ok(())
}
