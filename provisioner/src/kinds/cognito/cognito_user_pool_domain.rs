//! `cognito_user_pool_domain`: the pool's hosted sign-in pages at
//! `https://<stack>-<name>.auth.<region>.amazoncognito.com` (the prefix is unique across AWS).
//! A domain has no tags: it is the stack's when it is the domain of one of the stack's pools.

use super::{err, idp, pools};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub static KIND: Kind = Kind::new(
    "cognito_user_pool_domain",
    "A user pool's hosted sign-in domain, <stack>-<name>.auth.<region>.amazoncognito.com.",
    &Domain,
)
.fields(&[Field::required("pool", FieldType::Ref(&["cognito_user_pool"]), Update::Replace, "The pool.")])
.outputs(&[("id", "The domain prefix"), ("url", "https://<prefix>.auth.<region>.amazoncognito.com")])
.check(check)
.global_name();

/// The domain prefix of a resource: lowercase, `_` as `-`.
fn prefix(stack: &str, name: &str) -> String {
    format!("{stack}-{name}").to_ascii_lowercase().replace('_', "-")
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    // Read back, the prefix's `-` become `_`: a name with `-` could not be found again.
    if r.name.contains('-') {
        d.error(
            "bad-domain-name",
            r.span.clone(),
            format!("{}: use `_` instead of `-` in its name", r.address()),
            None,
        );
    }
    let p = prefix(&stack.name, &r.name);
    let reserved = ["aws", "amazon", "cognito"].iter().find(|w| p.contains(*w));
    if p.len() > 63 - crate::kinds::account::SUFFIX_LEN
        || !p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || reserved.is_some()
    {
        d.error(
            "bad-domain-prefix",
            r.span.clone(),
            format!("{}: its domain prefix `{p}` is not allowed", r.address()),
            Some("Cognito takes up to 63 lowercase letters, digits and `-` (7 go to the account's suffix), without the words aws, amazon or cognito: rename the resource".into()),
        );
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    pool: String,
}

#[derive(Default, Serialize)]
struct Outputs {
    url: String,
}

struct Domain;

/// Waits until the domain serves its hosted UI: AWS answers CREATING for up to some minutes
/// (as the AWS provider's `waitUserPoolDomainCreated` waits), and a login before then fails.
async fn active(cx: &Cx, domain: &str) -> Result<(), OpError> {
    let started = std::time::Instant::now();
    loop {
        let d = idp(cx)
            .describe_user_pool_domain()
            .domain(domain)
            .send()
            .await
            .map_err(|e| err("DescribeUserPoolDomain", e))?;
        let status = d.domain_description().and_then(|d| d.status()).map(|s| s.as_str().to_owned());
        // moto answers no status at all: nothing to wait for.
        match status.as_deref() {
            None | Some("ACTIVE") => return Ok(()),
            Some("FAILED") => {
                return Err(OpError::fatal("DescribeUserPoolDomain", format!("{domain}: AWS failed to make it")))
            }
            _ if started.elapsed() > std::time::Duration::from_secs(20 * 60) => {
                return Err(OpError::retryable("wait UserPoolDomainActive", format!("{domain}: still {status:?}")))
            }
            _ => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
        }
    }
}

#[async_trait]
impl Typed for Domain {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let own = prefix(&cx.stack, "");
        let mut out = Vec::new();
        for (_, pool) in pools(cx).await? {
            let (Some(id), Some(domain)) = (pool.id(), pool.domain()) else { continue };
            let Some(name) = domain.strip_prefix(&own) else { continue };
            // Asked for with the account's suffix (domain prefixes are global across AWS); one
            // made before there was a suffix has none.
            let suffix = format!("-{}", crate::kinds::account::global_suffix(cx).await?);
            let name = name.strip_suffix(&suffix).unwrap_or(name);
            let url = format!("https://{domain}.auth.{}.amazoncognito.com", cx.region);
            out.push(Found {
                id: domain.to_owned(),
                address: format!("{}.{}", KIND.name, name.replace('-', "_")),
                attrs: Attrs { pool: id.to_owned() },
                outputs: Outputs { url },
            });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let stem = prefix(&cx.stack, address.name());
        let domain = crate::kinds::account::global(&stem, &crate::kinds::account::global_suffix(cx).await?);
        idp(cx)
            .create_user_pool_domain()
            .domain(&domain)
            .user_pool_id(&w.pool)
            .send()
            .await
            .map_err(|e| err("CreateUserPoolDomain", e))?;
        cx.born(&domain, w);
        active(cx, &domain).await?;
        Ok(domain)
    }

    async fn update(&self, cx: &Cx, id: &str, _have: Option<&Attrs>, _want: &Attrs) -> Result<(), OpError> {
        // Its one field forces a replacement; a create that failed waiting resumes here.
        active(cx, id).await
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        let pool = &known(have)?.pool;
        gone_ok(
            idp(cx)
                .delete_user_pool_domain()
                .domain(id)
                .user_pool_id(pool)
                .send()
                .await
                .map_err(|e| err("DeleteUserPoolDomain", e)),
        )
    }
}
