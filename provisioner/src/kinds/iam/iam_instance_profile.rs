//! `iam_instance_profile`: what an EC2 host carries to act as a role, named `<stack>-<name>`
//! under the path `/<stack>/`.

use super::{err, iam, path};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, tag_changes, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use aws_sdk_iam::types::Tag;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new(
    "iam_instance_profile",
    "An instance profile holding one role, for EC2 hosts (IAM is global: no region).",
    &Profile,
)
.fields(&[
    Field::required("role", FieldType::Ref(&["iam_role"]), Update::InPlace, "The role hosts with this profile act as."),
    TAGS,
])
.outputs(&[("id", "The profile's name"), ("name", "<stack>-<name>"), ("arn", "Instance profile ARN")])
.check(check);

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    super::check_name(r, stack, "instance profile", 128, d);
    if let Some((_, span)) = r.fields.get("region").filter(|_| stack.region_of(r) != stack.region) {
        d.error(
            "global-service",
            span.clone(),
            format!("{} is an IAM instance profile: IAM is global and has no region", r.address()),
            Some("remove `region`".into()),
        );
    }
}

#[derive(Default, Serialize)]
struct Outputs {
    name: String,
    arn: String,
}

struct Profile;

/// The declared shape, decoded once from `want` or `have` (`role` as an id: the role's name).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    role: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn tag_list(m: &BTreeMap<String, String>) -> Result<Vec<Tag>, OpError> {
    m.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| OpError::fatal("Tag", e.to_string())))
        .collect()
}

async fn add_role(cx: &Cx, name: &str, role: &str) -> Result<(), OpError> {
    let r = iam(cx).add_role_to_instance_profile().instance_profile_name(name).role_name(role).send().await;
    match r.map_err(|e| err("AddRoleToInstanceProfile", e)) {
        // A profile holds one role; a rerun finds it already in.
        Err(e) if e.has_code("LimitExceeded") || e.has_code("EntityAlreadyExists") => Ok(()),
        other => other.map(|_| ()),
    }
}

async fn remove_role(cx: &Cx, name: &str, role: &str) -> Result<(), OpError> {
    gone_ok(
        iam(cx)
            .remove_role_from_instance_profile()
            .instance_profile_name(name)
            .role_name(role)
            .send()
            .await
            .map_err(|e| err("RemoveRoleFromInstanceProfile", e)),
    )
}

#[async_trait]
impl Typed for Profile {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        if cx.region != cx.home {
            return Ok(Vec::new());
        }
        let client = iam(cx);
        let mut profiles = Vec::new();
        let mut pages = client.list_instance_profiles().path_prefix(path(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            profiles.extend(page.map_err(|e| err("ListInstanceProfiles", e))?.instance_profiles().iter().cloned());
        }
        let mut out = Vec::new();
        for p in profiles {
            let name = p.instance_profile_name().to_owned();
            // A list answer carries no tags in AWS (IAM's listings are partial): one read each.
            let got = client
                .get_instance_profile()
                .instance_profile_name(&name)
                .send()
                .await
                .map_err(|e| err("GetInstanceProfile", e))?;
            let tags: BTreeMap<String, String> = got
                .instance_profile()
                .map(|p| p.tags())
                .unwrap_or_default()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect();
            let address = Address::found(&tags, KIND.name, name.trim_start_matches(&format!("{}-", cx.stack)));
            let outputs = Outputs { name: name.clone(), arn: p.arn().to_owned() };
            // References hold ids: a role's id is its name.
            let role = p.roles().first().map(|r| r.role_name().to_owned());
            out.push(Found { id: name, address, attrs: Attrs { role, tags }, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}-{}", cx.stack, address.name());
        let tags = tag_list(&w.tags)?;
        let made = iam(cx)
            .create_instance_profile()
            .instance_profile_name(&name)
            .path(path(cx))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| err("CreateInstanceProfile", e));
        match made {
            Err(e) if e.has_code("EntityAlreadyExists") => {}
            other => {
                other?;
            }
        }
        let role = w.role.as_deref().ok_or_else(|| OpError::fatal("resolve", "`role` is not resolved"))?;
        add_role(cx, &name, role).await?;
        Ok(name)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let new = w.role.as_deref().ok_or_else(|| OpError::fatal("resolve", "`role` is not resolved"))?;
        if h.role.as_deref() != Some(new) {
            if let Some(old) = &h.role {
                remove_role(cx, id, old).await?;
            }
            add_role(cx, id, new).await?;
        }
        let (gone, changed) = tag_changes(&h.tags, &w.tags);
        let changed = tag_list(&changed)?;
        if !gone.is_empty() {
            iam(cx)
                .untag_instance_profile()
                .instance_profile_name(id)
                .set_tag_keys(Some(gone))
                .send()
                .await
                .map_err(|e| err("UntagInstanceProfile", e))?;
        }
        if !changed.is_empty() {
            iam(cx)
                .tag_instance_profile()
                .instance_profile_name(id)
                .set_tags(Some(changed))
                .send()
                .await
                .map_err(|e| err("TagInstanceProfile", e))?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        // The role leaves the profile first: IAM refuses to delete a profile that holds one.
        let role = have.and_then(|h| h.role.clone());
        if let Some(role) = role {
            remove_role(cx, id, &role).await?;
        }
        gone_ok(
            iam(cx)
                .delete_instance_profile()
                .instance_profile_name(id)
                .send()
                .await
                .map_err(|e| err("DeleteInstanceProfile", e)),
        )
    }
}
