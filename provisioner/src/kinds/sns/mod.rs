//! SNS: topics, and what they share: the client and the service's error codes. Topics cannot be
//! listed by tag, so the stack's are named `<stack>-<name>` and found by that prefix, then
//! confirmed by their tags.

use crate::error::Codes;
use crate::provider::Cx;

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
