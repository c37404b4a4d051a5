//! `log_group`: a CloudWatch Logs group with a retention, named `/<stack>/<name>`.

use super::{err, logs, prefix, set_tags, tags_of};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new(
    "log_group",
    "A CloudWatch Logs group, named /<stack>/<name> (its output `name`), with a retention.",
    &LogGroup,
)
.fields(&[
    Field::optional(
        "retention_days",
        FieldType::Int { min: 1, max: 3653 },
        Some("30"),
        Update::InPlace,
        "Days events are kept: one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...).",
    ),
    TAGS,
])
.outputs(&[("id", "The group's name"), ("name", "/<stack>/<name>"), ("arn", "The group's ARN")])
.check(check)
.cost(cost, &[LOG_GB]);

/// The retentions CloudWatch Logs accepts (`PutRetentionPolicy`).
const RETENTIONS: &[i64] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

const LOG_GB: crate::cost::UsageKey =
    crate::cost::UsageKey { name: "log_gb", unit: "GB a month", doc: "logs each log group takes in" };

/// Ingestion, and storage of what the retention keeps (a month's intake per 30 days kept; a
/// group that keeps logs forever is priced at a year's). 5 GB a month are free.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::Part;
    let gb = cx.usage(&LOG_GB);
    let days = cx.attrs::<Attrs>().and_then(|a| a.retention_days).unwrap_or(365) as f64;
    vec![
        Part::new("ingestion", "logs.ingest", gb),
        Part::new(format!("storage ({days} days kept)"), "logs.storage", gb * days / 30.0),
    ]
}

/// The declared shape.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Attrs {
    retention_days: Option<i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Default, Serialize)]
struct Outputs {
    name: String,
    arn: String,
}

struct LogGroup;

async fn set_retention(cx: &Cx, name: &str, days: Option<i64>) -> Result<(), OpError> {
    match days {
        Some(d) => logs(cx)
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(d as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("PutRetentionPolicy", e)),
        None => logs(cx)
            .delete_retention_policy()
            .log_group_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("DeleteRetentionPolicy", e)),
    }
}

/// The ARN the tagging calls take: without the `:*` older answers append.
fn arn_of(g: &aws_sdk_cloudwatchlogs::types::LogGroup) -> Option<String> {
    g.log_group_arn().map(str::to_owned).or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_owned()))
}

async fn group_arn(cx: &Cx, name: &str) -> Result<String, OpError> {
    let out = logs(cx)
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(|e| err("DescribeLogGroups", e))?;
    out.log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name))
        .and_then(arn_of)
        .ok_or_else(|| OpError::new(crate::error::Class::NotFound, "DescribeLogGroups", format!("{name} not found")))
}

#[async_trait]
impl Typed for LogGroup {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let mut groups = Vec::new();
        let mut pages = logs(cx).describe_log_groups().log_group_name_prefix(prefix(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for g in page.map_err(|e| err("DescribeLogGroups", e))?.log_groups() {
                let Some(name) = g.log_group_name() else { continue };
                groups.push((name.to_owned(), arn_of(g), g.retention_in_days()));
            }
        }
        // Tags have no batch read: one call per group (a stack holds a few).
        let mut out = Vec::new();
        for (name, arn, retention) in groups {
            let (Some(rest), Some(arn)) = (name.strip_prefix(&prefix(cx)), arn) else { continue };
            let tags = tags_of(cx, &arn).await?;
            let address = Address::found(&tags, KIND.name, rest);
            let attrs = Attrs { retention_days: retention.map(i64::from), tags };
            out.push(Found { id: name.clone(), address, attrs, outputs: Outputs { name, arn } });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, at: Address<'_>, want: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}{}", prefix(cx), at.name());
        let made = logs(cx)
            .create_log_group()
            .log_group_name(&name)
            .set_tags(Some(want.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| err("CreateLogGroup", e));
        match made {
            // The name is the idempotency key: a rerun finds its own group.
            Err(e) if e.has_code("ResourceAlreadyExistsException") => {}
            other => {
                other?;
            }
        }
        set_retention(cx, &name, want.retention_days).await?;
        Ok(name)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        if have.is_none_or(|h| h.retention_days != want.retention_days) {
            set_retention(cx, id, want.retention_days).await?;
        }
        let had = have.map(|h| h.tags.clone()).unwrap_or_default();
        if had == want.tags {
            return Ok(());
        }
        set_tags(cx, &group_arn(cx, id).await?, &had, &want.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(logs(cx).delete_log_group().log_group_name(id).send().await.map_err(|e| err("DeleteLogGroup", e)))
    }
}

fn check(r: &Resource, _: &Stack, d: &mut Diags) {
    if let Some((Val::Int(days), span)) = r.fields.get("retention_days") {
        if !RETENTIONS.contains(days) {
            let near = RETENTIONS.iter().min_by_key(|x| (*x - days).abs()).copied().unwrap_or(30);
            d.error(
                "bad-retention",
                span.clone(),
                format!("{} keeps logs {days} days, which CloudWatch Logs does not offer", r.address()),
                Some(format!(
                    "did you mean {near}? accepted: {}",
                    RETENTIONS.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                )),
            );
        }
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    /// Ingestion at $0.63 a GB and a month's storage per 30 days kept at $0.0324, the 5 free GB
    /// shared by every group of the stack: the first group uses them up.
    #[test]
    fn ingestion_and_storage_after_a_shared_free_tier() {
        let b = priced("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[log_group.a]\nretention_days = 30\n[log_group.b]\nretention_days = 60\n[usage]\nlog_gb = 10\n");
        close(of(&b, "log_group.a").monthly, 5.0 * 0.63 + 10.0 * 0.0324);
        close(of(&b, "log_group.b").monthly, 10.0 * 0.63 + 20.0 * 0.0324);
    }
}
