//! ELBv2: the application load balancer, its target groups and listeners, and what they share:
//! the client, ELBv2's error codes, tags (`DescribeTags` reads 20 ARNs a call; the describe calls
//! have no tag filter), and names. Load balancers and target groups are named `<stack>-<name>`
//! (AWS allows 32 characters, checked at load); what the stack owns of ELBv2 is read once per
//! discovery pass and shared by the kinds (and the WAF association, which asks each load
//! balancer for its ACL).

use crate::diag::Diags;
use crate::error::{Codes, OpError};
use crate::provider::{Cx, STACK_TAG};
use crate::stack::{Resource, Stack};
use aws_sdk_elasticloadbalancingv2::types::{Listener, LoadBalancer, Tag, TargetGroup};
use std::collections::{BTreeMap, HashMap};

pub mod listener;
pub mod load_balancer;
pub mod target_group;

super::kinds!(load_balancer, target_group, listener);

/// The ELBv2 client of the context's region.
pub fn elb(cx: &Cx) -> aws_sdk_elasticloadbalancingv2::Client {
    cx.client::<aws_sdk_elasticloadbalancingv2::Client>()
}

struct ElbCodes;

impl Codes for ElbCodes {
    fn not_found(&self, code: &str) -> bool {
        matches!(code, "LoadBalancerNotFound" | "TargetGroupNotFound" | "ListenerNotFound" | "RuleNotFound")
    }

    /// A target group still used by a listener being deleted, a load balancer still settling.
    fn retryable(&self, code: &str) -> bool {
        matches!(code, "ResourceInUse" | "PriorRequestNotComplete")
    }
}

super::service!(aws_sdk_elasticloadbalancingv2::Client, ElbCodes);

/// `m` as ELBv2 tags.
pub fn tag_list(m: &BTreeMap<String, String>) -> Vec<Tag> {
    m.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// The tags of each of `arns` (any ELBv2 resource), 20 ARNs a call.
pub async fn tags_of(cx: &Cx, arns: &[String]) -> Result<HashMap<String, BTreeMap<String, String>>, OpError> {
    let mut out = HashMap::new();
    for batch in arns.chunks(20) {
        let d = elb(cx)
            .describe_tags()
            .set_resource_arns(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| err("DescribeTags", e))?;
        for t in d.tag_descriptions() {
            let tags =
                t.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())));
            out.insert(t.resource_arn().unwrap_or_default().to_owned(), tags.collect());
        }
    }
    Ok(out)
}

/// Brings the tags of `arn` from `have` to `want`.
pub async fn set_tags(
    cx: &Cx,
    arn: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<(), OpError> {
    let (gone, changed) = crate::provider::tag_changes(have, want);
    if !gone.is_empty() {
        elb(cx)
            .remove_tags()
            .resource_arns(arn)
            .set_tag_keys(Some(gone))
            .send()
            .await
            .map_err(|e| err("RemoveTags", e))?;
    }
    if !changed.is_empty() {
        elb(cx)
            .add_tags()
            .resource_arns(arn)
            .set_tags(Some(tag_list(&changed)))
            .send()
            .await
            .map_err(|e| err("AddTags", e))?;
    }
    Ok(())
}

/// Tags by key.
pub type Tags = BTreeMap<String, String>;

/// The stack's load balancers, target groups and listeners in a region, with their tags.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub load_balancers: Vec<(LoadBalancer, Tags)>,
    pub target_groups: Vec<(TargetGroup, Tags)>,
    pub listeners: Vec<(Listener, Tags)>,
}

/// What the stack owns of ELBv2 in `cx.region`, once per discovery pass for all its kinds: one
/// describe of load balancers and one of target groups (named `<stack>-...`), one of listeners
/// per such load balancer, and one `DescribeTags` per 20 of all of them together.
pub async fn inventory(cx: &Cx) -> Result<Inventory, OpError> {
    cx.once("elbv2:inventory", || async {
        let prefix = format!("{}-", cx.stack);
        let mut lbs = Vec::new();
        let mut pages = elb(cx).describe_load_balancers().into_paginator().send();
        while let Some(page) = pages.next().await {
            lbs.extend(page.map_err(|e| err("DescribeLoadBalancers", e))?.load_balancers().iter().cloned());
        }
        lbs.retain(|lb: &LoadBalancer| lb.load_balancer_name().is_some_and(|n| n.starts_with(&prefix)));
        let mut tgs = Vec::new();
        let mut pages = elb(cx).describe_target_groups().into_paginator().send();
        while let Some(page) = pages.next().await {
            tgs.extend(page.map_err(|e| err("DescribeTargetGroups", e))?.target_groups().iter().cloned());
        }
        tgs.retain(|tg: &TargetGroup| tg.target_group_name().is_some_and(|n| n.starts_with(&prefix)));
        let mut listeners = Vec::new();
        for lb in lbs.iter().filter_map(|lb| lb.load_balancer_arn()) {
            let mut pages = elb(cx).describe_listeners().load_balancer_arn(lb).into_paginator().send();
            while let Some(page) = pages.next().await {
                listeners.extend(page.map_err(|e| err("DescribeListeners", e))?.listeners().iter().cloned());
            }
        }
        let arns: Vec<String> = lbs
            .iter()
            .filter_map(|x| x.load_balancer_arn())
            .chain(tgs.iter().filter_map(|x| x.target_group_arn()))
            .chain(listeners.iter().filter_map(|x| x.listener_arn()))
            .map(str::to_owned)
            .collect();
        let tags = tags_of(cx, &arns).await?;
        let mine = |arn: Option<&str>| tags.get(arn?).filter(|t| t.get(STACK_TAG) == Some(&cx.stack)).cloned();
        Ok(Inventory {
            load_balancers: lbs
                .into_iter()
                .filter_map(|x| Some((mine(x.load_balancer_arn())?, x)))
                .map(|(t, x)| (x, t))
                .collect(),
            target_groups: tgs
                .into_iter()
                .filter_map(|x| Some((mine(x.target_group_arn())?, x)))
                .map(|(t, x)| (x, t))
                .collect(),
            listeners: listeners
                .into_iter()
                .filter_map(|x| Some((mine(x.listener_arn())?, x)))
                .map(|(t, x)| (x, t))
                .collect(),
        })
    })
    .await
}

/// The stack's load balancers in `cx.region` with their tags (from the [`inventory`]).
pub async fn load_balancers(cx: &Cx) -> Result<Vec<(LoadBalancer, Tags)>, OpError> {
    Ok(inventory(cx).await?.load_balancers)
}

/// `<stack>-<name>`: the name of a load balancer or target group.
pub fn name_of(cx: &Cx, address: crate::provider::Address<'_>) -> String {
    format!("{}-{}", cx.stack, address.name())
}

/// The part of an ARN after `loadbalancer/` or the account (`app/name/id`,
/// `targetgroup/name/id`): how CloudWatch and target tracking name them.
pub fn arn_suffix(arn: &str) -> String {
    match arn.split_once(":loadbalancer/") {
        Some((_, rest)) => rest.to_owned(),
        None => arn.rsplit_once(':').map_or(arn, |(_, r)| r).to_owned(),
    }
}

/// Checks that `<stack>-<name>` is a name ELBv2 accepts: 32 characters at most, letters, digits
/// and hyphens, no hyphen at either end, not starting with `internal-`.
pub fn check_name(r: &Resource, stack: &Stack, d: &mut Diags) {
    check_name_with(r, stack, "", d);
}

/// [`check_name`] for a name that gets `suffix` appended.
pub fn check_name_with(r: &Resource, stack: &Stack, suffix: &str, d: &mut Diags) {
    let name = format!("{}-{}{suffix}", stack.name, r.name);
    let bad_chars = !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let problem = if name.len() > 32 {
        Some(format!("is {} characters long; ELBv2 allows 32", name.len()))
    } else if bad_chars {
        Some("has characters other than letters, digits and hyphens".to_owned())
    } else if name.ends_with('-') || name.starts_with("internal-") {
        Some("ends with a hyphen or starts with `internal-`".to_owned())
    } else {
        None
    };
    if let Some(p) = problem {
        d.error(
            "bad-elb-name",
            r.span.clone(),
            format!(
                "{}: its AWS name `{name}` (<stack>-<name>{}) {p}",
                r.address(),
                if suffix.is_empty() { "" } else { "-<hash>" }
            ),
            Some("choose a shorter name of letters, digits and hyphens".into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_suffixes_are_what_cloudwatch_names() {
        assert_eq!(
            arn_suffix(
                "arn:aws:elasticloadbalancing:eu-central-1:123456789012:loadbalancer/app/q-web/50dc6c495c0c9188"
            ),
            "app/q-web/50dc6c495c0c9188"
        );
        assert_eq!(
            arn_suffix("arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/q-web/73e2d6bc24d8a067"),
            "targetgroup/q-web/73e2d6bc24d8a067"
        );
    }
}
