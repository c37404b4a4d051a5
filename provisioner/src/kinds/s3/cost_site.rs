//! `cost_site`: the FinOps dashboard of the stack it is part of, published into one of the
//! stack's buckets ([`crate::cost::site`]): priced when a command starts, so a plan shows when
//! the estimate (or the page) changed; each publish adds the estimate to the
//! bucket's `history.json`, uploads only the hashed assets not there yet, writes the index and
//! invalidates only `/index.html` and `/` at the distribution in front. The index carries the
//! stack's mark and the digest it was made from, which is what discovery reads.

use super::{delete_objects, err, owned, s3};
use crate::cost::site::{self, Estimate, Site, ASSET_CACHE, INDEX_CACHE};
use crate::cost::Breakdown;
use crate::error::OpError;
use crate::kinds::cloudfront::{cloudfront, err as cf_err};
use crate::provider::{null_as_empty, Address, Cx, Derive, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update};
use async_trait::async_trait;
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectIdentifier;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};

pub static KIND: Kind = Kind::new("cost_site", "The FinOps dashboard of a stack's cost, published into a bucket (hashed assets, short-cached index, history per apply), invalidating only the index.", &CostSite)
.fields(&[
        Field::required("bucket", FieldType::Ref(&["s3_bucket"]), Update::Replace, "The bucket it is published into."),
        Field::optional(
            "distribution",
            FieldType::Ref(&["cloudfront_distribution"]),
            None,
            Update::InPlace,
            "The distribution in front, whose cached index a publish invalidates.",
        ),
        Field::optional(
            "page",
            FieldType::String,
            Some("\"../assets/finops/site\""),
            Update::Setting,
            "The page: index.html and the files beside it, relative to this file.",
        ),
        Field::optional(
            "libraries",
            FieldType::List(&FieldType::String),
            Some("[\"../assets/finops/node_modules/chart.js/dist/chart.umd.min.js\"]"),
            Update::Setting,
            "Libraries the page loads, relative to this file.",
        ),
        Field::derived("content_sha256", FieldType::String, Update::InPlace, "Digest of the page and the estimate it shows."),
    ])
.outputs(&[("id", "The bucket's name"), ("monthly", "The estimate last published, USD a month")]);

/// The estimates a history keeps (the oldest leave first).
const HISTORY: usize = 500;
const INDEX: &str = "index.html";
const HISTORY_KEY: &str = "history.json";

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    bucket: String,
    distribution: Option<String>,
    page: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    libraries: Vec<String>,
    content_sha256: Option<String>,
}

/// What was built when the command started, by digest: the site, the breakdown, the stack.
type Built = (Site, Breakdown, String);
static BUILT: LazyLock<Mutex<BTreeMap<String, Arc<Built>>>> = LazyLock::new(Mutex::default);

/// S3 user metadata (lowercase keys) on the index.
const META_ADDRESS: &str = "provisioner-id";
const META_STACK: &str = "provisioner-stack";
const META_DIGEST: &str = "content-sha256";
const META_DISTRIBUTION: &str = "distribution";
const META_MONTHLY: &str = "monthly";

async fn history(cx: &Cx, bucket: &str) -> Result<Vec<Estimate>, OpError> {
    match s3(cx).get_object().bucket(bucket).key(HISTORY_KEY).send().await.map_err(|e| err("GetObject", e)) {
        Ok(o) => {
            let bytes =
                o.body.collect().await.map_err(|e| OpError::retryable("GetObject", e.to_string()))?.into_bytes();
            // A history that does not parse is started again rather than blocking the publish.
            Ok(serde_json::from_slice(&bytes).unwrap_or_default())
        }
        Err(e) if e.is_not_found() || e.has_code("NoSuchKey") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

async fn exists(cx: &Cx, bucket: &str, key: &str) -> Result<bool, OpError> {
    match s3(cx).head_object().bucket(bucket).key(key).send().await.map_err(|e| err("HeadObject", e)) {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() || e.has_code("NoSuchKey") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Publishes the site built for `w` and returns the bucket's name.
async fn publish(cx: &Cx, address: &str, w: &Attrs, token: &str) -> Result<String, OpError> {
    let digest = w.content_sha256.as_deref().unwrap_or_default();
    let built = BUILT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(digest)
        .cloned()
        .ok_or_else(|| OpError::fatal("publish", format!("{address}: its site was not built by this command")))?;
    let (site, breakdown, stack) = built.as_ref();
    for f in &site.assets {
        // Named by their content: one already there is this one.
        if !exists(cx, &w.bucket, &f.key).await? {
            s3(cx)
                .put_object()
                .bucket(&w.bucket)
                .key(&f.key)
                .body(ByteStream::from(f.body.clone()))
                .content_type(f.content_type)
                .cache_control(ASSET_CACHE)
                .send()
                .await
                .map_err(|e| err("PutObject", e))?;
        }
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut past = history(cx, &w.bucket).await?;
    past.push(Estimate::of(breakdown, &now));
    let keep = past.len().saturating_sub(HISTORY);
    past.drain(..keep);
    s3(cx)
        .put_object()
        .bucket(&w.bucket)
        .key(HISTORY_KEY)
        .body(ByteStream::from(serde_json::to_vec(&past).map_err(|e| OpError::fatal("history", e.to_string()))?))
        .content_type("application/json")
        .cache_control("no-cache")
        .send()
        .await
        .map_err(|e| err("PutObject", e))?;
    let index = site.index(&site::data(stack, breakdown, &past, &now));
    s3(cx)
        .put_object()
        .bucket(&w.bucket)
        .key(INDEX)
        .body(ByteStream::from(index))
        .content_type("text/html; charset=utf-8")
        .cache_control(INDEX_CACHE)
        .metadata(META_ADDRESS, address)
        .metadata(META_STACK, &cx.stack)
        .metadata(META_DIGEST, digest)
        .metadata(META_DISTRIBUTION, w.distribution.as_deref().unwrap_or_default())
        .metadata(META_MONTHLY, format!("{:.2}", breakdown.monthly))
        .send()
        .await
        .map_err(|e| err("PutObject", e))?;
    if let Some(dist) = &w.distribution {
        let paths = Paths::builder()
            .quantity(2)
            .items("/index.html")
            .items("/")
            .build()
            .map_err(|e| OpError::fatal("Paths", e.to_string()))?;
        let batch = InvalidationBatch::builder()
            .paths(paths)
            .caller_reference(format!("{token}-{digest}"))
            .build()
            .map_err(|e| OpError::fatal("InvalidationBatch", e.to_string()))?;
        cloudfront(cx)
            .create_invalidation()
            .distribution_id(dist)
            .invalidation_batch(batch)
            .send()
            .await
            .map_err(|e| cf_err("CreateInvalidation", e))?;
    }
    Ok(w.bucket.clone())
}

#[derive(Default, Serialize)]
struct Outputs {
    monthly: Option<String>,
}

struct CostSite;

#[async_trait]
impl Typed for CostSite {
    type Attrs = Attrs;
    type Outputs = Outputs;

    /// Prices the stack this site is part of, as the command sees it (its variables included).
    fn derive(&self, a: &Attrs, on: &Derive<'_>) -> Result<Map<String, Value>, String> {
        let breakdown = (on.bill)();
        let libraries: Vec<_> = a.libraries.iter().map(|l| on.dir.join(l)).collect();
        let site =
            site::assemble(&on.dir.join(a.page.as_deref().unwrap_or("../assets/finops/site")), &libraries, on.stack)?;
        let digest = site.digest(&breakdown);
        BUILT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone(), Arc::new((site, breakdown, on.stack.to_owned())));
        Ok(Map::from_iter([("content_sha256".to_owned(), json!(digest))]))
    }

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let mut out = Vec::new();
        for (bucket, _) in owned(cx).await? {
            let head =
                match s3(cx).head_object().bucket(&bucket).key(INDEX).send().await.map_err(|e| err("HeadObject", e)) {
                    Ok(h) => h,
                    Err(e) if e.is_not_found() || e.has_code("NoSuchKey") => continue,
                    Err(e) => return Err(e),
                };
            let meta = head.metadata().cloned().unwrap_or_default();
            let (Some(address), Some(stack)) = (meta.get(META_ADDRESS), meta.get(META_STACK)) else { continue };
            if stack != &cx.stack {
                continue;
            }
            let outputs = Outputs { monthly: meta.get(META_MONTHLY).cloned() };
            let attrs = Attrs {
                bucket: bucket.clone(),
                distribution: meta.get(META_DISTRIBUTION).filter(|d| !d.is_empty()).cloned(),
                page: None,
                libraries: Vec::new(),
                content_sha256: meta.get(META_DIGEST).cloned(),
            };
            out.push(Found { id: bucket.clone(), address: address.clone(), attrs, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, want: &Attrs, token: &str) -> Result<String, OpError> {
        publish(cx, &address.to_string(), want, token).await
    }

    async fn update(&self, cx: &Cx, id: &str, _have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let head = s3(cx).head_object().bucket(id).key(INDEX).send().await.map_err(|e| err("HeadObject", e))?;
        let address = head.metadata().and_then(|m| m.get(META_ADDRESS)).cloned().unwrap_or_default();
        let token = format!("update-{}", chrono::Utc::now().timestamp_millis());
        publish(cx, &address, want, &token).await.map(|_| ())
    }

    /// Takes the site out of the bucket: the index, the history and every asset.
    async fn delete(&self, cx: &Cx, id: &str, _have: Option<&Attrs>) -> Result<(), OpError> {
        let mut keys = vec![INDEX.to_owned(), HISTORY_KEY.to_owned()];
        let mut pages = s3(cx).list_objects_v2().bucket(id).prefix("assets/").into_paginator().send();
        while let Some(page) = pages.next().await {
            match page.map_err(|e| err("ListObjectsV2", e)) {
                Ok(p) => keys.extend(p.contents().iter().filter_map(|o| o.key().map(str::to_owned))),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let ids = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OpError::fatal("ObjectIdentifier", e.to_string()))?;
        delete_objects(cx, id, ids).await
    }
}
