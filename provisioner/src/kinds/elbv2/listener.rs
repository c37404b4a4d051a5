//! `listener`: a port of a load balancer and its default action (forward to a target group,
//! redirect, or a fixed response); HTTPS when a certificate ARN is given. Found through the
//! stack's load balancers (one describe each) and their tags.

use super::{elb, err, set_tags, tag_list};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, normalized, Address, Cx, Found, Typed, ID_TAG};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, ProtocolEnum, RedirectActionConfig,
    RedirectActionStatusCodeEnum,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The TLS policy of an HTTPS listener that names none: TLS 1.3 and 1.2 only.
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";

pub static KIND: Kind =
    Kind::new("listener", "A listener of a load balancer: a port, a protocol and a default action.", &Listener)
        .fields(&[
            Field::required("load_balancer", FieldType::Ref(&["load_balancer"]), Update::Replace, "The load balancer.")
                .security(Security::ExposedBy),
            Field::required("port", FieldType::Int { min: 1, max: 65535 }, Update::InPlace, "The port it listens on."),
            Field::optional(
                "protocol",
                FieldType::Enum(&["HTTP", "HTTPS"]),
                Some("\"HTTP\""),
                Update::InPlace,
                "HTTPS needs `certificate_arn`.",
            ),
            Field::optional(
                "certificate_arn",
                FieldType::String,
                None,
                Update::InPlace,
                "ACM certificate ARN (HTTPS only).",
            ),
            Field::optional(
                "ssl_policy",
                FieldType::String,
                None,
                Update::InPlace,
                "TLS policy of an HTTPS listener (default ELBSecurityPolicy-TLS13-1-2-2021-06: TLS 1.2 and 1.3).",
            ),
            Field::optional(
                "action",
                FieldType::Enum(&["forward", "redirect", "fixed_response"]),
                Some("\"forward\""),
                Update::InPlace,
                "Default action.",
            ),
            Field::optional(
                "target_group",
                FieldType::Ref(&["target_group"]),
                None,
                Update::InPlace,
                "Where `forward` sends requests.",
            ),
            Field::optional(
                "redirect_protocol",
                FieldType::Enum(&["HTTP", "HTTPS"]),
                Some("\"HTTPS\""),
                Update::InPlace,
                "`redirect`: protocol.",
            ),
            Field::optional(
                "redirect_port",
                FieldType::Int { min: 1, max: 65535 },
                Some("443"),
                Update::InPlace,
                "`redirect`: port.",
            ),
            Field::optional(
                "redirect_status",
                FieldType::Enum(&["HTTP_301", "HTTP_302"]),
                Some("\"HTTP_301\""),
                Update::InPlace,
                "`redirect`: permanent or temporary.",
            ),
            Field::optional(
                "fixed_status",
                FieldType::Int { min: 200, max: 599 },
                Some("503"),
                Update::InPlace,
                "`fixed_response`: status.",
            ),
            Field::optional(
                "fixed_body",
                FieldType::String,
                None,
                Update::InPlace,
                "`fixed_response`: body (1024 bytes at most).",
            ),
            TAGS,
        ])
        .outputs(&[("id", "Listener ARN"), ("arn", "Listener ARN")])
        .check(check)
        .normalize(normalize);

/// The declared shape, decoded once from `want` or `have` (normalized: the fields of actions
/// other than the chosen one are null).
#[derive(Debug, Clone, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    load_balancer: String,
    port: i32,
    protocol: Option<String>,
    certificate_arn: Option<String>,
    ssl_policy: Option<String>,
    action: Option<String>,
    target_group: Option<String>,
    redirect_protocol: Option<String>,
    redirect_port: Option<i64>,
    redirect_status: Option<String>,
    fixed_status: Option<i64>,
    fixed_body: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attrs {
    fn https(&self) -> bool {
        self.protocol.as_deref() == Some("HTTPS")
    }

    fn default_action(&self) -> Action {
        match self.action.as_deref().unwrap_or("forward") {
            "redirect" => Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol(self.redirect_protocol.as_deref().unwrap_or("HTTPS"))
                        .port(self.redirect_port.unwrap_or(443).to_string())
                        .host("#{host}")
                        .path("/#{path}")
                        .query("#{query}")
                        .status_code(RedirectActionStatusCodeEnum::from(
                            self.redirect_status.as_deref().unwrap_or("HTTP_301"),
                        ))
                        .build(),
                )
                .build(),
            "fixed_response" => Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    FixedResponseActionConfig::builder()
                        .status_code(self.fixed_status.unwrap_or(503).to_string())
                        .content_type("text/plain")
                        .set_message_body(self.fixed_body.clone())
                        .build(),
                )
                .build(),
            _ => Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .set_target_group_arn(self.target_group.clone())
                .build(),
        }
    }

    fn certificates(&self) -> Option<Vec<Certificate>> {
        self.certificate_arn.as_ref().map(|a| vec![Certificate::builder().certificate_arn(a).build()])
    }
}

/// One form for both sides: only the chosen action's fields, the TLS policy only for HTTPS.
fn normalize(v: &mut Value) {
    let action = v.get("action").and_then(Value::as_str).unwrap_or("forward").to_owned();
    v["action"] = json!(action);
    let keep = |f: &str| match f {
        "target_group" => action == "forward",
        "redirect_protocol" | "redirect_port" | "redirect_status" => action == "redirect",
        "fixed_status" | "fixed_body" => action == "fixed_response",
        _ => true,
    };
    for f in ["target_group", "redirect_protocol", "redirect_port", "redirect_status", "fixed_status", "fixed_body"] {
        if !keep(f) {
            v[f] = Value::Null;
        }
    }
    let https = v.get("protocol").and_then(Value::as_str) == Some("HTTPS");
    if !https {
        v["ssl_policy"] = Value::Null;
    } else if v.get("ssl_policy").is_none_or(Value::is_null) {
        v["ssl_policy"] = json!(DEFAULT_SSL_POLICY);
    }
}

fn check(r: &Resource, _: &Stack, d: &mut Diags) {
    // ELBv2's FixedResponseConfig takes 2XX, 4XX and 5XX only.
    if let Some((crate::stack::Val::Int(code), span)) = r.fields.get("fixed_status") {
        if !matches!(code / 100, 2 | 4 | 5) {
            d.error(
                "bad-fixed-status",
                span.clone(),
                format!("{}: a fixed response's status is 2XX, 4XX or 5XX, not {code}", r.address()),
                Some("for a redirect use action = \"redirect\"".into()),
            );
        }
    }
    let https = r.str("protocol").is_some_and(|(p, _)| p == "HTTPS");
    let action = r.str("action").map_or("forward", |(a, _)| a);
    match (https, r.str("certificate_arn")) {
        (true, None) => d.error(
            "https-without-certificate",
            r.span.clone(),
            format!("{} listens with HTTPS but names no certificate", r.address()),
            Some("add certificate_arn = \"arn:aws:acm:<region>:<account>:certificate/<id>\"".into()),
        ),
        (false, Some((_, span))) => d.error(
            "certificate-without-https",
            span,
            format!("{} has a certificate but listens with HTTP", r.address()),
            Some("set protocol = \"HTTPS\", or remove certificate_arn".into()),
        ),
        (true, Some((arn, span))) if !is_certificate_arn(arn) => d.error(
            "bad-arn",
            span,
            format!("`{arn}` is not a certificate ARN"),
            Some("an ACM ARN reads arn:aws:acm:<region>:<12-digit account>:certificate/<id>".into()),
        ),
        _ => {}
    }
    if let (Some((_, span)), false) = (r.str("ssl_policy"), https) {
        d.error(
            "ssl-policy-without-https",
            span,
            format!("{} has a TLS policy but listens with HTTP", r.address()),
            None,
        );
    }
    let has_tg = r.fields.contains_key("target_group");
    if action == "forward" && !has_tg {
        d.error(
            "forward-without-target",
            r.span.clone(),
            format!("{} forwards but names no target group", r.address()),
            Some("add target_group = \"target_group.<name>\", or choose another action".into()),
        );
    }
    if action != "forward" {
        if let Some((_, span)) = r.fields.get("target_group") {
            d.error(
                "target-without-forward",
                span.clone(),
                format!("{} names a target group but its action is `{action}`", r.address()),
                Some("set action = \"forward\", or remove target_group".into()),
            );
        }
    }
}

/// `arn:aws:acm:<region>:<12 digits>:certificate/<id>` (or an IAM server certificate).
pub fn is_certificate_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts[..] else { return false };
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    arn == "arn"
        && partition.starts_with("aws")
        && account_ok
        && match service {
            "acm" => !region.is_empty() && resource.strip_prefix("certificate/").is_some_and(|id| !id.is_empty()),
            "iam" => region.is_empty() && resource.starts_with("server-certificate/"),
            _ => false,
        }
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
}

struct Listener;

#[async_trait]
impl Typed for Listener {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let mut out = Vec::new();
        for (l, tags) in super::inventory(cx).await?.listeners {
            let (Some(arn), Some(address)) = (l.listener_arn(), tags.get(ID_TAG)) else { continue };
            let act = l.default_actions().first();
            let kind = match act.and_then(|a| a.r#type()) {
                Some(ActionTypeEnum::Redirect) => "redirect",
                Some(ActionTypeEnum::FixedResponse) => "fixed_response",
                _ => "forward",
            };
            let redirect = act.and_then(|a| a.redirect_config());
            let fixed = act.and_then(|a| a.fixed_response_config());
            let owned = |s: Option<&str>| s.map(str::to_owned);
            let attrs = Attrs {
                load_balancer: l.load_balancer_arn().unwrap_or_default().to_owned(),
                port: l.port().unwrap_or_default(),
                protocol: owned(l.protocol().map(ProtocolEnum::as_str)),
                certificate_arn: owned(l.certificates().first().and_then(|c| c.certificate_arn())),
                ssl_policy: owned(l.ssl_policy()),
                action: Some(kind.to_owned()),
                target_group: owned(act.and_then(|a| a.target_group_arn())),
                redirect_protocol: owned(redirect.and_then(|r| r.protocol())),
                redirect_port: redirect.and_then(|r| r.port()?.parse::<i64>().ok()),
                redirect_status: owned(redirect.and_then(|r| r.status_code()).map(|s| s.as_str())),
                fixed_status: fixed.and_then(|f| f.status_code()?.parse::<i64>().ok()),
                fixed_body: owned(fixed.and_then(|f| f.message_body())),
                tags: tags.clone(),
            };
            let attrs = normalized(attrs, normalize)?;
            out.push(Found {
                id: arn.to_owned(),
                address: address.clone(),
                attrs,
                outputs: Outputs { arn: arn.to_owned() },
            });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let out = elb(cx)
            .create_listener()
            .load_balancer_arn(&w.load_balancer)
            .port(w.port)
            .protocol(ProtocolEnum::from(w.protocol.as_deref().unwrap_or("HTTP")))
            .set_certificates(w.certificates())
            .set_ssl_policy(w.ssl_policy.clone().filter(|_| w.https()))
            .default_actions(w.default_action())
            .set_tags(Some(tag_list(&w.tags)))
            .send()
            .await
            .map_err(|e| err("CreateListener", e))?;
        Ok(out
            .listeners()
            .first()
            .and_then(|l| l.listener_arn())
            .ok_or_else(|| OpError::fatal("CreateListener", "no ARN"))?
            .to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let same_tags = Attrs { tags: h.tags.clone(), ..want.clone() };
        if same_tags != *h {
            elb(cx)
                .modify_listener()
                .listener_arn(id)
                .port(w.port)
                .protocol(ProtocolEnum::from(w.protocol.as_deref().unwrap_or("HTTP")))
                .set_certificates(w.certificates())
                .set_ssl_policy(w.ssl_policy.clone().filter(|_| w.https()))
                .default_actions(w.default_action())
                .send()
                .await
                .map_err(|e| err("ModifyListener", e))?;
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(elb(cx).delete_listener().listener_arn(id).send().await.map_err(|e| err("DeleteListener", e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn certificate_arns() {
        assert!(is_certificate_arn(
            "arn:aws:acm:eu-central-1:123456789012:certificate/0f1e2d3c-aaaa-bbbb-cccc-000000000000"
        ));
        assert!(is_certificate_arn("arn:aws:iam::123456789012:server-certificate/web"));
        assert!(!is_certificate_arn("arn:aws:acm:eu-central-1:1234:certificate/x"));
        assert!(!is_certificate_arn("arn:aws:s3:::bucket"));
        assert!(!is_certificate_arn("certificate/x"));
    }

    #[test]
    fn only_the_chosen_action_is_compared() {
        let mut v = json!({ "action": "redirect", "target_group": "tg", "redirect_port": 443, "protocol": "HTTP", "ssl_policy": "x" });
        normalize(&mut v);
        assert_eq!(
            (v["target_group"].clone(), v["redirect_port"].clone(), v["ssl_policy"].clone()),
            (Value::Null, json!(443), Value::Null)
        );
        let mut v = json!({ "protocol": "HTTPS" });
        normalize(&mut v);
        assert_eq!(v["ssl_policy"], json!(DEFAULT_SSL_POLICY));
    }
}
