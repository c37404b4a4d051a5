//! `iam_role`: a role named `<stack>-<name>` under the path `/<stack>/`, trusted by AWS
//! services, with inline statements written as TOML tables and managed policies attached.
//! Policies are compared in one canonical form (action and resource order, a string versus a
//! one-element list, IAM's URL-encoded documents), so an applied role never shows as a diff.

use super::{decode, err, iam, path, statements, strings};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, tag_changes, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use aws_sdk_iam::types::{EntityType, Tag};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

static STATEMENT: &[Field] = &[
    Field::optional(
        "effect",
        FieldType::Enum(&["Allow", "Deny"]),
        Some("\"Allow\""),
        Update::InPlace,
        "Allow or Deny.",
    ),
    Field::required(
        "actions",
        FieldType::List(&FieldType::String),
        Update::InPlace,
        "Actions, e.g. \"dynamodb:PutItem\".",
    ),
    Field::required(
        "resources",
        FieldType::List(&FieldType::String),
        Update::InPlace,
        "Resource ARNs (\"*\" only for actions that have none), e.g. \"${dynamodb_table.quakes.arn}\".",
    ),
];

pub static KIND: Kind = Kind::new(
    "iam_role",
    "An IAM role named <stack>-<name> under the path /<stack>/ (IAM is global: no region).",
    &Role,
)
.fields(&[
    Field::required(
        "trusted_services",
        FieldType::List(&FieldType::String),
        Update::InPlace,
        "Services that may assume it, e.g. \"ecs-tasks.amazonaws.com\", \"ec2.amazonaws.com\".",
    )
    .security(Security::Grants),
    Field::optional(
        "statements",
        FieldType::List(&FieldType::Table(STATEMENT)),
        None,
        Update::InPlace,
        "Inline policy statements: [{ actions = [...], resources = [...] }].",
    )
    .security(Security::Statements),
    Field::optional(
        "managed_policies",
        FieldType::List(&FieldType::String),
        None,
        Update::InPlace,
        "ARNs of managed policies to attach.",
    )
    .security(Security::Grants),
    TAGS,
])
.outputs(&[("id", "The role's name"), ("name", "<stack>-<name>"), ("arn", "Role ARN")])
.check(check)
.normalize(normalize);

/// The name of the one inline policy this kind writes.
const INLINE: &str = "inline";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    effect: Option<String>,
    actions: Vec<String>,
    resources: Vec<String>,
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    trusted_services: Vec<String>,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    statements: Vec<Statement>,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    managed_policies: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// Sorted lists where order means nothing; one shape for "no statements".
fn normalize(v: &mut Value) {
    for k in ["trusted_services", "managed_policies"] {
        v[k] = json!(strings(&v[k]));
    }
    let mut sts: Vec<Value> = v["statements"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    json!({
                        "effect": s["effect"].as_str().unwrap_or("Allow"),
                        "actions": strings(&s["actions"]),
                        "resources": strings(&s["resources"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    sts.sort_by_key(Value::to_string);
    v["statements"] = json!(sts);
}

/// Services whose trust AWS documents conditions for (the confused deputy: another account's
/// task must not assume this role): ECS tasks carry their account and task ARN.
fn conditions(service: &str, account: &str) -> Option<Value> {
    (service == "ecs-tasks.amazonaws.com").then(|| {
        json!({
            "StringEquals": {"aws:SourceAccount": account},
            "ArnLike": {"aws:SourceArn": format!("arn:aws:ecs:*:{account}:*")},
        })
    })
}

/// What a role whose trust lacks its service's conditions reads back as: a difference, so the
/// next apply writes them (a role made before they were).
const UNCONDITIONED: &str = " (without its source conditions)";

fn trust(services: &[String], account: &str) -> String {
    let (conditioned, plain): (Vec<&String>, Vec<&String>) =
        services.iter().partition(|s| conditions(s, account).is_some());
    let mut sts: Vec<Value> = conditioned
        .iter()
        .map(|s| {
            json!({"Effect": "Allow", "Principal": {"Service": s}, "Action": "sts:AssumeRole",
                   "Condition": conditions(s, account)})
        })
        .collect();
    if !plain.is_empty() {
        sts.push(json!({"Effect": "Allow", "Principal": {"Service": plain}, "Action": "sts:AssumeRole"}));
    }
    json!({"Version": "2012-10-17", "Statement": sts}).to_string()
}

fn inline(sts: &[Statement]) -> String {
    let sts: Vec<Value> = sts
        .iter()
        .map(
            |s| json!({"Effect": s.effect.as_deref().unwrap_or("Allow"), "Action": s.actions, "Resource": s.resources}),
        )
        .collect();
    json!({"Version": "2012-10-17", "Statement": sts}).to_string()
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    super::check_name(r, stack, "role", 64, d);
    if let Some((_, span)) = r.fields.get("region").filter(|_| stack.region_of(r) != stack.region) {
        d.error(
            "global-service",
            span.clone(),
            format!("{} is an IAM role: IAM is global and has no region", r.address()),
            Some("remove `region`".into()),
        );
    }
}

struct Role;

#[derive(Default, Serialize)]
struct Outputs {
    name: String,
    arn: String,
}

fn tags(m: &BTreeMap<String, String>) -> Result<Vec<Tag>, OpError> {
    m.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| OpError::fatal("Tag", e.to_string())))
        .collect()
}

async fn put_inline(cx: &Cx, name: &str, sts: &[Statement]) -> Result<(), OpError> {
    if sts.is_empty() {
        return gone_ok(
            iam(cx)
                .delete_role_policy()
                .role_name(name)
                .policy_name(INLINE)
                .send()
                .await
                .map_err(|e| err("DeleteRolePolicy", e)),
        );
    }
    iam(cx)
        .put_role_policy()
        .role_name(name)
        .policy_name(INLINE)
        .policy_document(inline(sts))
        .send()
        .await
        .map_err(|e| err("PutRolePolicy", e))?;
    Ok(())
}

#[async_trait]
impl Typed for Role {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        // Global: read once, in the stack's region.
        if cx.region != cx.home {
            return Ok(Vec::new());
        }
        // One paginated read gives every role with its trust, inline and attached policies and
        // tags (per-role reads cost three calls a role).
        let mut roles = Vec::new();
        let mut pages = iam(cx).get_account_authorization_details().filter(EntityType::Role).into_paginator().send();
        while let Some(page) = pages.next().await {
            roles
                .extend(page.map_err(|e| err("GetAccountAuthorizationDetails", e))?.role_detail_list().iter().cloned());
        }
        let mut out = Vec::new();
        for r in roles.into_iter().filter(|r| r.path() == Some(path(cx).as_str())) {
            let Some(name) = r.role_name().map(str::to_owned) else { continue };
            let trust = r.assume_role_policy_document().map(decode).unwrap_or(Value::Null);
            let trusted: Vec<String> = statements(&trust)
                .iter()
                .flat_map(|s| {
                    let bare = s["Condition"].is_null();
                    strings(&s["Principal"]["Service"]).into_iter().map(move |svc| {
                        if bare && conditions(&svc, "").is_some() {
                            format!("{svc}{UNCONDITIONED}")
                        } else {
                            svc
                        }
                    })
                })
                .collect();
            let tags: BTreeMap<String, String> =
                r.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
            let sts: Vec<Statement> = r
                .role_policy_list()
                .iter()
                .filter(|p| p.policy_name() == Some(INLINE))
                .flat_map(|p| {
                    let doc = p.policy_document().map(decode).unwrap_or(Value::Null);
                    statements(&doc)
                        .iter()
                        .map(|s| Statement {
                            effect: s["Effect"].as_str().map(str::to_owned),
                            actions: strings(&s["Action"]),
                            resources: strings(&s["Resource"]),
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let managed_policies =
                r.attached_managed_policies().iter().filter_map(|p| p.policy_arn().map(str::to_owned)).collect();
            let address = Address::found(&tags, KIND.name, name.trim_start_matches(&format!("{}-", cx.stack)));
            let outputs = Outputs { name: name.clone(), arn: r.arn().unwrap_or_default().to_owned() };
            let attrs = Attrs { trusted_services: trusted, statements: sts, managed_policies, tags };
            out.push(Found { id: name, address, attrs, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}-{}", cx.stack, address.name());
        let made = iam(cx)
            .create_role()
            .role_name(&name)
            .path(path(cx))
            .assume_role_policy_document(trust(&w.trusted_services, &crate::kinds::account::account_id(cx).await?))
            .set_tags(Some(tags(&w.tags)?))
            .send()
            .await
            .map_err(|e| err("CreateRole", e));
        match made {
            // The name is the idempotency key: a rerun finds its own role.
            Err(e) if e.has_code("EntityAlreadyExists") => {}
            other => {
                other?;
            }
        }
        if !w.statements.is_empty() {
            put_inline(cx, &name, &w.statements).await?;
        }
        for arn in &w.managed_policies {
            iam(cx)
                .attach_role_policy()
                .role_name(&name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| err("AttachRolePolicy", e))?;
        }
        Ok(name)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let sorted = |v: &[String]| strings(&json!(v));
        if sorted(&h.trusted_services) != sorted(&w.trusted_services) {
            iam(cx)
                .update_assume_role_policy()
                .role_name(id)
                .policy_document(trust(&w.trusted_services, &crate::kinds::account::account_id(cx).await?))
                .send()
                .await
                .map_err(|e| err("UpdateAssumeRolePolicy", e))?;
        }
        let canon = |s: &[Statement]| {
            let mut v = json!({ "statements": s.iter().map(|x| json!({"effect": x.effect, "actions": x.actions, "resources": x.resources})).collect::<Vec<_>>() });
            normalize(&mut v);
            v["statements"].clone()
        };
        if canon(&h.statements) != canon(&w.statements) {
            put_inline(cx, id, &w.statements).await?;
        }
        for arn in w.managed_policies.iter().filter(|a| !h.managed_policies.contains(a)) {
            iam(cx)
                .attach_role_policy()
                .role_name(id)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| err("AttachRolePolicy", e))?;
        }
        for arn in h.managed_policies.iter().filter(|a| !w.managed_policies.contains(a)) {
            gone_ok(
                iam(cx)
                    .detach_role_policy()
                    .role_name(id)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| err("DetachRolePolicy", e)),
            )?;
        }
        let (gone, changed) = tag_changes(&h.tags, &w.tags);
        if !gone.is_empty() {
            iam(cx)
                .untag_role()
                .role_name(id)
                .set_tag_keys(Some(gone))
                .send()
                .await
                .map_err(|e| err("UntagRole", e))?;
        }
        if !changed.is_empty() {
            iam(cx)
                .tag_role()
                .role_name(id)
                .set_tags(Some(tags(&changed)?))
                .send()
                .await
                .map_err(|e| err("TagRole", e))?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        // A role goes only once nothing is attached to it: policies out, then the role.
        if let Some(h) = have {
            for arn in &h.managed_policies {
                gone_ok(
                    iam(cx)
                        .detach_role_policy()
                        .role_name(id)
                        .policy_arn(arn)
                        .send()
                        .await
                        .map_err(|e| err("DetachRolePolicy", e)),
                )?;
            }
        }
        gone_ok(
            iam(cx)
                .delete_role_policy()
                .role_name(id)
                .policy_name(INLINE)
                .send()
                .await
                .map_err(|e| err("DeleteRolePolicy", e)),
        )?;
        gone_ok(iam(cx).delete_role().role_name(id).send().await.map_err(|e| err("DeleteRole", e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What IAM answers (URL-encoded, strings where one value, any order) reads as declared.
    #[test]
    fn policies_compare_canonically() {
        let doc = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22dynamodb%3APutItem%22%2C%22Resource%22%3A%5B%22b%22%2C%22a%22%5D%7D%7D";
        let read: Vec<Value> = statements(&decode(doc))
            .iter()
            .map(|s| json!({"effect": s["Effect"], "actions": strings(&s["Action"]), "resources": strings(&s["Resource"])}))
            .collect();
        let mut live =
            json!({ "trusted_services": "ecs-tasks.amazonaws.com", "statements": read, "managed_policies": null });
        let mut want = json!({
            "trusted_services": ["ecs-tasks.amazonaws.com"],
            "statements": [{ "effect": null, "actions": ["dynamodb:PutItem"], "resources": ["a", "b"] }],
            "managed_policies": [],
        });
        normalize(&mut live);
        normalize(&mut want);
        assert_eq!(live, want);
    }
}
