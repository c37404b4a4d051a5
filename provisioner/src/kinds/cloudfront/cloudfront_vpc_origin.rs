//! `cloudfront_vpc_origin`: CloudFront's way into a VPC (November 2024): network interfaces in
//! the load balancer's subnets through which a distribution reaches an internal load balancer,
//! so the balancer needs no public address and nothing reaches it around CloudFront. Named
//! `<stack>-<name>`, tagged at birth; found by listing the account's VPC origins and reading the
//! tags of those carrying the stack's name. A create or update waits until AWS reports it
//! `Deployed` (minutes); a delete, once no distribution uses it, until it is gone.

use super::{cloudfront, err, etag, name_of};
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed, ID_TAG, STACK_TAG};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_cloudfront::types::{OriginProtocolPolicy, VpcOriginEndpointConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

// VPC origins cost nothing of their own (AWS bills the distribution's traffic).
pub static KIND: Kind = Kind::new(
    "cloudfront_vpc_origin",
    "CloudFront's private way to an internal load balancer in the stack's VPC (a distribution's `vpc_origin`).",
    &VpcOrigin,
)
.fields(&[
    Field::required(
        "load_balancer",
        FieldType::Ref(&["load_balancer"]),
        Update::InPlace,
        "The (internal) load balancer CloudFront reaches.",
    ),
    Field::optional(
        "http_port",
        FieldType::Int { min: 1, max: 65535 },
        Some("80"),
        Update::InPlace,
        "Its HTTP listener's port.",
    ),
    Field::optional(
        "https_port",
        FieldType::Int { min: 1, max: 65535 },
        Some("443"),
        Update::InPlace,
        "Its HTTPS listener's port.",
    ),
    Field::optional(
        "protocol",
        FieldType::Enum(&["http-only", "https-only", "match-viewer"]),
        Some("\"http-only\""),
        Update::InPlace,
        "How CloudFront talks to it: inside AWS's network, HTTP needs no certificate on the balancer.",
    ),
    TAGS,
])
.outputs(&[("id", "The VPC origin's id"), ("arn", "The VPC origin's ARN")]);

/// How long AWS may take to deploy or remove a VPC origin (terraform-provider-aws waits 15
/// minutes for each).
const SETTLE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    load_balancer: String,
    http_port: Option<i64>,
    https_port: Option<i64>,
    protocol: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn config(name: &str, w: &Attrs) -> Result<VpcOriginEndpointConfig, OpError> {
    let port = |p: Option<i64>, d: i32| p.and_then(|p| i32::try_from(p).ok()).unwrap_or(d);
    VpcOriginEndpointConfig::builder()
        .name(name)
        .arn(&w.load_balancer)
        .http_port(port(w.http_port, 80))
        .https_port(port(w.https_port, 443))
        .origin_protocol_policy(OriginProtocolPolicy::from(w.protocol.as_deref().unwrap_or("http-only")))
        .build()
        .map_err(|e| OpError::fatal("VpcOriginEndpointConfig", e.to_string()))
}

fn attrs_of(c: &VpcOriginEndpointConfig, tags: &BTreeMap<String, String>) -> Attrs {
    Attrs {
        load_balancer: c.arn().to_owned(),
        http_port: Some(i64::from(c.http_port())),
        https_port: Some(i64::from(c.https_port())),
        protocol: Some(c.origin_protocol_policy().as_str().to_owned()),
        tags: tags.clone(),
    }
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
}

/// Waits until the VPC origin is `Deployed` (`gone`: until it no longer exists).
async fn settled(cx: &Cx, id: &str, gone: bool) -> Result<(), OpError> {
    let started = Instant::now();
    loop {
        let status = match cloudfront(cx).get_vpc_origin().id(id).send().await.map_err(|e| err("GetVpcOrigin", e)) {
            Err(e) if gone && e.is_not_found() => return Ok(()),
            other => other?.vpc_origin().map(|o| o.status().to_owned()).unwrap_or_default(),
        };
        if !gone && status == "Deployed" {
            return Ok(());
        }
        if started.elapsed() > SETTLE {
            return Err(OpError::retryable("wait VpcOriginDeployed", format!("{id} still {status} after {SETTLE:?}")));
        }
        tokio::time::sleep(Duration::from_secs(if cx.endpoint_url().is_some() { 1 } else { 10 })).await;
    }
}

struct VpcOrigin;

#[async_trait]
impl Typed for VpcOrigin {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        if cx.region != cx.home {
            return Ok(Vec::new());
        }
        let prefix = format!("{}-", cx.stack);
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = cloudfront(cx)
                .list_vpc_origins()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| err("ListVpcOrigins", e))?;
            let Some(list) = page.vpc_origin_list() else { break };
            // Names are the stack's `<stack>-<name>`: only those have their tags read (another
            // stack whose name starts alike is told apart by its stack tag).
            for s in list.items().iter().filter(|s| s.name().starts_with(&prefix)) {
                let tags = super::tags_of(cx, s.arn()).await?;
                if tags.get(STACK_TAG) != Some(&cx.stack) {
                    continue;
                }
                let Some(address) = tags.get(ID_TAG).cloned() else { continue };
                let got =
                    match cloudfront(cx).get_vpc_origin().id(s.id()).send().await.map_err(|e| err("GetVpcOrigin", e)) {
                        Err(e) if e.is_not_found() => continue,
                        other => other?,
                    };
                let Some(c) = got.vpc_origin().and_then(|o| o.vpc_origin_endpoint_config()) else { continue };
                let outputs = Outputs { arn: s.arn().to_owned() };
                out.push(Found { id: s.id().to_owned(), address, attrs: attrs_of(c, &tags), outputs });
            }
            match list.next_marker() {
                Some(m) if list.is_truncated() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let made = cloudfront(cx)
            .create_vpc_origin()
            .vpc_origin_endpoint_config(config(&name_of(cx, &address.to_string()), w)?)
            .tags(super::tags(&w.tags)?)
            .send()
            .await
            .map_err(|e| err("CreateVpcOrigin", e))?;
        let id =
            made.vpc_origin().map(|o| o.id().to_owned()).ok_or_else(|| OpError::fatal("CreateVpcOrigin", "no id"))?;
        settled(cx, &id, false).await?;
        Ok(id)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let got = cloudfront(cx).get_vpc_origin().id(id).send().await.map_err(|e| err("GetVpcOrigin", e))?;
        let o = got.vpc_origin().ok_or_else(|| OpError::fatal("GetVpcOrigin", format!("{id}: no VPC origin")))?;
        let name = o.vpc_origin_endpoint_config().map(|c| c.name().to_owned()).unwrap_or_default();
        let next = config(&name, w)?;
        if o.vpc_origin_endpoint_config().map(|c| attrs_of(c, &w.tags)) != Some(attrs_of(&next, &w.tags)) {
            cloudfront(cx)
                .update_vpc_origin()
                .id(id)
                .if_match(etag("GetVpcOrigin", got.e_tag())?)
                .vpc_origin_endpoint_config(next)
                .send()
                .await
                .map_err(|e| err("UpdateVpcOrigin", e))?;
        }
        if h.tags != w.tags {
            super::retag(cx, o.arn(), &h.tags, &w.tags).await?;
        }
        settled(cx, id, false).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _have: Option<&Attrs>) -> Result<(), OpError> {
        let got = match cloudfront(cx).get_vpc_origin().id(id).send().await.map_err(|e| err("GetVpcOrigin", e)) {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        gone_ok(
            cloudfront(cx)
                .delete_vpc_origin()
                .id(id)
                .if_match(etag("GetVpcOrigin", got.e_tag())?)
                .send()
                .await
                .map_err(|e| err("DeleteVpcOrigin", e))
                .map(|_| ()),
        )?;
        settled(cx, id, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{decode, encode};
    use serde_json::json;

    /// What is written is what is read back: a plan after an apply is empty.
    #[test]
    fn the_configuration_reads_back_as_declared() {
        let want = json!({
            "load_balancer": "arn:aws:elasticloadbalancing:eu-central-1:123456789012:loadbalancer/app/p-web/1",
            "http_port": 80, "https_port": 443, "protocol": "http-only", "tags": {"a": "b"},
        });
        let c = config("p-web", &decode::<Attrs>(&want).unwrap()).unwrap();
        assert_eq!(encode(&attrs_of(&c, &BTreeMap::from([("a".into(), "b".into())]))), want);
    }
}
