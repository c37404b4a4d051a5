//! `waf_web_acl`: a web ACL named `<stack>-<name>`, regional (for a load balancer) or of
//! CloudFront scope (us-east-1), with a default action, a rate-based rule whose limit and
//! window come from the stack file, and optional AWS managed rule groups, in that priority.

use super::{err, waf};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{address_in, known, marker, Address, Found, Typed};
use crate::provider::{null_as_empty, Cx};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_wafv2::types::{
    AllowAction, BlockAction, CountAction, DefaultAction, ManagedRuleGroupStatement, NoneAction, OverrideAction,
    RateBasedStatement, RateBasedStatementAggregateKeyType, Rule, RuleAction, Scope, Statement, Tag, VisibilityConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The windows (seconds) a rate-based rule may count over.
const WINDOWS: &[i64] = &[60, 120, 300, 600];
/// The name of the rate-based rule this kind writes.
const RATE_RULE: &str = "rate-limit";

pub static KIND: Kind = Kind::new("waf_web_acl", "A WAF web ACL named <stack>-<name>: a default action, a rate-based rule per client IP, AWS managed rule groups.", &WebAcl)
.fields(&[
        Field::optional(
            "scope",
            FieldType::Enum(&["REGIONAL", "CLOUDFRONT"]),
            Some("\"REGIONAL\""),
            Update::Replace,
            "REGIONAL for a load balancer; CLOUDFRONT for a distribution (then region = \"us-east-1\").",
        ),
        Field::optional("default_action", FieldType::Enum(&["allow", "block"]), Some("\"allow\""), Update::InPlace, "What requests no rule decides get.")
        .security(Security::Guard(|b, a| b == "block" && a != "block")),
        Field::optional(
            "rate_limit",
            FieldType::Int { min: 10, max: 2_000_000_000 },
            None,
            Update::InPlace,
            "Requests one client IP may make per `rate_window` before it is blocked (no rule when absent).",
        )
        .security(Security::Guard(|b, a| !b.is_null() && a.as_i64().is_none_or(|a| b.as_i64().is_some_and(|b| a > b)))),
        Field::optional(
            "rate_window",
            FieldType::Int { min: 60, max: 600 },
            Some("300"),
            Update::InPlace,
            "Seconds the rate is counted over: 60, 120, 300 or 600.",
        ),
        Field::optional("rate_action", FieldType::Enum(&["block", "count"]), Some("\"block\""), Update::InPlace, "`count` only measures.")
        .security(Security::Guard(|b, a| b == "block" && a != "block")),
        Field::optional(
            "managed_rule_groups",
            FieldType::List(&FieldType::String),
            None,
            Update::InPlace,
            "AWS managed rule groups, after the rate rule, in this order: \"AWSManagedRulesCommonRuleSet\", ...",
        )
        .ordered()
        .security(Security::Guard(crate::schema::items_dropped)),
        Field::optional("metrics", FieldType::Bool, Some("true"), Update::InPlace, "CloudWatch metrics and sampled requests."),
        Field::optional(
            "traffic",
            FieldType::Enum(&["web", "cdn"]),
            None,
            Update::Setting,
            "Which [usage] requests it inspects: web (web_requests: the map's) or cdn (cdn_requests); default: web at REGIONAL scope, cdn at CLOUDFRONT.",
        ),
        TAGS,
    ])
.outputs(&[("id", "Web ACL ARN"), ("arn", "Web ACL ARN"), ("name", "<stack>-<name>"), ("acl_id", "The ACL's own id")])
.check(check)
.normalize(normalize)
.cost(cost, &[crate::cost::WEB_REQUESTS, crate::cost::CDN_REQUESTS]);

/// Managed rule groups with a subscription or per-request fee of their own: priced under
/// `waf.managed.<group>` (the snapshot holds none yet, so they show as unpriced).
const PAID_GROUPS: &[&str] = &[
    "AWSManagedRulesBotControlRuleSet",
    "AWSManagedRulesATPRuleSet",
    "AWSManagedRulesACFPRuleSet",
    "AWSManagedRulesAntiDDoSRuleSet",
];

/// The ACL, one rule each for the rate rule and every managed group, and the requests it
/// inspects (the load balancers' or, at CloudFront scope, the distributions').
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::{parts::millions, Part, CDN_REQUESTS, WEB_REQUESTS};
    let Some(a) = cx.attrs::<Attrs>() else { return Vec::new() };
    let groups = &a.managed_rule_groups;
    let rules = groups.len() + usize::from(a.rate_limit.is_some());
    let requests = match (a.traffic.as_deref(), a.scope.as_deref()) {
        (Some("web"), _) => &WEB_REQUESTS,
        (Some("cdn"), _) | (None, Some("CLOUDFRONT")) => &CDN_REQUESTS,
        _ => &WEB_REQUESTS,
    };
    let mut out = vec![
        Part::new("web ACL", "waf.web_acl", 1.0),
        Part::new(format!("rules ({rules})"), "waf.rule", rules as f64),
        Part::new("requests inspected", "waf.requests", millions(cx.usage(requests))),
    ];
    for g in groups.iter().filter(|g| PAID_GROUPS.contains(&g.as_str())) {
        out.push(Part::new(format!("{g} subscription"), format!("waf.managed.{g}"), 1.0));
    }
    out
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Clone, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    scope: Option<String>,
    default_action: Option<String>,
    rate_limit: Option<i64>,
    rate_window: Option<i64>,
    rate_action: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    managed_rule_groups: Vec<String>,
    metrics: Option<bool>,
    traffic: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn built<T>(what: &str, r: Result<T, aws_sdk_wafv2::error::BuildError>) -> Result<T, OpError> {
    r.map_err(|e| OpError::fatal(format!("build {what}"), e.to_string()))
}

impl Attrs {
    fn scope(&self) -> Scope {
        if self.scope.as_deref() == Some("CLOUDFRONT") {
            Scope::Cloudfront
        } else {
            Scope::Regional
        }
    }

    fn visibility(&self, metric: &str) -> Result<VisibilityConfig, OpError> {
        let on = self.metrics.unwrap_or(true);
        let metric: String =
            metric.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        built(
            "VisibilityConfig",
            VisibilityConfig::builder()
                .sampled_requests_enabled(on)
                .cloud_watch_metrics_enabled(on)
                .metric_name(metric)
                .build(),
        )
    }

    fn default_action(&self) -> DefaultAction {
        match self.default_action.as_deref() {
            Some("block") => DefaultAction::builder().block(BlockAction::builder().build()).build(),
            _ => DefaultAction::builder().allow(AllowAction::builder().build()).build(),
        }
    }

    fn rules(&self, acl_name: &str) -> Result<Vec<Rule>, OpError> {
        let mut rules = Vec::new();
        if let Some(limit) = self.rate_limit {
            let rate = built(
                "RateBasedStatement",
                RateBasedStatement::builder()
                    .limit(limit)
                    .evaluation_window_sec(self.rate_window.unwrap_or(300))
                    .aggregate_key_type(RateBasedStatementAggregateKeyType::Ip)
                    .build(),
            )?;
            let action = match self.rate_action.as_deref() {
                Some("count") => RuleAction::builder().count(CountAction::builder().build()).build(),
                _ => RuleAction::builder().block(BlockAction::builder().build()).build(),
            };
            rules.push(built(
                "Rule",
                Rule::builder()
                    .name(RATE_RULE)
                    .priority(0)
                    .statement(Statement::builder().rate_based_statement(rate).build())
                    .action(action)
                    .visibility_config(self.visibility(&format!("{acl_name}-{RATE_RULE}"))?)
                    .build(),
            )?);
        }
        for (i, group) in self.managed_rule_groups.iter().enumerate() {
            let statement = built(
                "ManagedRuleGroupStatement",
                ManagedRuleGroupStatement::builder().vendor_name("AWS").name(group).build(),
            )?;
            rules.push(built(
                "Rule",
                Rule::builder()
                    .name(group)
                    .priority(i as i32 + 1)
                    .statement(Statement::builder().managed_rule_group_statement(statement).build())
                    .override_action(OverrideAction::builder().none(NoneAction::builder().build()).build())
                    .visibility_config(self.visibility(&format!("{acl_name}-{group}"))?)
                    .build(),
            )?);
        }
        Ok(rules)
    }
}

/// Rate fields mean nothing without a rate rule.
fn normalize(v: &mut Value) {
    if v.get("rate_limit").is_none_or(Value::is_null) {
        v["rate_window"] = Value::Null;
        v["rate_action"] = Value::Null;
    }
    if v.get("managed_rule_groups").is_none_or(Value::is_null) {
        v["managed_rule_groups"] = json!([]);
    }
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    let name = format!("{}-{}", stack.name, r.name);
    if name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        d.error(
            "bad-waf-name",
            r.span.clone(),
            format!("{}: its AWS name `{name}` must be 1-128 letters, digits, hyphens or underscores", r.address()),
            None,
        );
    }
    if let Some((Val::Int(w), span)) = r.fields.get("rate_window") {
        if !WINDOWS.contains(w) {
            let near = WINDOWS.iter().min_by_key(|x| (*x - w).abs()).copied().unwrap_or(300);
            d.error(
                "bad-rate-window",
                span.clone(),
                format!("{} counts requests over {w} s, which WAF does not offer", r.address()),
                Some(format!("did you mean {near}? accepted: 60, 120, 300, 600")),
            );
        }
    }
    if let Some((scope, span)) = r.str("scope") {
        if scope == "CLOUDFRONT" && stack.region_of(r) != "us-east-1" {
            d.error(
                "cloudfront-scope-region",
                span,
                format!("{} has CloudFront scope, which lives only in us-east-1", r.address()),
                Some("add region = \"us-east-1\"".into()),
            );
        }
    }
    if let Some((Val::List(groups), _)) = r.fields.get("managed_rule_groups") {
        for (g, span) in groups {
            if let Val::Str(g) = g {
                if !g.starts_with("AWSManagedRules") {
                    d.error(
                        "bad-rule-group",
                        span.clone(),
                        format!("`{g}` is not an AWS managed rule group"),
                        Some("AWS's groups are named AWSManagedRules..., e.g. AWSManagedRulesCommonRuleSet".into()),
                    );
                }
            }
        }
    }
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
    name: String,
    acl_id: String,
}

struct WebAcl;

/// The scopes whose ACLs live in `region`: CloudFront's only in us-east-1.
fn scopes(region: &str) -> Vec<Scope> {
    if region == "us-east-1" {
        vec![Scope::Regional, Scope::Cloudfront]
    } else {
        vec![Scope::Regional]
    }
}

/// `(name, id)` of an ACL from its ARN `.../webacl/<name>/<id>`, and its scope.
fn parts(arn: &str) -> Option<(&str, &str, Scope)> {
    let (rest, scope) = match arn.split_once(":global/webacl/") {
        Some((_, r)) => (r, Scope::Cloudfront),
        None => (arn.split_once(":regional/webacl/")?.1, Scope::Regional),
    };
    let (name, id) = rest.split_once('/')?;
    Some((name, id, scope))
}

/// The ACL at `arn` and the lock token a write based on this read must carry.
async fn get_acl(cx: &Cx, arn: &str) -> Result<(aws_sdk_wafv2::types::WebAcl, String), OpError> {
    let (name, id, scope) =
        parts(arn).ok_or_else(|| OpError::fatal("GetWebACL", format!("not a web ACL ARN: {arn}")))?;
    let got = waf(cx).get_web_acl().name(name).id(id).scope(scope).send().await.map_err(|e| err("GetWebACL", e))?;
    let acl = got.web_acl().cloned().ok_or_else(|| OpError::fatal("GetWebACL", "no ACL"))?;
    Ok((acl, got.lock_token().unwrap_or_default().to_owned()))
}

#[async_trait]
impl Typed for WebAcl {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let mut out = Vec::new();
        for scope in scopes(&cx.region) {
            let mut marker_next: Option<String> = None;
            loop {
                let page = waf(cx)
                    .list_web_acls()
                    .scope(scope.clone())
                    .limit(100)
                    .set_next_marker(marker_next.take())
                    .send()
                    .await
                    .map_err(|e| err("ListWebACLs", e))?;
                for s in page.web_acls() {
                    let (Some(arn), Some(address)) = (s.arn(), s.description().and_then(|d| address_in(cx, d))) else {
                        continue;
                    };
                    let (acl, _) = get_acl(cx, arn).await?;
                    let tags = waf(cx)
                        .list_tags_for_resource()
                        .resource_arn(arn)
                        .send()
                        .await
                        .map_err(|e| err("ListTagsForResource", e))?;
                    let tags: BTreeMap<String, String> = tags
                        .tag_info_for_resource()
                        .map(|t| t.tag_list().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())
                        .unwrap_or_default();
                    let rate = acl.rules().iter().find(|r| r.name() == RATE_RULE);
                    let rate_stmt = rate.and_then(|r| r.statement()).and_then(|s| s.rate_based_statement());
                    let mut groups: Vec<(i32, String)> = acl
                        .rules()
                        .iter()
                        .filter_map(|r| {
                            Some((r.priority(), r.statement()?.managed_rule_group_statement()?.name().to_owned()))
                        })
                        .collect();
                    groups.sort();
                    let blocks = acl.default_action().and_then(|a| a.block()).is_some();
                    let window = |s: &aws_sdk_wafv2::types::RateBasedStatement| match s.evaluation_window_sec() {
                        0 => 300,
                        w => w,
                    };
                    let counts = |a: &aws_sdk_wafv2::types::RuleAction| a.count().is_some();
                    let attrs = Attrs {
                        scope: Some(if scope == Scope::Cloudfront { "CLOUDFRONT" } else { "REGIONAL" }.to_owned()),
                        default_action: Some(if blocks { "block" } else { "allow" }.to_owned()),
                        rate_limit: rate_stmt.map(|s| s.limit()),
                        // Rate fields mean nothing without a rate rule (as `normalize` says).
                        rate_window: rate_stmt.map(window),
                        rate_action: rate_stmt
                            .and(rate.and_then(|r| r.action()))
                            .map(|a| if counts(a) { "count" } else { "block" }.to_owned()),
                        managed_rule_groups: groups.into_iter().map(|(_, g)| g).collect(),
                        metrics: Some(acl.visibility_config().is_some_and(|v| v.cloud_watch_metrics_enabled())),
                        traffic: None,
                        tags,
                    };
                    let outputs =
                        Outputs { arn: arn.to_owned(), name: acl.name().to_owned(), acl_id: acl.id().to_owned() };
                    out.push(Found { id: arn.to_owned(), address, attrs, outputs });
                }
                match page.next_marker() {
                    Some(m) if !page.web_acls().is_empty() => marker_next = Some(m.to_owned()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}-{}", cx.stack, address.name());
        let tags = w
            .tags
            .iter()
            .map(|(k, v)| built("Tag", Tag::builder().key(k).value(v).build()))
            .collect::<Result<Vec<_>, _>>()?;
        let out = waf(cx)
            .create_web_acl()
            .name(&name)
            .scope(w.scope())
            .description(marker(cx, &address.to_string()))
            .default_action(w.default_action())
            .set_rules(Some(w.rules(&name)?))
            .visibility_config(w.visibility(&name)?)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| err("CreateWebACL", e))?;
        Ok(out.summary().and_then(|s| s.arn()).ok_or_else(|| OpError::fatal("CreateWebACL", "no ARN"))?.to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        if (Attrs { tags: h.tags.clone(), ..want.clone() }) != *h {
            // The lock token of a fresh read: a write based on an older read is refused
            // (WAFOptimisticLockException, retried with a new read).
            let (acl, token) = get_acl(cx, id).await?;
            let name = acl.name().to_owned();
            waf(cx)
                .update_web_acl()
                .name(&name)
                .id(acl.id())
                .scope(w.scope())
                .lock_token(token)
                .set_description(acl.description().map(str::to_owned))
                .default_action(w.default_action())
                .set_rules(Some(w.rules(&name)?))
                .visibility_config(w.visibility(&name)?)
                .send()
                .await
                .map_err(|e| err("UpdateWebACL", e))?;
        }
        let (gone, changed) = crate::provider::tag_changes(&h.tags, &w.tags);
        if !gone.is_empty() {
            waf(cx)
                .untag_resource()
                .resource_arn(id)
                .set_tag_keys(Some(gone))
                .send()
                .await
                .map_err(|e| err("UntagResource", e))?;
        }
        if !changed.is_empty() {
            let tags = changed
                .iter()
                .map(|(k, v)| built("Tag", Tag::builder().key(k).value(v).build()))
                .collect::<Result<Vec<_>, _>>()?;
            waf(cx)
                .tag_resource()
                .resource_arn(id)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| err("TagResource", e))?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        let (acl, token) = match get_acl(cx, id).await {
            Err(e) if e.is_not_found() => return Ok(()),
            r => r?,
        };
        let (_, _, scope) = parts(id).ok_or_else(|| OpError::fatal("DeleteWebACL", "not a web ACL ARN"))?;
        gone_ok(
            waf(cx)
                .delete_web_acl()
                .name(acl.name())
                .id(acl.id())
                .scope(scope)
                .lock_token(token)
                .send()
                .await
                .map_err(|e| err("DeleteWebACL", e)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::decode;
    use serde_json::json;

    #[test]
    fn arns_name_the_acl_and_its_scope() {
        let (n, id, s) = parts("arn:aws:wafv2:eu-central-1:123456789012:regional/webacl/q-web/1a2b").unwrap();
        assert_eq!((n, id, s), ("q-web", "1a2b", Scope::Regional));
        let (_, _, s) = parts("arn:aws:wafv2:us-east-1:123456789012:global/webacl/q-edge/9").unwrap();
        assert_eq!(s, Scope::Cloudfront);
        assert!(parts("arn:aws:s3:::b").is_none());
    }

    #[test]
    fn rules_in_priority_order() {
        let a = decode::<Attrs>(&json!({ "rate_limit": 500, "managed_rule_groups": ["AWSManagedRulesCommonRuleSet"] }))
            .unwrap();
        let rules = a.rules("s-web").unwrap();
        assert_eq!(
            rules.iter().map(|r| (r.name(), r.priority())).collect::<Vec<_>>(),
            [(RATE_RULE, 0), ("AWSManagedRulesCommonRuleSet", 1)]
        );
        let rate = rules[0].statement().unwrap().rate_based_statement().unwrap();
        assert_eq!((rate.limit(), rate.evaluation_window_sec()), (500, 300));
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    /// $5 the ACL, $1 a rule (the rate rule and each managed group), $0.60 a million requests;
    /// a group with a fee of its own is reported unpriced, not taken as free.
    #[test]
    fn acl_rules_requests_and_paid_groups_said() {
        let acl = "[waf_web_acl.w]\nrate_limit = 500\nmanaged_rule_groups = [\"AWSManagedRulesCommonRuleSet\", \"AWSManagedRulesKnownBadInputsRuleSet\"]\n";
        let b = priced(&format!(
            "[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n{acl}[usage]\nweb_requests = 131400000\n"
        ));
        close(of(&b, "waf_web_acl.w").monthly, 5.0 + 3.0 + 131.4 * 0.6);
        let b = priced("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[waf_web_acl.w]\nmanaged_rule_groups = [\"AWSManagedRulesBotControlRuleSet\"]\n");
        close(of(&b, "waf_web_acl.w").monthly, 6.0);
        assert!(b.unpriced.iter().any(|u| u.contains("AWSManagedRulesBotControlRuleSet")), "{:?}", b.unpriced);
    }
}
