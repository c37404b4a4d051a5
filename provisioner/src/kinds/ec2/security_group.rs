//! `security_group`: a VPC firewall with ingress and egress rules whose source is a CIDR or
//! another (or the same) group.

use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_of};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, null_as_empty, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use crate::stack::{table_str, Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, UserIdGroupPair};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

static RULE: [Field; 7] = [
    Field::required("protocol", FieldType::Enum(&["tcp", "udp", "icmp", "all"]), Update::InPlace, "IP protocol."),
    Field::optional("from_port", FieldType::Int { min: 0, max: 65535 }, None, Update::InPlace, "First port (tcp/udp)."),
    Field::optional(
        "to_port",
        FieldType::Int { min: 0, max: 65535 },
        None,
        Update::InPlace,
        "Last port (tcp/udp); defaults to from_port.",
    ),
    Field::optional("cidr", FieldType::Cidr, None, Update::InPlace, "Peer range (exactly one of cidr, group, self)."),
    Field::optional("group", FieldType::Peer(&["security_group"]), None, Update::InPlace, "Peer security group."),
    Field::optional("self", FieldType::Bool, Some("false"), Update::InPlace, "Peer is this group itself."),
    Field::optional("description", FieldType::String, None, Update::InPlace, "Why the rule exists."),
];

pub static KIND: Kind = Kind::new(
    "security_group",
    "A security group with its rules; rules are listed in plans under \"security\".",
    &Group,
)
.fields(&[
    Field::required("vpc", FieldType::Ref(&["vpc"]), Update::Replace, "The VPC."),
    Field::required(
        "description",
        FieldType::String,
        Update::Replace,
        "What the group is for (AWS cannot change it later).",
    ),
    Field::optional(
        "ingress",
        FieldType::List(&FieldType::Table(&RULE)),
        Some("[]"),
        Update::InPlace,
        "Inbound rules.",
    )
    .security(Security::Rules { inbound: true }),
    Field::optional(
        "egress",
        FieldType::List(&FieldType::Table(&RULE)),
        Some("[]"),
        Update::InPlace,
        "Outbound rules.",
    )
    .security(Security::Rules { inbound: false }),
    TAGS,
])
.outputs(&[("id", "Security group id (sg-...)")])
.check(check)
.normalize(normalize);

/// One canonical form per rule: ports as AWS reports them (a single port is a range of one;
/// `all` has none), a peer in exactly one of cidr/group/self.
fn normalize(v: &mut Value) {
    for dir in ["ingress", "egress"] {
        let Some(Value::Array(rules)) = v.get_mut(dir) else { continue };
        for r in rules.iter_mut() {
            let proto = r.get("protocol").and_then(Value::as_str).unwrap_or_default().to_owned();
            if proto == "all" {
                r["from_port"] = Value::Null;
                r["to_port"] = Value::Null;
            } else if r.get("to_port").is_none_or(Value::is_null) {
                r["to_port"] = r.get("from_port").cloned().unwrap_or(Value::Null);
            }
            if r.get("self").is_none() {
                r["self"] = json!(false);
            }
            for k in ["cidr", "group", "description"] {
                if r.get(k).is_none() {
                    r[k] = Value::Null;
                }
            }
        }
        rules.sort_by_key(|r| r.to_string());
    }
}

/// One rule as declared (and as [`normalize`] writes it).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    protocol: String,
    from_port: Option<i64>,
    to_port: Option<i64>,
    cidr: Option<String>,
    group: Option<String>,
    /// `self = true`: the peer is the group itself.
    #[serde(rename = "self", default)]
    own: bool,
    description: Option<String>,
}

impl Rule {
    /// Ports as AWS reports them: none for `all`, a single port as a range of one.
    fn canonical(mut self) -> Self {
        if self.protocol == "all" {
            (self.from_port, self.to_port) = (None, None);
        } else if self.to_port.is_none() {
            self.to_port = self.from_port;
        }
        self
    }
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    vpc: String,
    description: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    ingress: Vec<Rule>,
    #[serde(default, deserialize_with = "null_as_empty")]
    egress: Vec<Rule>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

struct Group;

/// The rules of one direction as AWS lists them, one per peer.
fn flatten(perms: &[IpPermission], own: &str) -> Vec<Rule> {
    let mut out = Vec::new();
    for p in perms {
        let proto = match p.ip_protocol() {
            Some("-1") | None => "all",
            Some(other) => other,
        };
        let port = |x: Option<i32>| match (proto, x) {
            ("all", _) | (_, None | Some(-1)) => None,
            (_, Some(n)) => Some(i64::from(n)),
        };
        let rule = |cidr: Option<&str>, group: Option<&str>, desc: Option<&str>| {
            let me = group == Some(own);
            Rule {
                protocol: proto.to_owned(),
                from_port: port(p.from_port()),
                to_port: port(p.to_port()),
                cidr: cidr.map(str::to_owned),
                group: if me { None } else { group.map(str::to_owned) },
                own: me,
                description: desc.map(str::to_owned),
            }
        };
        for r in p.ip_ranges() {
            out.push(rule(r.cidr_ip(), None, r.description()));
        }
        for g in p.user_id_group_pairs() {
            out.push(rule(None, g.group_id(), g.description()));
        }
    }
    out
}

fn permission(r: &Rule, own: &str) -> IpPermission {
    let proto = if r.protocol == "all" { "-1" } else { r.protocol.as_str() };
    let port = |x: Option<i64>| Some(x.map_or(-1, |n| n as i32));
    let mut p = IpPermission::builder().ip_protocol(proto);
    if proto != "-1" {
        p = p.set_from_port(port(r.from_port)).set_to_port(port(r.to_port));
    }
    let desc = r.description.clone();
    if let Some(cidr) = &r.cidr {
        p = p.ip_ranges(IpRange::builder().cidr_ip(cidr).set_description(desc).build());
    } else {
        let group = if r.own { own } else { r.group.as_deref().unwrap_or(own) };
        p = p.user_id_group_pairs(UserIdGroupPair::builder().group_id(group).set_description(desc).build());
    }
    p.build()
}

/// Revokes by rule id: matching by content misses group rules whose description differs.
async fn revoke(cx: &Cx, id: &str, egress: bool, gone: &[Rule]) -> Result<(), OpError> {
    let filter = Filter::builder().name("group-id").values(id).build();
    let mut ids = Vec::new();
    let mut pages = ec2(cx).describe_security_group_rules().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        for r in page.map_err(|e| err("DescribeSecurityGroupRules", e))?.security_group_rules() {
            if r.is_egress() != Some(egress) {
                continue;
            }
            let perm = IpPermission::builder()
                .set_ip_protocol(r.ip_protocol().map(str::to_owned))
                .set_from_port(r.from_port())
                .set_to_port(r.to_port())
                .set_ip_ranges(r.cidr_ipv4().map(|c| {
                    vec![IpRange::builder().cidr_ip(c).set_description(r.description().map(str::to_owned)).build()]
                }))
                .set_user_id_group_pairs(r.referenced_group_info().map(|g| {
                    vec![UserIdGroupPair::builder()
                        .set_group_id(g.group_id().map(str::to_owned))
                        .set_description(r.description().map(str::to_owned))
                        .build()]
                }))
                .build();
            if flatten(&[perm], id).iter().any(|x| gone.contains(x)) {
                ids.extend(r.security_group_rule_id().map(str::to_owned));
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let res = if egress {
        ec2(cx)
            .revoke_security_group_egress()
            .group_id(id)
            .set_security_group_rule_ids(Some(ids))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("RevokeSecurityGroupEgress", e))
    } else {
        ec2(cx)
            .revoke_security_group_ingress()
            .group_id(id)
            .set_security_group_rule_ids(Some(ids))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("RevokeSecurityGroupIngress", e))
    };
    gone_ok(res)
}

async fn authorize(cx: &Cx, id: &str, egress: bool, new: &[Rule]) -> Result<(), OpError> {
    if new.is_empty() {
        return Ok(());
    }
    let perms: Vec<IpPermission> = new.iter().map(|r| permission(r, id)).collect();
    let res = if egress {
        ec2(cx)
            .authorize_security_group_egress()
            .group_id(id)
            .set_ip_permissions(Some(perms))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("AuthorizeSecurityGroupEgress", e))
    } else {
        ec2(cx)
            .authorize_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(perms))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("AuthorizeSecurityGroupIngress", e))
    };
    match res {
        // A permission already there (a rerun after a crash between the call and its answer, or
        // the same permission under another description: AWS counts them as one). AWS refuses
        // the whole batch, so one at a time, and one that is there gets its description.
        Err(e) if e.has_code("InvalidPermission.Duplicate") && new.len() > 1 => {
            for r in new {
                Box::pin(authorize(cx, id, egress, std::slice::from_ref(r))).await?;
            }
            Ok(())
        }
        Err(e) if e.has_code("InvalidPermission.Duplicate") => describe(cx, id, egress, &new[0]).await,
        other => other,
    }
}

/// Gives a permission the group has the rule's description.
async fn describe(cx: &Cx, id: &str, egress: bool, rule: &Rule) -> Result<(), OpError> {
    let perm = permission(rule, id);
    if egress {
        ec2(cx)
            .update_security_group_rule_descriptions_egress()
            .group_id(id)
            .ip_permissions(perm)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("UpdateSecurityGroupRuleDescriptionsEgress", e))
    } else {
        ec2(cx)
            .update_security_group_rule_descriptions_ingress()
            .group_id(id)
            .ip_permissions(perm)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("UpdateSecurityGroupRuleDescriptionsIngress", e))
    }
}

#[async_trait]
impl Typed for Group {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        if !tagged(cx, &["security-group"]).await? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut pages = ec2(cx).describe_security_groups().filters(owned(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for g in page.map_err(|e| err("DescribeSecurityGroups", e))?.security_groups() {
                let (Some(id), Some(address)) = (g.group_id(), address_of(g.tags())) else { continue };
                let attrs = Attrs {
                    vpc: g.vpc_id().unwrap_or_default().to_owned(),
                    description: g.description().unwrap_or_default().to_owned(),
                    ingress: flatten(g.ip_permissions(), id),
                    egress: flatten(g.ip_permissions_egress(), id),
                    tags: tags_of(g.tags()),
                };
                out.push(Found { id: id.to_owned(), address, attrs, outputs: () });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        // Group names are unique per VPC: the stack and resource name make a rerun collide
        // instead of duplicating.
        let name = format!("{}-{}", cx.stack, address.name());
        let out = ec2(cx)
            .create_security_group()
            .group_name(name)
            .description(&w.description)
            .vpc_id(&w.vpc)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, &w.tags))
            .send()
            .await
            .map_err(|e| err("CreateSecurityGroup", e))?;
        let id = out.group_id().ok_or_else(|| OpError::fatal("CreateSecurityGroup", "no id"))?;
        // A new group allows all egress; the declared rules replace that.
        let all_out = Rule {
            protocol: "all".into(),
            from_port: None,
            to_port: None,
            cidr: Some("0.0.0.0/0".into()),
            group: None,
            own: false,
            description: None,
        };
        let fresh = Attrs { ingress: Vec::new(), egress: vec![all_out], ..w.clone() };
        cx.born(id, &fresh);
        Typed::update(self, cx, id, Some(&fresh), w).await?;
        Ok(id.to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let canonical = |rules: &[Rule]| rules.iter().cloned().map(Rule::canonical).collect::<Vec<_>>();
        for (old, new, egress) in [(&h.ingress, &w.ingress, false), (&h.egress, &w.egress, true)] {
            let (old, new) = (canonical(old), canonical(new));
            let gone: Vec<Rule> = old.iter().filter(|r| !new.contains(r)).cloned().collect();
            let added: Vec<Rule> = new.iter().filter(|r| !old.contains(r)).cloned().collect();
            // Revoke first: a rule whose description changed is the same permission to AWS.
            if !gone.is_empty() {
                revoke(cx, id, egress, &gone).await?;
            }
            authorize(cx, id, egress, &added).await?;
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(ec2(cx).delete_security_group().group_id(id).send().await.map_err(|e| err("DeleteSecurityGroup", e)))
    }
}

fn check(r: &Resource, _: &Stack, d: &mut Diags) {
    for dir in ["ingress", "egress"] {
        let Some((Val::List(rules), _)) = r.fields.get(dir) else { continue };
        for (i, (rule, span)) in rules.iter().enumerate() {
            let Val::Table(t) = rule else { continue };
            let path = format!("{}.{dir}[{i}]", r.address());
            let peers =
                [t.contains_key("cidr"), t.contains_key("group"), matches!(t.get("self"), Some((Val::Bool(true), _)))];
            if peers.iter().filter(|p| **p).count() != 1 {
                d.error(
                    "bad-rule",
                    span.clone(),
                    format!("{path} needs exactly one peer: cidr, group or self = true"),
                    Some("e.g. cidr = \"0.0.0.0/0\", or group = \"security_group.alb\"".into()),
                );
            }
            let port = |k: &str| match t.get(k) {
                Some((Val::Int(p), _)) => Some(*p),
                _ => None,
            };
            let proto = table_str(t, "protocol").unwrap_or("");
            match (proto, port("from_port"), port("to_port")) {
                ("tcp" | "udp", None, _) => d.error(
                    "bad-rule",
                    span.clone(),
                    format!("{path}: {proto} needs from_port"),
                    Some("add from_port (and to_port for a range)".into()),
                ),
                (_, Some(a), Some(b)) if a > b => {
                    d.error("bad-rule", span.clone(), format!("{path}: from_port {a} is above to_port {b}"), None)
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_port_is_a_range_of_one_and_all_has_none() {
        let r = |p: &str, f: Option<i64>, t: Option<i64>| Rule {
            protocol: p.into(),
            from_port: f,
            to_port: t,
            cidr: None,
            group: None,
            own: true,
            description: None,
        };
        assert_eq!(r("tcp", Some(80), None).canonical(), r("tcp", Some(80), Some(80)));
        assert_eq!(r("all", Some(0), Some(9)).canonical(), r("all", None, None));
    }
}
