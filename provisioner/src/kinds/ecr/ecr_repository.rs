//! `ecr_repository`: a private image repository named `<stack>/<name>`, with immutable tags,
//! scanning on push, and a lifecycle rule keeping the last N images.

use super::{ecr, err, repositories};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, tag_changes, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Tag};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new(
    "ecr_repository",
    "A private ECR repository named <stack>/<name> (its output `url` is what images are pushed to).",
    &Repository,
)
.fields(&[
    Field::optional(
        "image_tag_mutability",
        FieldType::Enum(&["IMMUTABLE", "MUTABLE"]),
        Some("\"IMMUTABLE\""),
        Update::InPlace,
        "Whether a tag, once pushed, may point at another image.",
    ),
    Field::optional(
        "scan_on_push",
        FieldType::Bool,
        Some("true"),
        Update::InPlace,
        "Scan each image for vulnerabilities.",
    ),
    Field::optional(
        "keep_images",
        FieldType::Int { min: 1, max: 1000 },
        None,
        Update::InPlace,
        "Keep only the newest N images (a lifecycle rule expires the rest); none: keep all.",
    ),
    TAGS,
])
.outputs(&[
    ("id", "The repository's name"),
    ("name", "<stack>/<name>"),
    ("arn", "Repository ARN"),
    ("url", "Repository URI"),
    (
        "registry",
        "The registry's host (<account>.dkr.ecr.<region>.amazonaws.com): a host's credential helper is set for it",
    ),
])
.check(check)
.cost(cost, &[ECR_STORAGE_GB]);

const ECR_STORAGE_GB: crate::cost::UsageKey = crate::cost::UsageKey {
    name: "ecr_storage_gb",
    unit: "GB",
    doc: "image layers each repository stores (all the images it keeps)",
};

fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    vec![crate::cost::Part::new("image storage", "ecr.storage", cx.usage(&ECR_STORAGE_GB))]
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    image_tag_mutability: String,
    #[serde(default)]
    scan_on_push: bool,
    keep_images: Option<i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// The one lifecycle rule this kind writes, and reads back.
fn policy(keep: i64) -> String {
    json!({"rules": [{
        "rulePriority": 1,
        "description": format!("keep the newest {keep} images"),
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
        "action": {"type": "expire"}
    }]})
    .to_string()
}

/// The N of a policy this kind wrote; `None` for any other policy (shown as a difference).
fn kept(text: &str) -> Option<i64> {
    let v: Value = serde_json::from_str(text).ok()?;
    let rules = v["rules"].as_array()?;
    let [rule] = rules.as_slice() else { return None };
    (rule["selection"]["countType"] == "imageCountMoreThan" && rule["action"]["type"] == "expire")
        .then(|| rule["selection"]["countNumber"].as_i64())
        .flatten()
}

#[derive(Default, Serialize)]
struct Outputs {
    name: String,
    arn: String,
    registry: String,
    url: String,
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    let name = format!("{}/{}", stack.name, r.name);
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '/' | '-' | '_' | '.')) {
        d.error(
            "bad-name",
            r.span.clone(),
            format!("{} would be the repository {name:?}; ECR names are lower case", r.address()),
            Some("use a lower-case stack and resource name".into()),
        );
    }
}

struct Repository;

async fn set_policy(cx: &Cx, name: &str, keep: Option<i64>) -> Result<(), OpError> {
    match keep {
        Some(n) => ecr(cx)
            .put_lifecycle_policy()
            .repository_name(name)
            .lifecycle_policy_text(policy(n))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| err("PutLifecyclePolicy", e)),
        None => gone_ok(
            ecr(cx)
                .delete_lifecycle_policy()
                .repository_name(name)
                .send()
                .await
                .map_err(|e| err("DeleteLifecyclePolicy", e)),
        ),
    }
}

fn tags(m: &BTreeMap<String, String>) -> Result<Vec<Tag>, OpError> {
    m.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| OpError::fatal("Tag", e.to_string())))
        .collect()
}

#[async_trait]
impl Typed for Repository {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let prefix = format!("{}/", cx.stack);
        let mut out = Vec::new();
        for r in repositories(cx).await? {
            let keep = match ecr(cx)
                .get_lifecycle_policy()
                .repository_name(&r.name)
                .send()
                .await
                .map_err(|e| err("GetLifecyclePolicy", e))
            {
                Ok(p) => p.lifecycle_policy_text().and_then(kept),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            let address = Address::found(&r.tags, KIND.name, &r.name[prefix.len()..]);
            let outputs = Outputs {
                name: r.name.clone(),
                arn: r.arn.clone(),
                registry: r.uri.split('/').next().unwrap_or_default().to_owned(),
                url: r.uri.clone(),
            };
            let attrs = Attrs {
                image_tag_mutability: r.mutability.clone(),
                scan_on_push: r.scan_on_push,
                keep_images: keep,
                tags: r.tags.clone(),
            };
            out.push(Found { id: r.name.clone(), address, attrs, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}/{}", cx.stack, address.name());
        let made = ecr(cx)
            .create_repository()
            .repository_name(&name)
            .image_tag_mutability(ImageTagMutability::from(w.image_tag_mutability.as_str()))
            .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(w.scan_on_push).build())
            .set_tags(Some(tags(&w.tags)?))
            .send()
            .await
            .map_err(|e| err("CreateRepository", e));
        match made {
            // The name is the idempotency key: a rerun finds its own repository.
            Err(e) if e.has_code("RepositoryAlreadyExistsException") => {}
            other => {
                other?;
            }
        }
        if w.keep_images.is_some() {
            set_policy(cx, &name, w.keep_images).await?;
        }
        Ok(name)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        if h.image_tag_mutability != w.image_tag_mutability {
            ecr(cx)
                .put_image_tag_mutability()
                .repository_name(id)
                .image_tag_mutability(ImageTagMutability::from(w.image_tag_mutability.as_str()))
                .send()
                .await
                .map_err(|e| err("PutImageTagMutability", e))?;
        }
        if h.scan_on_push != w.scan_on_push {
            ecr(cx)
                .put_image_scanning_configuration()
                .repository_name(id)
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder().scan_on_push(w.scan_on_push).build(),
                )
                .send()
                .await
                .map_err(|e| err("PutImageScanningConfiguration", e))?;
        }
        if h.keep_images != w.keep_images {
            set_policy(cx, id, w.keep_images).await?;
        }
        let (gone, changed) = tag_changes(&h.tags, &w.tags);
        if !gone.is_empty() || !changed.is_empty() {
            let out = ecr(cx)
                .describe_repositories()
                .repository_names(id)
                .send()
                .await
                .map_err(|e| err("DescribeRepositories", e))?;
            let arn = out.repositories().first().and_then(|r| r.repository_arn()).unwrap_or_default().to_owned();
            if !gone.is_empty() {
                ecr(cx)
                    .untag_resource()
                    .resource_arn(&arn)
                    .set_tag_keys(Some(gone))
                    .send()
                    .await
                    .map_err(|e| err("UntagResource", e))?;
            }
            if !changed.is_empty() {
                ecr(cx)
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(tags(&changed)?))
                    .send()
                    .await
                    .map_err(|e| err("TagResource", e))?;
            }
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        // Its images go with it: they are built again from the source by the next apply.
        gone_ok(
            ecr(cx)
                .delete_repository()
                .repository_name(id)
                .force(true)
                .send()
                .await
                .map_err(|e| err("DeleteRepository", e)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_rule_reads_back_as_written_and_others_do_not() {
        assert_eq!(kept(&policy(10)), Some(10));
        assert_eq!(
            kept(
                r#"{"rules":[{"selection":{"countType":"sinceImagePushed","countNumber":3},"action":{"type":"expire"}}]}"#
            ),
            None
        );
        assert_eq!(kept("not json"), None);
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    #[test]
    fn storage_at_ten_cents_a_gb() {
        let b = priced(
            "[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[ecr_repository.r]\n[usage]\necr_storage_gb = 0.5\n",
        );
        close(of(&b, "ecr_repository.r").monthly, 0.05);
    }
}
