//! DynamoDB: tables, and what they share: the client and DynamoDB's error codes. Tables cannot
//! be listed by tag, so the stack's are named `<stack>-<name>`, listed by that prefix and kept
//! only when their `provisioner:stack` tag says so.

use crate::error::{classify, Codes, OpError};
use crate::provider::{Cx, Service};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

super::kinds!(dynamodb_table);

impl Service for aws_sdk_dynamodb::Client {
    fn build(conf: &aws_config::SdkConfig) -> Self {
        Self::new(conf)
    }
}

/// The DynamoDB client of the context's region.
pub fn ddb(cx: &Cx) -> aws_sdk_dynamodb::Client {
    cx.client::<aws_sdk_dynamodb::Client>()
}

struct DynamoCodes;

impl Codes for DynamoCodes {
    fn not_found(&self, code: &str) -> bool {
        code == "ResourceNotFoundException" || code == "TableNotFoundException"
    }

    /// A table still being created or updated; too many table operations at once.
    fn retryable(&self, code: &str) -> bool {
        matches!(code, "ResourceInUseException" | "LimitExceededException")
    }
}

/// A DynamoDB SDK error, classified by its codes.
pub fn err<E, R>(op: &str, e: SdkError<E, R>) -> OpError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    classify(&DynamoCodes, op, e)
}
