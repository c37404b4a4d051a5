//! DynamoDB: tables, and what they share: the client and DynamoDB's error codes. Tables cannot
//! be listed by tag, so the stack's are named `<stack>-<name>`, listed by that prefix and kept
//! only when their `provisioner:stack` tag says so.

use crate::error::Codes;
use crate::provider::Cx;

pub mod dynamodb_table;

super::kinds!(dynamodb_table);

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

super::service!(aws_sdk_dynamodb::Client, DynamoCodes);
