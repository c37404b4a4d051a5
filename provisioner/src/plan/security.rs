//! The plan's security section: every change to a field a kind declares security-relevant
//! ([`Security`]), item by item, and whether it broadens access (`apply` then asks again).
//! AWS CDK's security diff and its `--require-approval broadening` are the model: statements,
//! trust, attached policies, readers and network rules added widen access; removals narrow it;
//! a protection lowered or something made public widens it too.

use crate::schema::{Kind, Security};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// One security-relevant change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityChange {
    pub address: String,
    /// `+` added, `-` removed, `~` changed.
    pub op: char,
    /// The field it is in (`ingress`, `statements`, `trusted_services`, `web_acl`, ...).
    pub field: String,
    /// What it is: `rule`, `statement`, `grant`, `protection`, `exposure`.
    pub concern: &'static str,
    /// The item added or removed; for `~`, the value after (`null`: absent or deleted).
    pub value: Value,
    /// For `~`: the value before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Widens who or what may reach or do something: `apply` asks again before making it.
    pub broadening: bool,
    /// Makes something reachable from the whole internet.
    pub public: bool,
}

/// Whether a resource, by its own fields, is reachable from the internet.
pub fn exposed(kind: &Kind, v: &Value) -> bool {
    kind.fields.iter().any(|f| match f.security {
        Some(Security::Exposure(public)) => public(v.get(f.name).unwrap_or(&Value::Null)),
        _ => false,
    })
}

/// The security changes of one resource from `actual` to `desired` (`None`: made or deleted).
/// `public` holds the addresses the stack makes reachable from the internet.
pub fn changes(
    kind: &Kind,
    addr: &str,
    desired: Option<&Value>,
    actual: Option<&Value>,
    public: &BTreeSet<String>,
    out: &mut Vec<SecurityChange>,
) {
    for f in kind.fields {
        let Some(how) = f.security else { continue };
        let get = |v: Option<&Value>| v.and_then(|v| v.get(f.name)).cloned().unwrap_or(Value::Null);
        let (before, after) = (get(actual), get(desired));
        let mut item = |op: char, concern: &'static str, value: Value, broadening: bool, public: bool| {
            out.push(SecurityChange {
                address: addr.to_owned(),
                op,
                field: f.name.to_owned(),
                concern,
                value,
                before: None,
                broadening,
                public,
            })
        };
        match how {
            Security::Rules { inbound } => {
                for (op, r) in list_diff(&before, &after) {
                    let open = inbound && ["0.0.0.0/0", "::/0"].iter().any(|c| r.get("cidr") == Some(&json!(c)));
                    item(op, "rule", r, op == '+', op == '+' && open);
                }
            }
            Security::Statements => {
                for (op, s) in list_diff(&before, &after) {
                    let deny = s.get("effect").and_then(Value::as_str) == Some("Deny");
                    item(op, "statement", s, (op == '+') != deny, false);
                }
            }
            Security::Grants => {
                for (op, g) in list_diff(&before, &after) {
                    item(op, "grant", g, op == '+', false);
                }
            }
            Security::Guard(weaker) => {
                // A new resource lowers nothing; a deleted one takes its protection with it.
                if actual.is_some() && before != after {
                    let w = weaker(&before, &after);
                    out.push(SecurityChange {
                        address: addr.to_owned(),
                        op: '~',
                        field: f.name.to_owned(),
                        concern: "protection",
                        value: after,
                        before: Some(before),
                        broadening: w,
                        public: false,
                    });
                }
            }
            Security::Exposure(is_public) => {
                let (was, will) = (actual.is_some() && is_public(&before), desired.is_some() && is_public(&after));
                if desired.is_some() && before != after && (was || will) {
                    out.push(SecurityChange {
                        address: addr.to_owned(),
                        op: if actual.is_none() { '+' } else { '~' },
                        field: f.name.to_owned(),
                        concern: "exposure",
                        value: after,
                        before: actual.map(|_| before),
                        broadening: will && !was,
                        public: will,
                    });
                }
            }
            Security::ExposedBy => {
                let through = after.as_str().is_some_and(|a| public.contains(a));
                if desired.is_some() && through && (actual.is_none() || before != after) {
                    item('+', "exposure", after, true, true);
                }
            }
        }
    }
}

/// Items of a list field added (`+`) and removed (`-`), as sets.
fn list_diff(before: &Value, after: &Value) -> Vec<(char, Value)> {
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let (b, a) = (items(before), items(after));
    let mut out: Vec<(char, Value)> = a.iter().filter(|x| !b.contains(x)).map(|x| ('+', x.clone())).collect();
    out.extend(b.iter().filter(|x| !a.contains(x)).map(|x| ('-', x.clone())));
    out
}

/// One change as a line: `+ security_group.web ingress tcp 443 0.0.0.0/0 (HTTPS) [broadening, public]`.
pub fn line(s: &SecurityChange) -> String {
    let text = match (s.concern, &s.before) {
        ("rule", _) => rule_text(&s.value),
        ("statement", _) => statement_text(&s.value),
        (_, Some(before)) => format!("{} -> {}", shown(before), shown(&s.value)),
        _ => shown(&s.value),
    };
    let marks: Vec<&str> =
        [(s.broadening, "broadening"), (s.public, "public")].iter().filter(|(on, _)| *on).map(|(_, m)| *m).collect();
    let marks = if marks.is_empty() { String::new() } else { format!(" [{}]", marks.join(", ")) };
    format!("{} {} {} {text}{marks}", s.op, s.address, s.field)
}

/// The section as `plan` prints it (empty when there is nothing to list).
pub fn render(changes: &[SecurityChange]) -> String {
    if changes.is_empty() {
        return String::new();
    }
    let mut out = String::from("Security changes:\n");
    for s in changes {
        out.push_str(&format!("  {}\n", line(s)));
    }
    let n = changes.iter().filter(|s| s.broadening).count();
    if n > 0 {
        out.push_str(&format!(
            "  # {n} broaden access: apply asks before making them, even with --yes (--approve-broadening says yes)\n"
        ));
    }
    out.push('\n');
    out
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rule_text(r: &Value) -> String {
    let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
    let port = match (r.get("from_port").and_then(Value::as_i64), r.get("to_port").and_then(Value::as_i64)) {
        (Some(a), Some(b)) if a != b => format!(" {a}-{b}"),
        (Some(a), _) => format!(" {a}"),
        _ => String::new(),
    };
    let peer = s("cidr").or(s("group")).unwrap_or_else(|| {
        if r.get("self") == Some(&json!(true)) {
            "itself".into()
        } else {
            "?".into()
        }
    });
    let desc = s("description").map(|d| format!(" ({d})")).unwrap_or_default();
    format!("{}{port} {peer}{desc}", s("protocol").unwrap_or_default())
}

/// `Allow s3:GetObject, s3:PutObject on arn:... when {...}`: what a reviewer reads first.
fn statement_text(st: &Value) -> String {
    let list = |k: &str| match st.get(k) {
        Some(Value::Array(a)) => a.iter().map(shown).collect::<Vec<_>>().join(", "),
        Some(v) => shown(v),
        None => "(none)".into(),
    };
    let effect = st.get("effect").and_then(Value::as_str).unwrap_or("Allow");
    let mut text = format!("{effect} {} on {}", list("actions"), list("resources"));
    for (k, v) in st.as_object().into_iter().flatten() {
        if !matches!(k.as_str(), "effect" | "actions" | "resources") && !v.is_null() {
            text.push_str(&format!(" {k} {}", shown(v)));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use crate::kinds::test_stack as stack;
    use crate::plan::tests::actual_of;
    use crate::plan::{plan, render};
    use serde_json::{json, Value};

    const BASE: &str = r#"
[stack]
name = "t"
region = "eu-central-1"
[vpc.main]
cidr = "10.0.0.0/16"
[subnet.a]
vpc = "vpc.main"
cidr = "10.0.1.0/24"
az = "a"
[subnet.b]
vpc = "vpc.main"
cidr = "10.0.2.0/24"
az = "b"
[security_group.web]
vpc = "vpc.main"
description = "web"
ingress = [{ protocol = "tcp", from_port = 8080, cidr = "10.0.0.0/16" }]
[iam_role.app]
trusted_services = ["ecs-tasks.amazonaws.com"]
statements = [{ actions = ["dynamodb:GetItem"], resources = ["arn:aws:dynamodb:eu-central-1:1:table/t"] }]
[s3_bucket.site]
[s3_bucket_policy.site]
bucket = "s3_bucket.site"
read_by = ["arn:aws:cloudfront::1:distribution/A"]
[waf_web_acl.web]
default_action = "block"
rate_limit = 500
[load_balancer.web]
subnets = ["subnet.a", "subnet.b"]
security_groups = ["security_group.web"]
internal = true
"#;

    /// The issue's three: `s3:*` on `*` for a role, an ingress from everywhere, a reader of the
    /// bucket: each listed, marked broadening (the ingress also public), in text and JSON.
    #[test]
    fn a_statement_an_open_ingress_and_a_reader_added_are_broadening() {
        let old = stack(BASE);
        let new = stack(
            &BASE
                .replace(
                    "resources = [\"arn:aws:dynamodb:eu-central-1:1:table/t\"] }]",
                    "resources = [\"arn:aws:dynamodb:eu-central-1:1:table/t\"] }, { actions = [\"s3:*\"], resources = [\"*\"] }]",
                )
                .replace(
                    "ingress = [{ protocol = \"tcp\", from_port = 8080, cidr = \"10.0.0.0/16\" }]",
                    "ingress = [{ protocol = \"tcp\", from_port = 8080, cidr = \"10.0.0.0/16\" }, { protocol = \"tcp\", from_port = 22, cidr = \"0.0.0.0/0\" }]",
                )
                .replace(
                    "read_by = [\"arn:aws:cloudfront::1:distribution/A\"]",
                    "read_by = [\"arn:aws:cloudfront::1:distribution/A\", \"arn:aws:cloudfront::2:distribution/B\"]",
                ),
        );
        let p = plan(&new, &actual_of(&old), &Value::Null);
        assert_eq!(p.security.len(), 3, "{:#?}", p.security);
        assert_eq!(p.broadening().len(), 3);
        let text = render(&p, false);
        for line in [
            "  + iam_role.app statements Allow s3:* on * [broadening]\n",
            "  + security_group.web ingress tcp 22 0.0.0.0/0 [broadening, public]\n",
            "  + s3_bucket_policy.site read_by arn:aws:cloudfront::2:distribution/B [broadening]\n",
            "  # 3 broaden access: apply asks before making them, even with --yes",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        let json = serde_json::to_value(&p).unwrap();
        let s = json["security"].as_array().unwrap();
        let statement = s.iter().find(|x| x["concern"] == "statement").unwrap();
        assert_eq!(statement["value"]["actions"], json!(["s3:*"]));
        assert_eq!((statement["op"].as_str(), statement["broadening"].as_bool()), (Some("+"), Some(true)));
        assert!(s.iter().any(|x| x["concern"] == "rule" && x["public"] == true));

        // Taking them away again narrows: listed, nothing to ask.
        let back = plan(&old, &actual_of(&new), &Value::Null);
        assert_eq!(back.security.len(), 3);
        assert!(back.broadening().is_empty() && back.security.iter().all(|s| s.op == '-'), "{:#?}", back.security);
        // Applied: nothing to list.
        assert!(plan(&new, &actual_of(&new), &Value::Null).security.is_empty());
    }

    /// Trust, attached policies, a Deny removed, protections lowered and raised, something made
    /// public, and a listener on a public load balancer.
    #[test]
    fn trust_policies_protections_and_exposure() {
        let old = stack(&BASE.replace(
            "statements = [",
            "managed_policies = [\"arn:aws:iam::aws:policy/ReadOnlyAccess\"]\nstatements = [{ effect = \"Deny\", actions = [\"s3:DeleteObject\"], resources = [\"*\"] }, ",
        ));
        let new = stack(
            &(BASE
                .replace(
                    "trusted_services = [\"ecs-tasks.amazonaws.com\"]",
                    "trusted_services = [\"ecs-tasks.amazonaws.com\", \"lambda.amazonaws.com\"]\nmanaged_policies = [\"arn:aws:iam::aws:policy/AdministratorAccess\"]",
                )
                .replace("default_action = \"block\"\nrate_limit = 500", "default_action = \"allow\"\nrate_limit = 2000")
                .replace("internal = true", "internal = false")
                + "[target_group.web]\nvpc = \"vpc.main\"\nport = 8080\n[listener.http]\nload_balancer = \"load_balancer.web\"\nport = 80\ntarget_group = \"target_group.web\"\n"),
        );
        let p = plan(&new, &actual_of(&old), &Value::Null);
        let text = render(&p, false);
        for line in [
            "  + iam_role.app trusted_services lambda.amazonaws.com [broadening]\n",
            "  + iam_role.app managed_policies arn:aws:iam::aws:policy/AdministratorAccess [broadening]\n",
            "  - iam_role.app managed_policies arn:aws:iam::aws:policy/ReadOnlyAccess\n",
            "  - iam_role.app statements Deny s3:DeleteObject on * [broadening]\n",
            "  ~ waf_web_acl.web default_action block -> allow [broadening]\n",
            "  ~ waf_web_acl.web rate_limit 500 -> 2000 [broadening]\n",
            "  ~ load_balancer.web internal true -> false [broadening, public]\n",
            "  + listener.http load_balancer load_balancer.web [broadening, public]\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        // The other way: a stricter ACL, an internal balancer: listed, nothing broadens.
        let p = plan(&old, &actual_of(&new), &Value::Null);
        let text = render(&p, false);
        assert!(text.contains("  ~ waf_web_acl.web rate_limit 2000 -> 500\n"), "{text}");
        assert!(text.contains("  ~ load_balancer.web internal false -> true\n"), "{text}");
        assert!(!text.contains("listener.http load_balancer"), "a listener deleted exposes nothing: {text}");
        // Only attaching a policy widens; adding a Deny narrows.
        let broadening: Vec<String> = p.broadening().iter().map(|s| super::line(s)).collect();
        assert_eq!(broadening, ["+ iam_role.app managed_policies arn:aws:iam::aws:policy/ReadOnlyAccess [broadening]"]);
        assert!(text.contains("  + iam_role.app statements Deny s3:DeleteObject on *\n"), "{text}");
    }
}
