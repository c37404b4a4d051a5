//! Lambda: functions (Lambda@Edge among them), and what they share: the client and Lambda's
//! error codes.

use crate::error::Codes;
use crate::provider::Cx;

pub mod lambda_function;

super::kinds!(lambda_function);

/// The Lambda client of the context's region.
pub fn lambda(cx: &Cx) -> aws_sdk_lambda::Client {
    cx.client::<aws_sdk_lambda::Client>()
}

struct LambdaCodes;

impl Codes for LambdaCodes {
    fn not_found(&self, code: &str) -> bool {
        code == "ResourceNotFoundException"
    }

    /// A function still applying its last change answers a conflict until it is done.
    fn retryable(&self, code: &str) -> bool {
        matches!(code, "ResourceConflictException" | "CodeStorageExceededException" | "EC2ThrottledException")
    }
}

super::service!(aws_sdk_lambda::Client, LambdaCodes);
