//! ECS: clusters and services, and what they share: the client, ECS's error codes and the
//! stack's clusters. Clusters are named `<stack>-<name>`; one list per discovery pass finds
//! them (shared by both kinds), a batched describe (tags included) reads them.

use crate::error::Codes;
use crate::provider::Cx;

pub mod ecs_cluster;
pub mod ecs_service;

super::kinds!(ecs_cluster, ecs_service);

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

/// The ARNs of the clusters named like the stack's (`<stack>-...`) in `cx.region`: one
/// paginated list, once per discovery pass.
pub async fn cluster_arns(cx: &Cx) -> Result<Vec<String>, crate::error::OpError> {
    cx.once("ecs:clusters", || async {
        let prefix = format!("{}-", cx.stack);
        let mut arns = Vec::new();
        let mut pages = ecs(cx).list_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            arns.extend(page.map_err(|e| err("ListClusters", e))?.cluster_arns().iter().cloned());
        }
        arns.retain(|a: &String| a.rsplit('/').next().is_some_and(|n| n.starts_with(&prefix)));
        Ok(arns)
    })
    .await
}

/// `m` as ECS tags.
pub fn tags(m: &std::collections::BTreeMap<String, String>) -> Vec<aws_sdk_ecs::types::Tag> {
    m.iter().map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build()).collect()
}

/// Brings the tags of the ECS resource `arn` from `have` to `want`.
pub async fn set_tags(
    cx: &Cx,
    arn: &str,
    have: &std::collections::BTreeMap<String, String>,
    want: &std::collections::BTreeMap<String, String>,
) -> Result<(), crate::error::OpError> {
    let (gone, changed) = crate::provider::tag_changes(have, want);
    if !gone.is_empty() {
        ecs(cx)
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(gone))
            .send()
            .await
            .map_err(|e| err("UntagResource", e))?;
    }
    if !changed.is_empty() {
        ecs(cx)
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags(&changed)))
            .send()
            .await
            .map_err(|e| err("TagResource", e))?;
    }
    Ok(())
}

/// The last part of an ARN (`.../name`): the name a kind uses as the resource's id.
pub fn last(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The ARNs of the services in the stack's clusters in `cx.region`: one paginated list per
/// cluster, once per discovery pass.
pub async fn service_arns(cx: &Cx) -> Result<Vec<String>, crate::error::OpError> {
    cx.once("ecs:services", || async {
        let mut arns = Vec::new();
        for cluster in cluster_arns(cx).await? {
            let mut pages = ecs(cx).list_services().cluster(&cluster).into_paginator().send();
            while let Some(page) = pages.next().await {
                arns.extend(page.map_err(|e| err("ListServices", e))?.service_arns().iter().cloned());
            }
        }
        Ok(arns)
    })
    .await
}

/// What a service's tasks are, for their price.
pub struct Tasks {
    pub vcpu: f64,
    pub gb: f64,
    /// `x86_64` or `arm64`, as the price keys spell it.
    pub arch: String,
    /// The tasks beyond this many run on Fargate Spot.
    pub regular: Option<i64>,
    pub public_ip: bool,
}

/// The Fargate parts of `tasks` tasks of a service (`tasks_max` where autoscaling may add more):
/// vCPU and memory by the hour at its architecture's prices, the tasks beyond `spot_after` at
/// Fargate Spot's, and a public IPv4 address per task when it has one.
pub fn fargate_parts(cx: &crate::cost::CostCx<'_>, t: &Tasks, tasks: i64, tasks_max: i64) -> Vec<crate::cost::Part> {
    use crate::cost::{parts, Part};
    let (vcpu, gb, arch, regular) = (t.vcpu, t.gb, &t.arch, t.regular);
    // (regular, spot) of a task count.
    let split = |n: i64| match regular {
        Some(r) => (n.min(r) as f64, (n - r).max(0) as f64),
        None => (n as f64, 0.0),
    };
    let ((od, spot), (od_max, spot_max)) = (split(tasks), split(tasks_max));
    let mut out = Vec::new();
    let mut add = |what: String, price: String, q: f64, q_max: f64| {
        if q_max > 0.0 {
            let p = Part::hourly(cx, what, price, q);
            let max = q_max * cx.hours;
            out.push(if q_max > q { p.up_to(max) } else { p });
        }
    };
    let tasks_of = |a: f64, b: f64| match (a, b) {
        (a, b) if b > a => format!("{a} to {b} tasks"),
        (1.0, _) => "1 task".to_owned(),
        (a, _) => format!("{a} tasks"),
    };
    add(format!("vCPU ({} x {vcpu})", tasks_of(od, od_max)), format!("fargate.vcpu.{arch}"), od * vcpu, od_max * vcpu);
    add(format!("memory ({} x {gb} GB)", tasks_of(od, od_max)), format!("fargate.gb.{arch}"), od * gb, od_max * gb);
    add(
        format!("Spot vCPU ({} x {vcpu})", tasks_of(spot, spot_max)),
        format!("fargate_spot.vcpu.{arch}"),
        spot * vcpu,
        spot_max * vcpu,
    );
    add(
        format!("Spot memory ({} x {gb} GB)", tasks_of(spot, spot_max)),
        format!("fargate_spot.gb.{arch}"),
        spot * gb,
        spot_max * gb,
    );
    if t.public_ip && tasks_max > 0 {
        let p = parts::public_ipv4(cx, "one per task", tasks as f64);
        out.push(if tasks_max > tasks { p.up_to(tasks_max as f64 * cx.hours) } else { p });
    }
    out
}
