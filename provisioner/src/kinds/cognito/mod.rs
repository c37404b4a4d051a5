//! Cognito user pools: the pool, its hosted-UI domain, its app clients and its users, and what
//! they share: the client, Cognito's error codes and the stack's pools (named `<stack>-<name>`,
//! found by name in one list, confirmed by their tags). Domains, clients and users have no tags:
//! they belong to the stack through their pool.

use crate::error::{Codes, OpError};
use crate::provider::{Cx, ID_TAG, STACK_TAG};
use aws_sdk_cognitoidentityprovider::types::UserPoolType;

pub mod cognito_user;
pub mod cognito_user_pool;
pub mod cognito_user_pool_client;
pub mod cognito_user_pool_domain;

super::kinds!(cognito_user_pool, cognito_user_pool_domain, cognito_user_pool_client, cognito_user);

/// The Cognito user pools client of the context's region.
pub fn idp(cx: &Cx) -> aws_sdk_cognitoidentityprovider::Client {
    cx.client::<aws_sdk_cognitoidentityprovider::Client>()
}

struct CognitoCodes;

impl Codes for CognitoCodes {
    fn not_found(&self, code: &str) -> bool {
        matches!(code, "ResourceNotFoundException" | "UserNotFoundException")
    }

    fn retryable(&self, code: &str) -> bool {
        matches!(code, "ConcurrentModificationException" | "InternalErrorException")
    }
}

super::service!(aws_sdk_cognitoidentityprovider::Client, CognitoCodes);

/// The stack's pools in `cx.region`, described, with their addresses: read once per pass.
pub async fn pools(cx: &Cx) -> Result<Vec<(String, UserPoolType)>, OpError> {
    cx.once("cognito:pools", || async {
        let prefix = format!("{}-", cx.stack);
        let mut ids = Vec::new();
        let mut pages = idp(cx).list_user_pools().max_results(60).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| err("ListUserPools", e))?;
            ids.extend(
                page.user_pools()
                    .iter()
                    .filter(|p| p.name().is_some_and(|n| n.starts_with(&prefix)))
                    .filter_map(|p| p.id().map(str::to_owned)),
            );
        }
        let mut out = Vec::new();
        for id in ids {
            let pool = match idp(cx)
                .describe_user_pool()
                .user_pool_id(&id)
                .send()
                .await
                .map_err(|e| err("DescribeUserPool", e))
            {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            };
            let Some(pool) = pool.user_pool().cloned() else { continue };
            let tags = pool.user_pool_tags().cloned().unwrap_or_default();
            if tags.get(STACK_TAG) != Some(&cx.stack) {
                continue;
            }
            if let Some(address) = tags.get(ID_TAG) {
                out.push((address.clone(), pool));
            }
        }
        Ok(out)
    })
    .await
}
