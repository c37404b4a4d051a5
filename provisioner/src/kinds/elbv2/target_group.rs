//! `target_group`: where a load balancer sends requests (ECS tasks by IP), with its health check
//! and deregistration delay. Named `<stack>-<name>-<hash of the forcing fields>`, so a
//! replacement is made before the old group goes: the listener moves to the new group first
//! (ELBv2 refuses to delete a group a listener still uses).

use super::{arn_suffix, check_name_with, elb, err, name_of, set_tags, tag_list};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{Matcher, ProtocolEnum, TargetGroupAttribute, TargetTypeEnum};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new(
    "target_group",
    "A target group named <stack>-<name>-<4 hex digits> (at most 32 characters) with its health check.",
    &TargetGroup,
)
.fields(&[
    Field::required("vpc", FieldType::Ref(&["vpc"]), Update::Replace, "The VPC of its targets."),
    Field::required("port", FieldType::Int { min: 1, max: 65535 }, Update::Replace, "The port targets listen on."),
    Field::optional(
        "protocol",
        FieldType::Enum(&["HTTP", "HTTPS"]),
        Some("\"HTTP\""),
        Update::Replace,
        "Protocol to the targets.",
    ),
    Field::optional(
        "target_type",
        FieldType::Enum(&["ip", "instance"]),
        Some("\"ip\""),
        Update::Replace,
        "`ip` for Fargate tasks, `instance` for EC2 hosts.",
    ),
    Field::optional(
        "health_check_path",
        FieldType::String,
        Some("\"/readyz\""),
        Update::InPlace,
        "Path of the health check.",
    ),
    Field::optional(
        "health_check_interval",
        FieldType::Int { min: 5, max: 300 },
        Some("15"),
        Update::InPlace,
        "Seconds between health checks.",
    ),
    Field::optional(
        "health_check_timeout",
        FieldType::Int { min: 2, max: 120 },
        Some("5"),
        Update::InPlace,
        "Seconds before a check counts as failed (less than the interval).",
    ),
    Field::optional(
        "healthy_threshold",
        FieldType::Int { min: 2, max: 10 },
        Some("2"),
        Update::InPlace,
        "Passed checks before a target receives traffic.",
    ),
    Field::optional(
        "unhealthy_threshold",
        FieldType::Int { min: 2, max: 10 },
        Some("3"),
        Update::InPlace,
        "Failed checks before a target is taken out.",
    ),
    Field::optional(
        "matcher",
        FieldType::String,
        Some("\"200\""),
        Update::InPlace,
        "HTTP codes counted healthy: \"200\", \"200-299\".",
    ),
    Field::optional(
        "deregistration_delay",
        FieldType::Int { min: 0, max: 3600 },
        Some("30"),
        Update::InPlace,
        "Seconds a leaving target may finish its requests (AWS's default is 300: long deploys).",
    ),
    TAGS,
])
.outputs(&[
    ("id", "Target group ARN"),
    ("arn", "Target group ARN"),
    ("name", "<stack>-<name>"),
    ("arn_suffix", "targetgroup/<name>/<id>, as CloudWatch and target tracking name it"),
])
.check(check)
.create_before_delete();

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    vpc: String,
    port: i32,
    protocol: Option<String>,
    target_type: Option<String>,
    health_check_path: Option<String>,
    health_check_interval: Option<i32>,
    health_check_timeout: Option<i32>,
    healthy_threshold: Option<i32>,
    unhealthy_threshold: Option<i32>,
    matcher: Option<String>,
    deregistration_delay: Option<i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// Path, interval, timeout, healthy and unhealthy thresholds, matcher.
type Health<'a> = (Option<&'a str>, Option<i32>, Option<i32>, Option<i32>, Option<i32>, Option<&'a str>);

impl Attrs {
    fn health(&self) -> Health<'_> {
        (
            self.health_check_path.as_deref(),
            self.health_check_interval,
            self.health_check_timeout,
            self.healthy_threshold,
            self.unhealthy_threshold,
            self.matcher.as_deref(),
        )
    }
}

struct TargetGroup;

/// The suffix of a group's name: its forcing fields, hashed (FNV-1a), so a replacement never
/// collides with the group it replaces.
fn suffix(w: &Attrs) -> String {
    let key = format!("{}|{}|{:?}|{:?}", w.vpc, w.port, w.protocol, w.target_type);
    let h = key.bytes().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{:04x}", (h ^ (h >> 16)) & 0xffff)
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    check_name_with(r, stack, "-0000", d);
}

async fn set_delay(cx: &Cx, arn: &str, seconds: i64) -> Result<(), OpError> {
    elb(cx)
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key("deregistration_delay.timeout_seconds")
                .value(seconds.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| err("ModifyTargetGroupAttributes", e))?;
    Ok(())
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
    name: String,
    arn_suffix: String,
}

#[async_trait]
impl Typed for TargetGroup {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let mut out = Vec::new();
        for (tg, tags) in super::inventory(cx).await?.target_groups {
            let (Some(arn), Some(name)) = (tg.target_group_arn(), tg.target_group_name()) else { continue };
            // The deregistration delay is an attribute, which no describe returns.
            let attrs = elb(cx)
                .describe_target_group_attributes()
                .target_group_arn(arn)
                .send()
                .await
                .map_err(|e| err("DescribeTargetGroupAttributes", e))?;
            let delay = attrs
                .attributes()
                .iter()
                .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
                .and_then(|a| a.value()?.parse::<i64>().ok());
            let outputs = Outputs { arn: arn.to_owned(), name: name.to_owned(), arn_suffix: arn_suffix(arn) };
            let owned = |s: Option<&str>| s.map(str::to_owned);
            let attrs = Attrs {
                vpc: tg.vpc_id().unwrap_or_default().to_owned(),
                port: tg.port().unwrap_or_default(),
                protocol: owned(tg.protocol().map(|p| p.as_str())),
                target_type: owned(tg.target_type().map(|t| t.as_str())),
                health_check_path: owned(tg.health_check_path()),
                health_check_interval: tg.health_check_interval_seconds(),
                health_check_timeout: tg.health_check_timeout_seconds(),
                healthy_threshold: tg.healthy_threshold_count(),
                unhealthy_threshold: tg.unhealthy_threshold_count(),
                matcher: owned(tg.matcher().and_then(|m| m.http_code())),
                deregistration_delay: Some(delay.unwrap_or(300)),
                tags,
            };
            let address = Address::found(&attrs.tags, KIND.name, name);
            out.push(Found { id: arn.to_owned(), address, attrs, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let (path, interval, timeout, healthy, unhealthy, matcher) = w.health();
        let out = elb(cx)
            .create_target_group()
            .name(format!("{}-{}", name_of(cx, address), suffix(w)))
            .vpc_id(&w.vpc)
            .port(w.port)
            .protocol(ProtocolEnum::from(w.protocol.as_deref().unwrap_or("HTTP")))
            .target_type(TargetTypeEnum::from(w.target_type.as_deref().unwrap_or("ip")))
            .set_health_check_path(path.map(str::to_owned))
            .set_health_check_interval_seconds(interval)
            .set_health_check_timeout_seconds(timeout)
            .set_healthy_threshold_count(healthy)
            .set_unhealthy_threshold_count(unhealthy)
            .set_matcher(matcher.map(|m| Matcher::builder().http_code(m).build()))
            .set_tags(Some(tag_list(&w.tags)))
            .send()
            .await
            .map_err(|e| err("CreateTargetGroup", e))?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|tg| tg.target_group_arn())
            .ok_or_else(|| OpError::fatal("CreateTargetGroup", "no ARN"))?
            .to_owned();
        if let Some(d) = w.deregistration_delay {
            set_delay(cx, &arn, d).await?;
        }
        Ok(arn)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        if h.health() != w.health() {
            let (path, interval, timeout, healthy, unhealthy, matcher) = w.health();
            elb(cx)
                .modify_target_group()
                .target_group_arn(id)
                .set_health_check_path(path.map(str::to_owned))
                .set_health_check_interval_seconds(interval)
                .set_health_check_timeout_seconds(timeout)
                .set_healthy_threshold_count(healthy)
                .set_unhealthy_threshold_count(unhealthy)
                .set_matcher(matcher.map(|m| Matcher::builder().http_code(m).build()))
                .send()
                .await
                .map_err(|e| err("ModifyTargetGroup", e))?;
        }
        if let (Some(d), true) = (w.deregistration_delay, h.deregistration_delay != w.deregistration_delay) {
            set_delay(cx, id, d).await?;
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(
            elb(cx).delete_target_group().target_group_arn(id).send().await.map_err(|e| err("DeleteTargetGroup", e)),
        )
    }
}
