//! `load_balancer`: an application load balancer named `<stack>-<name>` in two or more public
//! subnets, with its security groups, idle timeout and deletion protection.

use super::{arn_suffix, check_name, elb, err, load_balancers, name_of, set_tags, tag_list};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, null_as_empty, same_set, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::client::Waiters;
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub static KIND: Kind = Kind::new(
    "load_balancer",
    "An application load balancer named <stack>-<name> (at most 32 characters).",
    &LoadBalancer,
)
.fields(&[
    Field::required(
        "subnets",
        FieldType::List(&FieldType::Ref(&["subnet"])),
        Update::InPlace,
        "Subnets in at least two availability zones.",
    ),
    Field::optional(
        "security_groups",
        FieldType::List(&FieldType::Ref(&["security_group"])),
        None,
        Update::InPlace,
        "Security groups of the load balancer.",
    ),
    Field::optional(
        "internal",
        FieldType::Bool,
        Some("false"),
        Update::Replace,
        "Internal instead of internet-facing.",
    )
    .security(Security::Exposure(|v| v == false)),
    Field::optional(
        "idle_timeout",
        FieldType::Int { min: 1, max: 4000 },
        Some("60"),
        Update::InPlace,
        "Seconds an idle connection is kept open (server-sent events need more than the keep-alive period).",
    ),
    Field::optional(
        "deletion_protection",
        FieldType::Bool,
        Some("false"),
        Update::InPlace,
        "Refuse deletion (destroy fails naming it until this is turned off and applied).",
    ),
    TAGS,
])
.outputs(&[
    ("id", "Load balancer ARN"),
    ("arn", "Load balancer ARN"),
    ("name", "<stack>-<name>"),
    ("dns_name", "The DNS name clients use"),
    ("url", "http://<dns_name>/"),
    ("zone_id", "Its Route 53 hosted zone (for alias records)"),
    ("arn_suffix", "app/<name>/<id>, as CloudWatch and target tracking name it"),
])
.check(check)
.normalize(normalize)
.cost(cost, &[crate::cost::WEB_REQUESTS, WEB_GB_OUT])
// An internet-facing load balancer in a VPC without an attached gateway is refused
// ("InvalidSubnet: VPC ... has no internet gateway"), and the gateway cannot be detached
// while the load balancer's public addresses are mapped.
.after(&["internet_gateway"]);

use crate::cost::WEB_GB_OUT;

/// Hours, capacity units and a public IPv4 address per subnet (one load balancer node per
/// zone) unless internal; data out to the internet. Capacity units from the usage: each request
/// counted as a new connection (25 a second per unit) and processed bytes (1 GB an hour per
/// unit), whichever needs more.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::{parts, Part, WEB_REQUESTS};
    let seconds = cx.hours * 3600.0;
    let lcu = (cx.usage(&WEB_REQUESTS) / seconds / 25.0).max(cx.usage(&WEB_GB_OUT) / cx.hours);
    let mut out = vec![
        Part::hourly(cx, "load balancer", "elb.alb", 1.0),
        Part::hourly(cx, "capacity units (LCU)", "elb.alb_lcu", lcu),
    ];
    let Some(a) = cx.attrs::<Attrs>() else { return Vec::new() };
    if !a.internal {
        out.push(parts::public_ipv4(cx, "one per subnet", a.subnets.len() as f64));
        out.push(Part::new("data out to the internet", "data_out.internet", cx.usage(&WEB_GB_OUT)));
    }
    out
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    subnets: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    security_groups: Vec<String>,
    #[serde(default)]
    internal: bool,
    idle_timeout: Option<i64>,
    #[serde(default)]
    deletion_protection: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attrs {
    fn idle_timeout(&self) -> i64 {
        self.idle_timeout.unwrap_or(60)
    }

    fn attributes(&self) -> Vec<LoadBalancerAttribute> {
        let attr = |k: &str, v: String| LoadBalancerAttribute::builder().key(k).value(v).build();
        vec![
            attr("idle_timeout.timeout_seconds", self.idle_timeout().to_string()),
            attr("deletion_protection.enabled", self.deletion_protection.to_string()),
        ]
    }
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
    name: String,
    dns_name: String,
    url: String,
    zone_id: Option<String>,
    arn_suffix: String,
}

/// Subnets and groups are sets.
fn normalize(v: &mut Value) {
    for k in ["subnets", "security_groups"] {
        if let Some(Value::Array(a)) = v.get_mut(k) {
            a.sort_by_key(Value::to_string);
        } else if v.get(k).is_some() {
            v[k] = json!([]);
        }
    }
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    check_name(r, stack, d);
    if let Some((Val::List(subnets), span)) = r.fields.get("subnets") {
        if subnets.len() < 2 {
            d.error(
                "alb-subnets",
                span.clone(),
                format!(
                    "{} has {} subnet(s); an application load balancer needs two availability zones",
                    r.address(),
                    subnets.len()
                ),
                Some("name subnets in two availability zones".into()),
            );
        }
    }
}

struct LoadBalancer;

async fn set_attributes(cx: &Cx, arn: &str, a: &Attrs) -> Result<(), OpError> {
    elb(cx)
        .modify_load_balancer_attributes()
        .load_balancer_arn(arn)
        .set_attributes(Some(a.attributes()))
        .send()
        .await
        .map_err(|e| err("ModifyLoadBalancerAttributes", e))?;
    Ok(())
}

#[async_trait]
impl Typed for LoadBalancer {
    type Attrs = Attrs;
    type Outputs = Outputs;

    fn protected(&self, have: &Attrs) -> Option<&'static str> {
        crate::provider::deletion_protected(Some(have.deletion_protection))
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let mut out = Vec::new();
        for (lb, tags) in load_balancers(cx).await? {
            let (Some(arn), Some(name)) = (lb.load_balancer_arn(), lb.load_balancer_name()) else { continue };
            if lb.state().and_then(|s| s.code()) == Some(&LoadBalancerStateEnum::Failed) {
                continue;
            }
            // Idle timeout and deletion protection are attributes, which no describe returns.
            let attrs = elb(cx)
                .describe_load_balancer_attributes()
                .load_balancer_arn(arn)
                .send()
                .await
                .map_err(|e| err("DescribeLoadBalancerAttributes", e))?;
            let attr = |k: &str| attrs.attributes().iter().find(|a| a.key() == Some(k)).and_then(|a| a.value());
            let dns = lb.dns_name().unwrap_or_default();
            let outputs = Outputs {
                arn: arn.to_owned(),
                name: name.to_owned(),
                dns_name: dns.to_owned(),
                url: format!("http://{dns}/"),
                zone_id: lb.canonical_hosted_zone_id().map(str::to_owned),
                arn_suffix: arn_suffix(arn),
            };
            let address = Address::found(&tags, KIND.name, name);
            let mut subnets: Vec<String> =
                lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_owned)).collect();
            subnets.sort();
            let mut security_groups = lb.security_groups().to_vec();
            security_groups.sort();
            let attrs = Attrs {
                subnets,
                security_groups,
                internal: lb.scheme() == Some(&LoadBalancerSchemeEnum::Internal),
                idle_timeout: Some(
                    attr("idle_timeout.timeout_seconds").and_then(|v| v.parse::<i64>().ok()).unwrap_or(60),
                ),
                deletion_protection: attr("deletion_protection.enabled") == Some("true"),
                tags,
            };
            out.push(Found { id: arn.to_owned(), address, attrs, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let out = elb(cx)
            .create_load_balancer()
            .name(name_of(cx, address))
            .r#type(LoadBalancerTypeEnum::Application)
            .scheme(if w.internal { LoadBalancerSchemeEnum::Internal } else { LoadBalancerSchemeEnum::InternetFacing })
            .set_subnets(Some(w.subnets.clone()))
            .set_security_groups((!w.security_groups.is_empty()).then(|| w.security_groups.clone()))
            .set_tags(Some(tag_list(&w.tags)))
            .send()
            .await
            .map_err(|e| err("CreateLoadBalancer", e))?;
        let arn = out
            .load_balancers()
            .first()
            .and_then(|lb| lb.load_balancer_arn())
            .ok_or_else(|| OpError::fatal("CreateLoadBalancer", "no ARN"))?
            .to_owned();
        set_attributes(cx, &arn, w).await?;
        // A load balancer takes minutes to provision; what uses it (listeners) can be made
        // meanwhile, but the apply reports it ready only once it is.
        elb(cx)
            .wait_until_load_balancer_available()
            .load_balancer_arns(&arn)
            .wait(Duration::from_secs(600))
            .await
            .map_err(|e| OpError::retryable("wait LoadBalancerAvailable", format!("{arn}: {e}")))?;
        Ok(arn)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        if !same_set(&h.subnets, &w.subnets) {
            elb(cx)
                .set_subnets()
                .load_balancer_arn(id)
                .set_subnets(Some(w.subnets.clone()))
                .send()
                .await
                .map_err(|e| err("SetSubnets", e))?;
        }
        if !same_set(&h.security_groups, &w.security_groups) {
            elb(cx)
                .set_security_groups()
                .load_balancer_arn(id)
                .set_security_groups(Some(w.security_groups.clone()))
                .send()
                .await
                .map_err(|e| err("SetSecurityGroups", e))?;
        }
        if h.idle_timeout() != w.idle_timeout() || h.deletion_protection != w.deletion_protection {
            set_attributes(cx, id, w).await?;
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        // AWS refuses too (the emulator does not): say what to do instead.
        if have.is_some_and(|h| h.deletion_protection) {
            return Err(OpError::fatal(
                "DeleteLoadBalancer",
                format!("{id} has deletion protection: set deletion_protection = false and apply first"),
            ));
        }
        gone_ok(
            elb(cx).delete_load_balancer().load_balancer_arn(id).send().await.map_err(|e| err("DeleteLoadBalancer", e)),
        )
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    /// $0.027 an hour, LCUs from requests (50 new connections a second = 2 LCU) or bytes (1 GB
    /// an hour = 1 LCU) at $0.008, an address per subnet, data out after 100 free GB at $0.09.
    #[test]
    fn hours_capacity_units_addresses_and_data_out() {
        let lb = "[load_balancer.w]\nsubnets = [\"subnet.pub\", \"subnet.priv\"]\n";
        let usage = "[usage]\nweb_requests = 131400000\nweb_gb_out = 730\n";
        let b = priced(&format!("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n[subnet.pub]\nvpc = \"vpc.v\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\npublic_ip_on_launch = true\n[subnet.priv]\nvpc = \"vpc.v\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n{lb}{usage}"));
        close(of(&b, "load_balancer.w").monthly, 19.71 + 2.0 * 730.0 * 0.008 + 2.0 * 3.65 + 630.0 * 0.09);
        let b = priced(&format!("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n[subnet.pub]\nvpc = \"vpc.v\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\npublic_ip_on_launch = true\n[subnet.priv]\nvpc = \"vpc.v\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n{lb}internal = true\n{usage}"));
        close(of(&b, "load_balancer.w").monthly, 19.71 + 2.0 * 730.0 * 0.008);
    }
}
