//! `cognito_user_pool_client`: an app client of a pool for the authorization code flow with
//! PKCE (a public client: no secret, which an edge function could not keep), its callback and
//! sign-out URLs on the stack's CloudFront sites. A site names its distribution as a peer: the
//! distribution runs a function that needs this client's id, so the client is made first and
//! its site URLs are added once the distribution exists. Clients have no tags: the stack's are
//! the clients of its pools, named as their resources.

use super::{err, idp, pools};
use crate::error::{gone_ok, OpError};
use crate::kinds::cloudfront::domains;
use crate::provider::{known, null_as_empty, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::types::{
    ExplicitAuthFlowsType, OAuthFlowType, PreventUserExistenceErrorTypes, TimeUnitsType, TokenValidityUnitsType,
    UserPoolClientType,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

static SITE: &[Field] = &[
    Field::required(
        "distribution",
        FieldType::Peer(&["cloudfront_distribution"]),
        Update::InPlace,
        "The CloudFront distribution the sign-in returns to.",
    ),
    Field::optional(
        "callback",
        FieldType::String,
        Some("\"/callback\""),
        Update::InPlace,
        "Path the sign-in returns the code to.",
    ),
    Field::optional("signout", FieldType::String, Some("\"/\""), Update::InPlace, "Path a sign-out returns to."),
];

pub static KIND: Kind = Kind::new(
    "cognito_user_pool_client",
    "A user pool app client for the code flow with PKCE (no secret), returning to the stack's CloudFront sites.",
    &Client,
)
.fields(&[
    Field::required("pool", FieldType::Ref(&["cognito_user_pool"]), Update::Replace, "The pool."),
    Field::optional(
        "sites",
        FieldType::List(&FieldType::Table(SITE)),
        None,
        Update::InPlace,
        "Distributions whose https://<domain><callback> and <signout> are allowed.",
    ),
    Field::optional(
        "callback_urls",
        FieldType::List(&FieldType::String),
        None,
        Update::InPlace,
        "Other allowed callback URLs.",
    )
    .security(Security::Grants),
    Field::optional(
        "logout_urls",
        FieldType::List(&FieldType::String),
        None,
        Update::InPlace,
        "Other allowed sign-out URLs.",
    )
    .security(Security::Grants),
    Field::optional(
        "scopes",
        FieldType::List(&FieldType::String),
        Some("[\"openid\", \"email\"]"),
        Update::InPlace,
        "OAuth scopes the client may ask for.",
    ),
    Field::optional(
        "id_token_minutes",
        FieldType::Int { min: 5, max: 1440 },
        Some("60"),
        Update::InPlace,
        "How long an ID token is valid.",
    ),
    Field::optional(
        "refresh_token_days",
        FieldType::Int { min: 1, max: 3650 },
        Some("30"),
        Update::InPlace,
        "How long a refresh token is valid.",
    ),
])
.outputs(&[("id", "The client id (the `aud` of its ID tokens)")])
.check(no_dashes)
.normalize(normalize);

/// The client is named as its resource: a name with `-` could not be told apart on read-back.
fn no_dashes(r: &Resource, _: &Stack, d: &mut crate::diag::Diags) {
    if r.name.contains('-') {
        d.error(
            "bad-client-name",
            r.span.clone(),
            format!("{}: use `_` instead of `-` in its name", r.address()),
            None,
        );
    }
}

/// URL lists as sets.
fn normalize(v: &mut Value) {
    for f in ["callback_urls", "logout_urls", "scopes"] {
        if let Some(Value::Array(a)) = v.get_mut(f) {
            a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            a.dedup();
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Site {
    distribution: String,
    callback: Option<String>,
    signout: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    pool: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    sites: Vec<Site>,
    #[serde(default, deserialize_with = "null_as_empty")]
    callback_urls: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    logout_urls: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    scopes: Vec<String>,
    id_token_minutes: Option<i64>,
    refresh_token_days: Option<i64>,
}

/// Every callback and sign-out URL: the sites' (by their distributions' domains) and the others.
async fn urls(cx: &Cx, w: &Attrs) -> Result<(Vec<String>, Vec<String>), OpError> {
    let (mut callbacks, mut logouts) = (w.callback_urls.clone(), w.logout_urls.clone());
    if !w.sites.is_empty() {
        let by_id = domains(cx).await?;
        for s in &w.sites {
            let d = by_id.get(&s.distribution).ok_or_else(|| {
                OpError::new(
                    crate::error::Class::NotFound,
                    "ListDistributions",
                    format!("no distribution {}", s.distribution),
                )
            })?;
            callbacks.push(format!("https://{d}{}", s.callback.as_deref().unwrap_or("/callback")));
            logouts.push(format!("https://{d}{}", s.signout.as_deref().unwrap_or("/")));
        }
    }
    callbacks.sort();
    callbacks.dedup();
    logouts.sort();
    logouts.dedup();
    Ok((callbacks, logouts))
}

/// The declared attributes of a live client: URLs on a distribution's domain become its site
/// (its lists as sets, as [`normalize`] makes them).
fn attrs_of(c: &UserPoolClientType, by_domain: &std::collections::BTreeMap<String, String>) -> Attrs {
    let on_site = |u: &str| -> Option<(String, String)> {
        let rest = u.strip_prefix("https://")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        by_domain.get(host).map(|id| (id.clone(), if path.is_empty() { "/".to_owned() } else { path.to_owned() }))
    };
    let (mut sites, mut callbacks, mut logouts) = (Vec::new(), Vec::new(), Vec::new());
    let mut signouts: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for u in c.logout_urls() {
        match on_site(u) {
            Some((id, path)) => signouts.entry(id).or_default().push(path),
            None => logouts.push(u.clone()),
        }
    }
    for u in c.callback_urls() {
        match on_site(u) {
            Some((id, path)) => {
                let signout = signouts.get_mut(&id).and_then(|v| (!v.is_empty()).then(|| v.remove(0)));
                sites.push(Site { distribution: id, callback: Some(path), signout });
            }
            None => callbacks.push(u.clone()),
        }
    }
    logouts.extend(
        signouts.into_iter().flat_map(|(id, paths)| paths.into_iter().map(move |p| format!("https://{id}{p}"))),
    );
    let mut scopes = c.allowed_o_auth_scopes().to_vec();
    for list in [&mut callbacks, &mut logouts, &mut scopes] {
        list.sort();
        list.dedup();
    }
    Attrs {
        pool: c.user_pool_id().unwrap_or_default().to_owned(),
        sites,
        callback_urls: callbacks,
        logout_urls: logouts,
        scopes,
        id_token_minutes: c.id_token_validity().map(i64::from),
        refresh_token_days: Some(i64::from(c.refresh_token_validity())),
    }
}

/// The settings create and update both send: an update replaces all of them, and lists are
/// always sent whole (one left out would be kept, or reset).
macro_rules! settings {
    ($builder:expr, $name:expr, $w:expr, $callbacks:expr, $logouts:expr) => {{
        let w: &Attrs = $w;
        let (callbacks, logouts): (Vec<String>, Vec<String>) = ($callbacks, $logouts);
        // Cognito takes the OAuth settings only with at least one callback URL: a client made
        // before its site exists gets them once the site is added.
        let oauth = !callbacks.is_empty();
        let scopes = if w.scopes.is_empty() { vec!["openid".to_owned(), "email".to_owned()] } else { w.scopes.clone() };
        let minutes = w.id_token_minutes.unwrap_or(60) as i32;
        $builder
            .client_name($name)
            .allowed_o_auth_flows_user_pool_client(oauth)
            .set_allowed_o_auth_flows(oauth.then(|| vec![OAuthFlowType::Code]))
            .set_allowed_o_auth_scopes(oauth.then_some(scopes))
            .set_callback_urls(Some(callbacks))
            .set_logout_urls(Some(logouts))
            .supported_identity_providers("COGNITO")
            // Only the hosted UI's code flow and refreshing: no SRP, password or custom
            // sign-in straight against the API, around the hosted UI (and its MFA).
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
            .id_token_validity(minutes)
            .access_token_validity(minutes)
            .refresh_token_validity(w.refresh_token_days.unwrap_or(30) as i32)
            .token_validity_units(
                TokenValidityUnitsType::builder()
                    .id_token(TimeUnitsType::Minutes)
                    .access_token(TimeUnitsType::Minutes)
                    .refresh_token(TimeUnitsType::Days)
                    .build(),
            )
            .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
    }};
}

struct Client;

#[async_trait]
impl Typed for Client {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        let pools = pools(cx).await?;
        if pools.is_empty() {
            return Ok(Vec::new());
        }
        let by_domain: std::collections::BTreeMap<String, String> =
            domains(cx).await?.into_iter().map(|(id, d)| (d, id)).collect();
        let mut out = Vec::new();
        for pool in pools.iter().filter_map(|(_, p)| p.id()) {
            let mut pages = idp(cx).list_user_pool_clients().user_pool_id(pool).max_results(60).into_paginator().send();
            let mut ids = Vec::new();
            while let Some(page) = pages.next().await {
                ids.extend(
                    page.map_err(|e| err("ListUserPoolClients", e))?
                        .user_pool_clients()
                        .iter()
                        .filter_map(|c| c.client_id().map(str::to_owned)),
                );
            }
            for id in ids {
                let c = match idp(cx)
                    .describe_user_pool_client()
                    .user_pool_id(pool)
                    .client_id(&id)
                    .send()
                    .await
                    .map_err(|e| err("DescribeUserPoolClient", e))
                {
                    Err(e) if e.is_not_found() => continue,
                    other => other?,
                };
                let Some(c) = c.user_pool_client() else { continue };
                let Some(name) = c.client_name() else { continue };
                let (address, attrs) = (format!("{}.{name}", KIND.name), attrs_of(c, &by_domain));
                out.push(Found { id, address, attrs, outputs: () });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = address.name();
        let (callbacks, logouts) = urls(cx, w).await?;
        let made = settings!(
            idp(cx).create_user_pool_client().user_pool_id(&w.pool).generate_secret(false),
            name,
            &w,
            callbacks,
            logouts
        )
        .send()
        .await
        .map_err(|e| err("CreateUserPoolClient", e))?;
        made.user_pool_client()
            .and_then(|c| c.client_id())
            .map(str::to_owned)
            .ok_or_else(|| OpError::fatal("CreateUserPoolClient", "no client id"))
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, w: &Attrs) -> Result<(), OpError> {
        let pool = if w.pool.is_empty() { known(have)?.pool.clone() } else { w.pool.clone() };
        let c = idp(cx)
            .describe_user_pool_client()
            .user_pool_id(&pool)
            .client_id(id)
            .send()
            .await
            .map_err(|e| err("DescribeUserPoolClient", e))?;
        let name = c.user_pool_client().and_then(|c| c.client_name()).unwrap_or(id).to_owned();
        let (callbacks, logouts) = urls(cx, w).await?;
        settings!(idp(cx).update_user_pool_client().user_pool_id(&pool).client_id(id), &name, &w, callbacks, logouts)
            .send()
            .await
            .map_err(|e| err("UpdateUserPoolClient", e))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        let pool = &known(have)?.pool;
        gone_ok(
            idp(cx)
                .delete_user_pool_client()
                .user_pool_id(pool)
                .client_id(id)
                .send()
                .await
                .map_err(|e| err("DeleteUserPoolClient", e)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::encode;
    use serde_json::json;

    #[test]
    fn urls_on_a_distribution_read_back_as_its_site() {
        let c = UserPoolClientType::builder()
            .user_pool_id("p")
            .callback_urls("https://d1.cloudfront.net/callback")
            .callback_urls("http://localhost:3000/cb")
            .logout_urls("https://d1.cloudfront.net/")
            .allowed_o_auth_scopes("openid")
            .id_token_validity(60)
            .refresh_token_validity(30)
            .build();
        let by_domain = std::collections::BTreeMap::from([("d1.cloudfront.net".to_owned(), "E1".to_owned())]);
        let v = encode(&attrs_of(&c, &by_domain));
        assert_eq!(v["sites"], json!([{ "distribution": "E1", "callback": "/callback", "signout": "/" }]));
        assert_eq!(v["callback_urls"], json!(["http://localhost:3000/cb"]));
        assert_eq!(v["logout_urls"], json!([]));
    }
}
