//! `cloudfront_distribution`: a CDN in front of one origin (a private S3 bucket read through an
//! origin access control), HTTPS only, HTTP/2 and HTTP/3, with Lambda@Edge functions on
//! viewer-request and origin-response and an optional CloudFront-scope WAF ACL. Distributions
//! cannot be listed by tag: the stack's carry their address in their comment, which the list
//! returns. A delete disables the distribution, waits until that is deployed, then deletes it.

use super::{cloudfront, distributions, err, etag};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{address_in, known, marker, null_as_empty, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_cloudfront::client::Waiters;
use aws_sdk_cloudfront::types::{
    Aliases, AllowedMethods, CacheBehavior, CacheBehaviors, CachedMethods, DefaultCacheBehavior, DistributionConfig,
    DistributionConfigWithTags, EventType, HttpVersion, LambdaFunctionAssociation, LambdaFunctionAssociations, Method,
    MinimumProtocolVersion, Origin, Origins, PriceClass, S3OriginConfig, SslSupportMethod, ViewerCertificate,
    ViewerProtocolPolicy, VpcOriginConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// AWS's managed cache policy "CachingOptimized": long TTLs, but what the origin says in
/// `Cache-Control` wins (the site's index asks for a short one), compressed keys.
const CACHING_OPTIMIZED: &str = "658327ea-f89d-4fab-a63d-7e88639e58f6";

/// The one origin's id inside the distribution.
const ORIGIN_ID: &str = "origin";

/// How long a change may take to reach every edge location before the apply reports it.
const DEPLOY_WAIT: Duration = Duration::from_secs(40 * 60);

/// A cache behaviour for a path pattern (same origin, HTTPS only, GET and HEAD).
static BEHAVIOR: [Field; 3] = [
    Field::required("path", FieldType::String, Update::InPlace, "Path pattern, e.g. \"/api/stream\"."),
    Field::required(
        "cache_policy",
        FieldType::String,
        Update::InPlace,
        "Cache policy id (AWS's CachingDisabled: 4135ea2d-6df8-44a3-9df3-4b5a84be39ad).",
    ),
    Field::optional("origin_request_policy", FieldType::String, None, Update::InPlace, "Origin request policy id."),
];

pub static KIND: Kind = Kind::new("cloudfront_distribution", "A CloudFront distribution in front of one origin (a private S3 bucket through origin access control): HTTPS only, Lambda@Edge login and headers, optional WAF.", &Distribution)
.fields(&[
        Field::required(
            "origin_domain",
            FieldType::String,
            Update::InPlace,
            "The origin's host name: a bucket's \"${s3_bucket.NAME.regional_domain}\".",
        ),
        Field::optional(
            "vpc_origin",
            FieldType::Ref(&["cloudfront_vpc_origin"]),
            None,
            Update::InPlace,
            "The origin is an internal load balancer reached through this VPC origin; `origin_domain` is then its DNS name.",
        ),
        Field::optional(
            "origin_read_timeout",
            FieldType::Int { min: 1, max: 120 },
            Some("30"),
            Update::InPlace,
            "Seconds CloudFront waits for a VPC origin's next bytes (a live stream's keep-alive comments must come sooner).",
        ),
        Field::optional(
            "origin_access_control",
            FieldType::Ref(&["cloudfront_origin_access_control"]),
            None,
            Update::InPlace,
            "How requests to the (S3) origin are signed; without it the origin must be public.",
        ),
        Field::optional("default_root_object", FieldType::String, Some("\"index.html\""), Update::InPlace, "What `/` serves."),
        Field::optional(
            "price_class",
            FieldType::Enum(&["PriceClass_100", "PriceClass_200", "PriceClass_All"]),
            Some("\"PriceClass_100\""),
            Update::InPlace,
            "Edge locations used: 100 (North America, Europe, Israel) is the cheapest.",
        ),
        Field::optional(
            "http_version",
            FieldType::Enum(&["http2and3", "http2", "http3", "http1.1"]),
            Some("\"http2and3\""),
            Update::InPlace,
            "Highest HTTP version offered to viewers.",
        ),
        Field::optional("ipv6", FieldType::Bool, Some("true"), Update::InPlace, "Answer on IPv6 too."),
        Field::optional(
            "aliases",
            FieldType::List(&FieldType::String),
            None,
            Update::InPlace,
            "Own domain names (each needs `certificate` to cover it).",
        ),
        Field::optional(
            "certificate",
            FieldType::String,
            None,
            Update::InPlace,
            "ACM certificate ARN (us-east-1) for `aliases`; without one the *.cloudfront.net certificate is used, whose TLS floor AWS fixes.",
        ),
        Field::optional(
            "minimum_tls",
            FieldType::Enum(&["TLSv1.2_2021", "TLSv1.2_2025", "TLSv1.3_2025"]),
            Some("\"TLSv1.2_2021\""),
            Update::InPlace,
            "Oldest TLS viewers may use, with `certificate`.",
        ),
        Field::optional(
            "cache_policy",
            FieldType::String,
            Some("\"658327ea-f89d-4fab-a63d-7e88639e58f6\""),
            Update::InPlace,
            "Cache policy id (default: AWS's CachingOptimized, which honours the origin's Cache-Control).",
        ),
        Field::optional(
            "origin_request_policy",
            FieldType::String,
            None,
            Update::InPlace,
            "Origin request policy id of the default behaviour: what CloudFront forwards besides the cache key (e.g. AWS's AllViewerAndCloudFrontHeaders-2022-06, which carries CloudFront-Viewer-Address).",
        ),
        Field::optional(
            "behaviors",
            FieldType::List(&FieldType::Table(&BEHAVIOR)),
            Some("[]"),
            Update::InPlace,
            "Paths answered otherwise than the default, first match first (e.g. a live stream that is never cached).",
        ),
        Field::optional(
            "traffic",
            FieldType::Enum(&["cdn", "web"]),
            Some("\"cdn\""),
            Update::Setting,
            "Which [usage] figures price it: cdn (cdn_requests, cdn_data_gb) or web (web_requests, web_gb_out: the map's traffic).",
        ),
        Field::optional(
            "viewer_request",
            FieldType::String,
            None,
            Update::InPlace,
            "Published Lambda@Edge version ARN run on every viewer request (\"${lambda_function.NAME.version_arn}\").",
        ),
        Field::optional(
            "origin_response",
            FieldType::String,
            None,
            Update::InPlace,
            "Published Lambda@Edge version ARN run on every origin response (headers of what is cached).",
        ),
        Field::optional(
            "web_acl",
            FieldType::Ref(&["waf_web_acl"]),
            None,
            Update::InPlace,
            "A WAF ACL of CLOUDFRONT scope (in us-east-1).",
        )
        .security(Security::Guard(crate::schema::removed)),
        TAGS,
    ])
.outputs(&[
        ("id", "The distribution's id"),
        ("arn", "The distribution's ARN (what a bucket policy grants)"),
        ("domain_name", "dxxxx.cloudfront.net"),
        ("url", "https://<domain_name>/"),
    ])
.check(check)
.cost(cost, &[crate::cost::CDN_REQUESTS, CDN_DATA_GB, crate::cost::WEB_REQUESTS, crate::cost::WEB_GB_OUT]);

const CDN_DATA_GB: crate::cost::UsageKey =
    crate::cost::UsageKey { name: "cdn_data_gb", unit: "GB a month", doc: "data CloudFront sends to viewers" };

/// Requests and data out, and the edge functions' requests and time (128 MB, about 5 ms each on
/// viewer-request; origin-response runs only on cache misses, counted as the S3 GETs).
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::{parts::millions, Part, CDN_REQUESTS, WEB_GB_OUT, WEB_REQUESTS};
    let Some(a) = cx.attrs::<Attrs>() else { return Vec::new() };
    let (requests, gb) = if a.traffic.as_deref() == Some("web") {
        (cx.usage(&WEB_REQUESTS), cx.usage(&WEB_GB_OUT))
    } else {
        (cx.usage(&CDN_REQUESTS), cx.usage(&CDN_DATA_GB))
    };
    let mut parts = vec![
        Part::new("HTTPS requests", "cloudfront.requests", millions(requests)),
        Part::new("data out", "cloudfront.data_out", gb),
    ];
    if a.viewer_request.is_some() {
        parts.push(Part::new("Lambda@Edge viewer-request calls", "lambda_edge.requests", millions(requests)));
        // Billed by the millisecond at the function's memory: 5 ms at 128 MB.
        parts.push(Part::new("Lambda@Edge viewer-request time", "lambda_edge.duration", requests * 0.005 * 0.125));
    }
    parts
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    for field in ["viewer_request", "origin_response"] {
        let Some((arn, span)) = r.str(field) else { continue };
        // A reference is checked once it is known; a literal must name a published version.
        if arn.contains("${") {
            continue;
        }
        let versioned = arn.rsplit(':').next().is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()));
        if !arn.starts_with("arn:aws:lambda:us-east-1:") || !versioned {
            d.error(
                "edge-function-version",
                span,
                format!("{}.{field} must be a published version of a function in us-east-1", r.address()),
                Some("refer to it as \"${lambda_function.NAME.version_arn}\"".into()),
            );
        }
    }
    if let Some((acl, span)) = r.str("web_acl") {
        if let Some(a) = stack.get(acl) {
            if a.str("scope").map(|(s, _)| s) != Some("CLOUDFRONT") {
                d.error(
                    "web-acl-scope",
                    span,
                    format!("{} is of REGIONAL scope; a distribution takes only CLOUDFRONT-scope ACLs", a.address()),
                    Some(format!("set scope = \"CLOUDFRONT\" and region = \"us-east-1\" on {}", a.address())),
                );
            }
        }
    }
    let has_aliases = matches!(r.fields.get("aliases"), Some((Val::List(l), _)) if !l.is_empty());
    if has_aliases && !r.fields.contains_key("certificate") {
        d.error(
            "aliases-without-certificate",
            r.span.clone(),
            format!("{} has aliases but no certificate to serve them with", r.address()),
            Some("add certificate = \"arn:aws:acm:us-east-1:...\" covering every alias".into()),
        );
    }
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    origin_domain: String,
    vpc_origin: Option<String>,
    origin_read_timeout: Option<i64>,
    origin_access_control: Option<String>,
    default_root_object: Option<String>,
    price_class: Option<String>,
    http_version: Option<String>,
    ipv6: Option<bool>,
    #[serde(default, deserialize_with = "null_as_empty")]
    aliases: Vec<String>,
    certificate: Option<String>,
    minimum_tls: Option<String>,
    cache_policy: Option<String>,
    origin_request_policy: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    behaviors: Vec<Behavior>,
    /// Read by the cost function from the declaration; nothing AWS holds.
    traffic: Option<String>,
    viewer_request: Option<String>,
    origin_response: Option<String>,
    web_acl: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Behavior {
    path: String,
    cache_policy: String,
    origin_request_policy: Option<String>,
}

fn fatal(what: &str) -> impl Fn(aws_sdk_cloudfront::error::BuildError) -> OpError + '_ {
    move |e| OpError::fatal(what, e.to_string())
}

/// The whole configuration CloudFront keeps for `w` (an update replaces all of it).
fn config(
    cx: &Cx,
    address: &str,
    caller_reference: &str,
    w: &Attrs,
    enabled: bool,
) -> Result<DistributionConfig, OpError> {
    let origin = Origin::builder().id(ORIGIN_ID).domain_name(&w.origin_domain);
    let origin = match &w.vpc_origin {
        Some(id) => origin.vpc_origin_config(
            VpcOriginConfig::builder()
                .vpc_origin_id(id)
                .origin_read_timeout(w.origin_read_timeout.and_then(|t| i32::try_from(t).ok()).unwrap_or(30))
                .build()
                .map_err(fatal("VpcOriginConfig"))?,
        ),
        // With origin access control the S3 origin has no identity of the old kind: empty.
        None => origin
            .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
            .set_origin_access_control_id(w.origin_access_control.clone()),
    };
    let origin = origin.build().map_err(fatal("Origin"))?;
    let edge: Vec<LambdaFunctionAssociation> =
        [(EventType::ViewerRequest, &w.viewer_request), (EventType::OriginResponse, &w.origin_response)]
            .into_iter()
            .filter_map(|(t, arn)| arn.as_ref().map(|a| (t, a)))
            .map(|(t, arn)| {
                LambdaFunctionAssociation::builder().event_type(t).lambda_function_arn(arn).include_body(false).build()
            })
            .collect::<Result<_, _>>()
            .map_err(fatal("LambdaFunctionAssociation"))?;
    let read_only = || -> Result<AllowedMethods, OpError> {
        let methods = vec![Method::Get, Method::Head];
        AllowedMethods::builder()
            .quantity(2)
            .set_items(Some(methods.clone()))
            .cached_methods(
                CachedMethods::builder()
                    .quantity(2)
                    .set_items(Some(methods))
                    .build()
                    .map_err(fatal("CachedMethods"))?,
            )
            .build()
            .map_err(fatal("AllowedMethods"))
    };
    let behaviors = w
        .behaviors
        .iter()
        .map(|b| {
            CacheBehavior::builder()
                .path_pattern(&b.path)
                .target_origin_id(ORIGIN_ID)
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .cache_policy_id(&b.cache_policy)
                .set_origin_request_policy_id(b.origin_request_policy.clone())
                // What a behaviour answers (a live stream) is passed on as it comes: CloudFront
                // does not hold it back to compress it (the origin compresses what it should).
                .compress(false)
                .allowed_methods(read_only()?)
                .build()
                .map_err(fatal("CacheBehavior"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let behavior = DefaultCacheBehavior::builder()
        .target_origin_id(ORIGIN_ID)
        .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
        .cache_policy_id(w.cache_policy.as_deref().unwrap_or(CACHING_OPTIMIZED))
        .set_origin_request_policy_id(w.origin_request_policy.clone())
        .compress(true)
        .allowed_methods(read_only()?)
        .lambda_function_associations(
            LambdaFunctionAssociations::builder()
                .quantity(edge.len() as i32)
                .set_items(Some(edge))
                .build()
                .map_err(fatal("LambdaFunctionAssociations"))?,
        )
        .build()
        .map_err(fatal("DefaultCacheBehavior"))?;
    let certificate = match &w.certificate {
        Some(arn) => ViewerCertificate::builder()
            .acm_certificate_arn(arn)
            .ssl_support_method(SslSupportMethod::SniOnly)
            .minimum_protocol_version(MinimumProtocolVersion::from(w.minimum_tls.as_deref().unwrap_or("TLSv1.2_2021")))
            .build(),
        None => ViewerCertificate::builder().cloud_front_default_certificate(true).build(),
    };
    DistributionConfig::builder()
        .caller_reference(caller_reference)
        .comment(marker(cx, address))
        .enabled(enabled)
        .origins(Origins::builder().quantity(1).items(origin).build().map_err(fatal("Origins"))?)
        .default_cache_behavior(behavior)
        .cache_behaviors(
            CacheBehaviors::builder()
                .quantity(behaviors.len() as i32)
                .set_items(Some(behaviors))
                .build()
                .map_err(fatal("CacheBehaviors"))?,
        )
        .default_root_object(w.default_root_object.as_deref().unwrap_or("index.html"))
        .price_class(PriceClass::from(w.price_class.as_deref().unwrap_or("PriceClass_100")))
        .http_version(HttpVersion::from(w.http_version.as_deref().unwrap_or("http2and3")))
        .is_ipv6_enabled(w.ipv6.unwrap_or(true))
        .aliases(
            Aliases::builder()
                .quantity(w.aliases.len() as i32)
                .set_items(Some(w.aliases.clone()))
                .build()
                .map_err(fatal("Aliases"))?,
        )
        .viewer_certificate(certificate)
        .web_acl_id(w.web_acl.clone().unwrap_or_default())
        .build()
        .map_err(fatal("DistributionConfig"))
}

/// The declared attributes of a configuration CloudFront returned.
fn attrs_of(c: &DistributionConfig, tags: &BTreeMap<String, String>) -> Attrs {
    let origin = c.origins().and_then(|o| o.items().first());
    let behavior = c.default_cache_behavior();
    let edge = |t: EventType| {
        behavior
            .and_then(|b| b.lambda_function_associations())
            .and_then(|l| l.items().iter().find(|a| a.event_type() == &t))
            .map(|a| a.lambda_function_arn().to_owned())
    };
    let cert = c.viewer_certificate();
    let own_cert = cert.and_then(|v| v.acm_certificate_arn()).filter(|a| !a.is_empty());
    let vpc = origin.and_then(|o| o.vpc_origin_config());
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let some = |s: Option<&str>| owned(s.filter(|s| !s.is_empty()));
    let behaviors = c
        .cache_behaviors()
        .map(|b| b.items())
        .unwrap_or_default()
        .iter()
        .map(|b| Behavior {
            path: b.path_pattern().to_owned(),
            cache_policy: b.cache_policy_id().unwrap_or_default().to_owned(),
            origin_request_policy: some(b.origin_request_policy_id()),
        })
        .collect();
    // The TLS floor is this kind's to set only with an own certificate.
    let minimum_tls = match own_cert {
        Some(_) => cert.and_then(|v| v.minimum_protocol_version()).map(|m| m.as_str().to_owned()),
        None => Some("TLSv1.2_2021".to_owned()),
    };
    Attrs {
        origin_domain: origin.map(|o| o.domain_name()).unwrap_or_default().to_owned(),
        vpc_origin: vpc.map(|v| v.vpc_origin_id().to_owned()),
        // Only a VPC origin has it; an S3 origin reads as the declared default.
        origin_read_timeout: Some(i64::from(vpc.and_then(|v| v.origin_read_timeout()).unwrap_or(30))),
        origin_access_control: some(origin.and_then(|o| o.origin_access_control_id())),
        default_root_object: owned(c.default_root_object()),
        price_class: owned(c.price_class().map(|p| p.as_str())),
        http_version: owned(c.http_version().map(|h| h.as_str())),
        ipv6: c.is_ipv6_enabled(),
        aliases: c.aliases().map(|a| a.items().to_vec()).unwrap_or_default(),
        certificate: owned(own_cert),
        minimum_tls,
        cache_policy: owned(behavior.and_then(|b| b.cache_policy_id())),
        origin_request_policy: some(behavior.and_then(|b| b.origin_request_policy_id())),
        behaviors,
        traffic: None,
        viewer_request: edge(EventType::ViewerRequest),
        origin_response: edge(EventType::OriginResponse),
        web_acl: some(c.web_acl_id()),
        tags: tags.clone(),
    }
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
    domain_name: String,
    url: String,
}

/// Waits until CloudFront reports the last change deployed to every edge location.
async fn deployed(cx: &Cx, id: &str) -> Result<(), OpError> {
    cloudfront(cx)
        .wait_until_distribution_deployed()
        .id(id)
        .wait(DEPLOY_WAIT)
        .await
        .map_err(|e| OpError::retryable("wait DistributionDeployed", format!("{id}: {e}")))?;
    Ok(())
}

struct Distribution;

#[async_trait]
impl Typed for Distribution {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        if cx.region != cx.home {
            return Ok(Vec::new());
        }
        let ours: Vec<(String, String, String, String)> = distributions(cx)
            .await?
            .into_iter()
            .filter_map(|d| address_in(cx, &d.comment).map(|a| (d.id, d.arn, d.domain, a)))
            .collect();
        let mut out = Vec::new();
        for (id, arn, domain, address) in ours {
            let got = match cloudfront(cx)
                .get_distribution_config()
                .id(&id)
                .send()
                .await
                .map_err(|e| err("GetDistributionConfig", e))
            {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            };
            let Some(c) = got.distribution_config() else { continue };
            // A disabled distribution of the stack is one whose delete was interrupted: it is
            // found, so the next destroy finishes it, and its attributes read as they are.
            let attrs = attrs_of(c, &super::tags_of(cx, &arn).await?);
            out.push(Found {
                id,
                address,
                attrs,
                outputs: Outputs { url: format!("https://{domain}/"), arn, domain_name: domain },
            });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, token: &str) -> Result<String, OpError> {
        let with_tags = DistributionConfigWithTags::builder()
            .distribution_config(config(cx, &address.to_string(), token, w, true)?)
            .tags(super::tags(&w.tags)?)
            .build();
        let made = cloudfront(cx)
            .create_distribution_with_tags()
            .distribution_config_with_tags(with_tags)
            .send()
            .await
            .map_err(|e| err("CreateDistributionWithTags", e))?;
        let id = made
            .distribution()
            .map(|d| d.id().to_owned())
            .ok_or_else(|| OpError::fatal("CreateDistributionWithTags", "no id"))?;
        deployed(cx, &id).await?;
        Ok(id)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let got = cloudfront(cx).get_distribution().id(id).send().await.map_err(|e| err("GetDistribution", e))?;
        let d =
            got.distribution().ok_or_else(|| OpError::fatal("GetDistribution", format!("{id}: no distribution")))?;
        let current = d
            .distribution_config()
            .ok_or_else(|| OpError::fatal("GetDistribution", format!("{id}: no configuration")))?;
        let address = address_in(cx, current.comment())
            .ok_or_else(|| OpError::fatal("GetDistribution", format!("{id} is not this stack's")))?;
        let next = config(cx, &address, current.caller_reference(), w, true)?;
        if attrs_of(&next, &w.tags) != attrs_of(current, &w.tags) || !current.enabled() {
            cloudfront(cx)
                .update_distribution()
                .id(id)
                .if_match(etag("GetDistribution", got.e_tag())?)
                .distribution_config(next)
                .send()
                .await
                .map_err(|e| err("UpdateDistribution", e))?;
        }
        if h.tags != w.tags {
            super::retag(cx, d.arn(), &h.tags, &w.tags).await?;
        }
        deployed(cx, id).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _have: Option<&Attrs>) -> Result<(), OpError> {
        let got = match cloudfront(cx)
            .get_distribution_config()
            .id(id)
            .send()
            .await
            .map_err(|e| err("GetDistributionConfig", e))
        {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        let c = got
            .distribution_config()
            .ok_or_else(|| OpError::fatal("GetDistributionConfig", format!("{id}: no configuration")))?;
        let mut tag = etag("GetDistributionConfig", got.e_tag())?;
        if c.enabled() {
            // AWS deletes only a disabled distribution, and only once that is deployed. The
            // edge functions it ran are let go of here; AWS removes their replicas later.
            let mut off = c.clone();
            off.enabled = false;
            let r = cloudfront(cx)
                .update_distribution()
                .id(id)
                .if_match(tag)
                .distribution_config(off)
                .send()
                .await
                .map_err(|e| err("UpdateDistribution", e))?;
            tag = etag("UpdateDistribution", r.e_tag())?;
        }
        deployed(cx, id).await?;
        gone_ok(
            cloudfront(cx)
                .delete_distribution()
                .id(id)
                .if_match(tag)
                .send()
                .await
                .map_err(|e| err("DeleteDistribution", e)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::test_support::{close, of, priced};
    use crate::provider::{decode, encode};
    use serde_json::json;

    /// What is written is what is read back: a plan after an apply is empty.
    #[test]
    fn the_configuration_reads_back_as_declared() {
        let want = json!({
            "origin_domain": "b.s3.eu-central-1.amazonaws.com", "vpc_origin": null, "origin_read_timeout": 30,
            "origin_access_control": "E2OAC", "origin_request_policy": null, "behaviors": [],
            "default_root_object": "index.html", "price_class": "PriceClass_100", "http_version": "http2and3",
            "ipv6": true, "aliases": [], "certificate": null, "minimum_tls": "TLSv1.2_2021",
            "cache_policy": CACHING_OPTIMIZED,
            "viewer_request": "arn:aws:lambda:us-east-1:123456789012:function:f:3", "origin_response": null,
            "web_acl": null, "tags": {"a": "b"},
        });
        let cx = Cx::new(aws_config::SdkConfig::builder().build(), "t", "eu-central-1");
        let c = config(&cx, "cloudfront_distribution.site", "ref", &decode(&want).unwrap(), true).unwrap();
        let mut back = encode(&attrs_of(&c, &BTreeMap::from([("a".into(), "b".into())])));
        back["traffic"] = json!(null);
        let mut want = want;
        want["traffic"] = json!(null);
        assert_eq!(back, want);
        assert_eq!(address_in(&cx, c.comment()).as_deref(), Some("cloudfront_distribution.site"));
        // A VPC origin with a stream that is never cached.
        let map = json!({
            "origin_domain": "internal-p-web-1.eu-central-1.elb.amazonaws.com", "vpc_origin": "vo_1", "origin_read_timeout": 60,
            "origin_access_control": null, "default_root_object": "", "price_class": "PriceClass_100", "http_version": "http2and3",
            "ipv6": true, "aliases": [], "certificate": null, "minimum_tls": "TLSv1.2_2021",
            "cache_policy": "4cc15a8a-d715-48a4-82b8-cc0b614638fe", "origin_request_policy": "33f36d7e-f396-46d9-90e0-52428a34d9dc",
            "behaviors": [{"path": "/api/stream", "cache_policy": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad", "origin_request_policy": null}],
            "viewer_request": null, "origin_response": null, "web_acl": "arn:aws:wafv2:us-east-1:1:global/webacl/a/b", "tags": {},
        });
        let c = config(&cx, "cloudfront_distribution.map", "ref", &decode(&map).unwrap(), true).unwrap();
        assert_eq!(attrs_of(&c, &BTreeMap::new()), decode(&map).unwrap());
        assert!(c.origins().unwrap().items()[0].s3_origin_config().is_none(), "a VPC origin is no S3 origin");
    }

    #[test]
    fn literal_edge_functions_must_be_published_versions_in_us_east_1() {
        let src = |arn: &str| {
            format!("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[cloudfront_distribution.site]\norigin_domain = \"x\"\nviewer_request = \"{arn}\"\n")
        };
        let codes = |arn: &str| match crate::stack::parse(crate::kinds::all(), "t.toml", &src(arn), &BTreeMap::new()) {
            Ok(_) => vec![],
            Err(d) => d.items.iter().map(|i| i.code).collect::<Vec<_>>(),
        };
        assert_eq!(codes("arn:aws:lambda:us-east-1:1:function:f"), vec!["edge-function-version"], "unqualified");
        assert_eq!(codes("arn:aws:lambda:eu-west-1:1:function:f:2"), vec!["edge-function-version"], "region");
        assert!(codes("arn:aws:lambda:us-east-1:1:function:f:2").is_empty());
    }

    /// 5 M requests, 20 GB out: inside CloudFront's free tier; Lambda@Edge has none:
    /// 5 x $0.60 + 5e6 x 0.005 s x 0.125 GB x $0.00005001.
    #[test]
    fn requests_and_edge_calls() {
        let b = priced("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[cloudfront_distribution.site]\norigin_domain = \"x\"\nviewer_request = \"arn:aws:lambda:us-east-1:1:function:f:2\"\n[usage]\ncdn_requests = 5000000\ncdn_data_gb = 20\n");
        close(of(&b, "cloudfront_distribution.site").monthly, 5.0 * 0.60 + 5e6 * 0.005 * 0.125 * 0.00005001);
    }
}
