//! ECS: clusters (services come with the application layer), and what they share: the client
//! and ECS's error codes. Clusters are named `<stack>-<name>`; one list and one batched
//! describe (tags included) find them all.

use crate::error::Codes;
use crate::provider::Cx;

super::kinds!(ecs_cluster);

/// The ECS client of the context's region.
pub fn ecs(cx: &Cx) -> aws_sdk_ecs::Client {
    cx.client::<aws_sdk_ecs::Client>()
}

struct EcsCodes;

impl Codes for EcsCodes {
    fn not_found(&self, code: &str) -> bool {
        matches!(code, "ClusterNotFoundException" | "ServiceNotFoundException")
    }

    /// A cluster still holding services or tasks that are draining.
    fn retryable(&self, code: &str) -> bool {
        matches!(
            code,
            "ClusterContainsServicesException" | "ClusterContainsTasksException" | "UpdateInProgressException"
        )
    }
}

super::service!(aws_sdk_ecs::Client, EcsCodes);
