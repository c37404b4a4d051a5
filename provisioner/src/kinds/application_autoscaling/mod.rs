//! Application Auto Scaling: scaling of ECS services, and what it shares: the client, its error
//! codes and the scalable targets of a region. Its tag API is of little use for discovery (the
//! emulator lacks it), so a target is the stack's when its service's cluster is
//! (`service/<stack>-.../...`) and its policy, named after the resource's address, says which.

use crate::error::{Codes, OpError};
use crate::provider::Cx;
use aws_sdk_applicationautoscaling::types::ServiceNamespace;

pub mod autoscaling;

super::kinds!(autoscaling);

/// The Application Auto Scaling client of the context's region.
pub fn aas(cx: &Cx) -> aws_sdk_applicationautoscaling::Client {
    cx.client::<aws_sdk_applicationautoscaling::Client>()
}

struct AasCodes;

impl Codes for AasCodes {
    fn not_found(&self, code: &str) -> bool {
        code == "ObjectNotFoundException"
    }

    fn retryable(&self, code: &str) -> bool {
        code == "ConcurrentUpdateException"
    }
}

super::service!(aws_sdk_applicationautoscaling::Client, AasCodes);

/// A scalable ECS service of the stack's clusters.
#[derive(Debug, Clone)]
pub struct Target {
    /// `service/<cluster>/<service>`
    pub resource_id: String,
    pub min: i32,
    pub max: i32,
}

/// The stack's scalable ECS services in `cx.region`, once per discovery pass.
pub async fn targets(cx: &Cx) -> Result<Vec<Target>, OpError> {
    cx.once("aas:ecs-targets", || async {
        let prefix = format!("service/{}-", cx.stack);
        let mut out = Vec::new();
        let mut pages =
            aas(cx).describe_scalable_targets().service_namespace(ServiceNamespace::Ecs).into_paginator().send();
        while let Some(page) = pages.next().await {
            for t in page.map_err(|e| err("DescribeScalableTargets", e))?.scalable_targets() {
                if t.resource_id().starts_with(&prefix) {
                    out.push(Target {
                        resource_id: t.resource_id().to_owned(),
                        min: t.min_capacity(),
                        max: t.max_capacity(),
                    });
                }
            }
        }
        Ok(out)
    })
    .await
}
