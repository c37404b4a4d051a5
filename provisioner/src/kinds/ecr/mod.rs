//! ECR: image repositories, and what they share: the client and ECR's error codes.
//! Repositories cannot be listed by tag, so the stack's are named `<stack>/<name>`, listed by
//! that prefix and kept only when their `provisioner:stack` tag says so.

use crate::error::Codes;
use crate::provider::Cx;

super::kinds!(ecr_repository);

/// The ECR client of the context's region.
pub fn ecr(cx: &Cx) -> aws_sdk_ecr::Client {
    cx.client::<aws_sdk_ecr::Client>()
}

struct EcrCodes;

impl Codes for EcrCodes {
    fn not_found(&self, code: &str) -> bool {
        matches!(code, "RepositoryNotFoundException" | "LifecyclePolicyNotFoundException")
    }
}

super::service!(aws_sdk_ecr::Client, EcrCodes);
