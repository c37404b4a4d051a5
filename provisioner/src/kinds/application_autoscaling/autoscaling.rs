//! `autoscaling`: the task count of an ECS service between a minimum and a maximum, by target
//! tracking on memory, CPU or load-balancer requests per task. Its one policy is named after the
//! resource's address, which is how discovery knows it.

use super::{aas, err, targets};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError, Transient};
use crate::provider::{Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ServiceNamespace,
    TargetTrackingScalingPolicyConfiguration,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Application Auto Scaling makes its service-linked role on first use and cannot assume
/// it (nor read the ECS service through it) until it has propagated.
const TRANSIENT: &[Transient] = &[
    Transient::new(
        "RegisterScalableTarget",
        "ValidationException",
        2,
        "terraform-provider-aws internal/service/appautoscaling/target.go: create retry",
    )
    .saying("Unable to assume IAM role"),
    Transient::new(
        "RegisterScalableTarget",
        "ValidationException",
        2,
        "terraform-provider-aws internal/service/appautoscaling/target.go: create retry",
    )
    .saying("ECS service doesn't exist"),
    Transient::new(
        "PutScalingPolicy",
        "FailedResourceAccessException",
        2,
        "terraform-provider-aws internal/service/appautoscaling/policy.go: create retry",
    ),
];

pub static KIND: Kind = Kind::new(
    "autoscaling",
    "Target tracking of an ECS service's task count (memory, CPU or requests per task).",
    &Autoscaling,
)
.fields(&[
    Field::required("service", FieldType::Ref(&["ecs_service"]), Update::Replace, "The ECS service."),
    Field::required("min", FieldType::Int { min: 0, max: 1000 }, Update::InPlace, "Fewest tasks."),
    Field::required("max", FieldType::Int { min: 1, max: 1000 }, Update::InPlace, "Most tasks."),
    Field::optional(
        "metric",
        FieldType::Enum(&["memory", "cpu", "requests"]),
        Some("\"memory\""),
        Update::InPlace,
        "What is tracked: average memory or CPU (per cent), or load-balancer requests per task.",
    ),
    Field::required(
        "target",
        FieldType::Int { min: 1, max: 1_000_000 },
        Update::InPlace,
        "The value kept: 90 (% memory), 1000 (requests).",
    ),
    Field::optional(
        "resource_label",
        FieldType::String,
        None,
        Update::InPlace,
        "For `requests`: \"${load_balancer.web.arn_suffix}/${target_group.web.arn_suffix}\".",
    ),
    Field::optional(
        "scale_in_cooldown",
        FieldType::Int { min: 0, max: 3600 },
        Some("300"),
        Update::InPlace,
        "Seconds between scale-ins.",
    ),
    Field::optional(
        "scale_out_cooldown",
        FieldType::Int { min: 0, max: 3600 },
        Some("60"),
        Update::InPlace,
        "Seconds between scale-outs.",
    ),
])
.outputs(&[("id", "service/<cluster>/<service>")])
.check(check)
.transient(TRANSIENT);

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    service: String,
    min: i32,
    max: i32,
    metric: Option<String>,
    target: i64,
    resource_label: Option<String>,
    scale_in_cooldown: Option<i32>,
    scale_out_cooldown: Option<i32>,
}

fn check(r: &Resource, _: &Stack, d: &mut Diags) {
    let int = |f: &str| match r.fields.get(f) {
        Some((Val::Int(i), s)) => Some((*i, s.clone())),
        _ => None,
    };
    if let (Some((min, _)), Some((max, span))) = (int("min"), int("max")) {
        if min > max {
            d.error(
                "min-above-max",
                span,
                format!("{}: max {max} is below min {min}", r.address()),
                Some(format!("set max to {min} or more")),
            );
        }
    }
    let metric = r.str("metric").map_or("memory", |(m, _)| m);
    match (metric, r.fields.get("resource_label")) {
        ("requests", None) => d.error(
            "requests-without-label",
            r.span.clone(),
            format!("{} tracks requests but names no resource_label", r.address()),
            Some("add resource_label = \"${load_balancer.<lb>.arn_suffix}/${target_group.<tg>.arn_suffix}\"".into()),
        ),
        (m, Some((_, span))) if m != "requests" => d.error(
            "label-without-requests",
            span.clone(),
            format!("{}: resource_label is only for metric = \"requests\"", r.address()),
            None,
        ),
        _ => {}
    }
    if let (Some((t, span)), true) = (int("target"), metric != "requests") {
        if t > 100 {
            d.error(
                "bad-target",
                span,
                format!("{}: {metric} is tracked in per cent; {t} is above 100", r.address()),
                Some("e.g. target = 90".into()),
            );
        }
    }
}

/// `service/<cluster>/<name>` of a service ARN `arn:...:service/<cluster>/<name>`.
fn resource_id(service_arn: &str) -> String {
    service_arn.split_once(":service/").map_or_else(|| service_arn.to_owned(), |(_, r)| format!("service/{r}"))
}

struct Autoscaling;

async fn put(cx: &Cx, address: &str, w: &Attrs) -> Result<String, OpError> {
    let id = resource_id(&w.service);
    aas(cx)
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .min_capacity(w.min)
        .max_capacity(w.max)
        .send()
        .await
        .map_err(|e| err("RegisterScalableTarget", e))?;
    let metric = match w.metric.as_deref() {
        Some("cpu") => MetricType::EcsServiceAverageCpuUtilization,
        Some("requests") => MetricType::AlbRequestCountPerTarget,
        _ => MetricType::EcsServiceAverageMemoryUtilization,
    };
    let spec = PredefinedMetricSpecification::builder()
        .predefined_metric_type(metric)
        .set_resource_label(w.resource_label.clone())
        .build()
        .map_err(|e| OpError::fatal("build PredefinedMetricSpecification", e.to_string()))?;
    aas(cx)
        .put_scaling_policy()
        .policy_name(address)
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .policy_type(PolicyType::TargetTrackingScaling)
        .target_tracking_scaling_policy_configuration(
            TargetTrackingScalingPolicyConfiguration::builder()
                .target_value(w.target as f64)
                .predefined_metric_specification(spec)
                .scale_in_cooldown(w.scale_in_cooldown.unwrap_or(300))
                .scale_out_cooldown(w.scale_out_cooldown.unwrap_or(60))
                .build()
                .map_err(|e| OpError::fatal("build TargetTrackingScalingPolicyConfiguration", e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| err("PutScalingPolicy", e))?;
    Ok(id)
}

#[async_trait]
impl Typed for Autoscaling {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        let targets: BTreeMap<String, super::Target> =
            targets(cx).await?.into_iter().map(|t| (t.resource_id.clone(), t)).collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let services = crate::kinds::ecs::service_arns(cx).await?;
        let mut out = Vec::new();
        let mut pages =
            aas(cx).describe_scaling_policies().service_namespace(ServiceNamespace::Ecs).into_paginator().send();
        while let Some(page) = pages.next().await {
            for p in page.map_err(|e| err("DescribeScalingPolicies", e))?.scaling_policies() {
                let Some(t) = targets.get(p.resource_id()) else { continue };
                if !p.policy_name().starts_with("autoscaling.") {
                    continue;
                }
                let Some(service) = services.iter().find(|a| resource_id(a) == t.resource_id) else { continue };
                let conf = p.target_tracking_scaling_policy_configuration();
                let spec = conf.and_then(|c| c.predefined_metric_specification());
                let metric = match spec.map(|s| s.predefined_metric_type()) {
                    Some(MetricType::EcsServiceAverageCpuUtilization) => "cpu",
                    Some(MetricType::AlbRequestCountPerTarget) => "requests",
                    _ => "memory",
                };
                let attrs = Attrs {
                    service: service.clone(),
                    min: t.min,
                    max: t.max,
                    metric: Some(metric.to_owned()),
                    target: conf.map(|c| c.target_value() as i64).unwrap_or_default(),
                    resource_label: spec.and_then(|s| s.resource_label()).map(str::to_owned),
                    scale_in_cooldown: conf.and_then(|c| c.scale_in_cooldown()),
                    scale_out_cooldown: conf.and_then(|c| c.scale_out_cooldown()),
                };
                out.push(Found { id: t.resource_id.clone(), address: p.policy_name().to_owned(), attrs, outputs: () });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, want: &Attrs, _token: &str) -> Result<String, OpError> {
        put(cx, &address.to_string(), want).await
    }

    /// Registering a target again and putting its policy again both overwrite: one path.
    async fn update(&self, cx: &Cx, id: &str, _: Option<&Attrs>, w: &Attrs) -> Result<(), OpError> {
        put(cx, &policy_name(cx, id).await?, w).await.map(|_| ())
    }

    /// Deregistering the target deletes its policies.
    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(
            aas(cx)
                .deregister_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .resource_id(id)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .send()
                .await
                .map_err(|e| err("DeregisterScalableTarget", e)),
        )
    }
}

/// The name of the target's policy (the resource's address), read from AWS.
async fn policy_name(cx: &Cx, id: &str) -> Result<String, OpError> {
    let d = aas(cx)
        .describe_scaling_policies()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(id)
        .send()
        .await
        .map_err(|e| err("DescribeScalingPolicies", e))?;
    d.scaling_policies()
        .iter()
        .map(|p| p.policy_name())
        .find(|n| n.starts_with("autoscaling."))
        .map(str::to_owned)
        .ok_or_else(|| {
            OpError::new(
                crate::error::Class::NotFound,
                "DescribeScalingPolicies",
                format!("{id} has no policy of this stack"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_of_service_arns() {
        assert_eq!(resource_id("arn:aws:ecs:eu-central-1:123456789012:service/q-main/web"), "service/q-main/web");
    }
}
