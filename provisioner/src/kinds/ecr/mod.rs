//! ECR: image repositories and the images pushed to them, and what they share: the client,
//! ECR's error codes, the stack's repositories (read once per discovery pass) and the registry
//! client with ECR's token. Repositories cannot be listed by tag, so the stack's are named
//! `<stack>/<name>`, listed by that prefix and kept only when their `provisioner:stack` tag
//! says so.

use crate::error::{Codes, OpError};
use crate::image::registry::{Registry, RegistryError};
use crate::provider::{Cx, STACK_TAG};
use std::collections::BTreeMap;

pub mod ecr_repository;
pub mod image;

super::kinds!(ecr_repository, image);

/// Where images are pushed instead of the registry ECR names (an emulator or a mirror that
/// speaks the OCI distribution API), e.g. `http://127.0.0.1:5000`.
pub const REGISTRY_ENV: &str = "PROVISIONER_REGISTRY_ENDPOINT";

/// One of the stack's repositories.
#[derive(Debug, Clone)]
pub struct Repo {
    pub name: String,
    pub arn: String,
    pub uri: String,
    pub mutability: String,
    pub scan_on_push: bool,
    pub tags: BTreeMap<String, String>,
}

/// The stack's repositories in the context's region: one list by name prefix, one tag read
/// each (ECR's listing carries no tags); once per discovery pass.
pub async fn repositories(cx: &Cx) -> Result<Vec<Repo>, OpError> {
    cx.once("ecr:repositories", || async {
        let client = ecr(cx);
        let prefix = format!("{}/", cx.stack);
        let mut found = Vec::new();
        let mut pages = client.describe_repositories().into_paginator().send();
        while let Some(page) = pages.next().await {
            for r in page.map_err(|e| err("DescribeRepositories", e))?.repositories() {
                if r.repository_name().is_some_and(|n| n.starts_with(&prefix)) {
                    found.push(r.clone());
                }
            }
        }
        let mut out = Vec::new();
        for r in found {
            let (Some(name), Some(arn)) = (r.repository_name(), r.repository_arn()) else { continue };
            let t = client
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(|e| err("ListTagsForResource", e))?;
            let tags: BTreeMap<String, String> =
                t.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
            if tags.get(STACK_TAG) != Some(&cx.stack) {
                continue;
            }
            out.push(Repo {
                name: name.to_owned(),
                arn: arn.to_owned(),
                uri: r.repository_uri().unwrap_or_default().to_owned(),
                mutability: r.image_tag_mutability().map_or("MUTABLE", |m| m.as_str()).to_owned(),
                scan_on_push: r.image_scanning_configuration().is_some_and(|c| c.scan_on_push()),
                tags,
            });
        }
        Ok(out)
    })
    .await
}

/// The account's registry in the context's region, signed in with a token from
/// `GetAuthorizationToken` (valid 12 hours; read once per discovery pass).
pub async fn registry(cx: &Cx) -> Result<Registry, OpError> {
    cx.once("ecr:registry", || async {
        let out = ecr(cx).get_authorization_token().send().await.map_err(|e| err("GetAuthorizationToken", e))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| OpError::fatal("GetAuthorizationToken", "ECR returned no authorization data"))?;
        let base = match std::env::var(REGISTRY_ENV) {
            Ok(url) if !url.is_empty() => url,
            _ => data.proxy_endpoint().unwrap_or_default().to_owned(),
        };
        Ok(Registry::new(&base, data.authorization_token()))
    })
    .await
}

/// A registry failure as the engine classifies it.
pub fn registry_err(e: RegistryError) -> OpError {
    if e.transient {
        OpError::retryable(e.op, format!("{}: {}", e.repo, e.detail))
    } else {
        OpError::fatal(e.op, format!("{}: {}", e.repo, e.detail))
    }
}

/// The ECR client of the context's region.
pub fn ecr(cx: &Cx) -> aws_sdk_ecr::Client {
    cx.client::<aws_sdk_ecr::Client>()
}

struct EcrCodes;

impl Codes for EcrCodes {
    fn not_found(&self, code: &str) -> bool {
        matches!(code, "RepositoryNotFoundException" | "LifecyclePolicyNotFoundException")
    }
}

super::service!(aws_sdk_ecr::Client, EcrCodes);
