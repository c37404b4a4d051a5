//! CloudWatch Logs: log groups, and what they share: the client and the service's error codes.
//! Log groups cannot be listed by tag, so the stack's are named `/<stack>/<name>` and found by
//! that prefix.

use crate::error::Codes;
use crate::provider::Cx;

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

/// The prefix of every log group the stack owns.
pub fn prefix(cx: &Cx) -> String {
    format!("/{}/", cx.stack)
}
