//! S3: buckets, and what they share: the client and S3's error codes. Buckets have no tag
//! filter and one global namespace, so the stack's are named `<stack>-<name>` (lowercase) and
//! found by that prefix in `ListBuckets`, then confirmed by their region and tags.

use crate::error::Codes;
use crate::provider::Cx;

super::kinds!(s3_bucket);

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
