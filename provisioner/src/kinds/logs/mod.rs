//! CloudWatch Logs: log groups, and what they share: the client and the service's error codes.
//! Log groups cannot be listed by tag, so the stack's are named `/<stack>/<name>` and found by
//! that prefix.

use crate::error::{classify, Codes, OpError};
use crate::provider::{Cx, Service};
use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};

super::kinds!(log_group);

impl Service for aws_sdk_cloudwatchlogs::Client {
    fn build(conf: &aws_config::SdkConfig) -> Self {
        Self::new(conf)
    }
}

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

/// A CloudWatch Logs SDK error, classified by its codes.
pub fn err<E, R>(op: &str, e: SdkError<E, R>) -> OpError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    classify(&LogsCodes, op, e)
}

/// The prefix of every log group the stack owns.
pub fn prefix(cx: &Cx) -> String {
    format!("/{}/", cx.stack)
}
