//! The DynamoDB store: conditional upserts keyed by `unid`, and two GSIs so every read is a Query.
//!
//! Table layout (see docs/store.md):
//! - primary key `unid` (S);
//! - `by_time`: partition `day` (S, origin day `YYYY-MM-DD`), sort `t` (N, origin time in µs);
//!   a time window is one Query per day, newest day first;
//! - `by_feed`: partition `fday` (S, day the content last changed), sort `fseq` (N, writer's
//!   clock in µs when it changed); the change feed is one Query per day from the cursor on.
//!
//! The version is one string attribute `ver` whose byte order is the version order, so the
//! condition `ver < :ver` is the whole "never older over newer" rule.

use super::{Changes, Store, StoreError, Stored, WindowQuery, WriteOutcome};
use crate::model::{Envelope, Event, Version};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ReturnValue, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate};
use futures_util::stream::{self, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

/// How far the change feed reads back behind its cursor: GSIs are eventually consistent and
/// several consumers' clocks are not in lockstep, so a short overlap is re-read and deduped.
const FEED_OVERLAP_US: i64 = 5_000_000;

type Item = HashMap<String, AttributeValue>;

/// The table's keys and indexes, in the shape of `CreateTable`: `table.json`, the one file the
/// provisioner's `dynamodb_table` reads too, so the table it makes is the one this code queries.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Layout {
    pub key_schema: Vec<LayoutKey>,
    pub attribute_definitions: Vec<LayoutAttribute>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<LayoutIndex>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayoutKey {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayoutAttribute {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayoutIndex {
    pub index_name: String,
    pub key_schema: Vec<LayoutKey>,
}

impl Layout {
    pub const JSON: &'static str = include_str!("table.json");

    pub fn ours() -> Result<Self, String> {
        serde_json::from_str(Self::JSON).map_err(|e| format!("table.json: {e}"))
    }
}

/// DynamoDB-backed [`Store`]; cheap to clone.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    /// Concurrent conditional writes per batch (no BatchWriteItem: it cannot carry conditions).
    concurrency: usize,
    last_fseq: Arc<AtomicI64>,
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(op: &str, e: SdkError<E, R>) -> StoreError {
    let code = e.code().unwrap_or("").to_owned();
    let msg = format!("dynamodb {op}: {code} {}", e.message().unwrap_or_default());
    match &e {
        SdkError::ServiceError(_) => match code.as_str() {
            "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
                StoreError::Throttled(msg)
            }
            "ValidationException" | "ItemCollectionSizeLimitExceededException" | "ResourceNotFoundException" => {
                StoreError::Invalid(msg)
            }
            _ => StoreError::Unavailable(msg),
        },
        other => StoreError::Unavailable(format!("dynamodb {op}: {other:?}")),
    }
}

fn day_of(us: i64) -> String {
    DateTime::from_timestamp_micros(us).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoStore {
    pub fn new(client: Client, table: &str) -> Self {
        Self { client, table: table.into(), concurrency: 16, last_fseq: Arc::new(AtomicI64::new(0)) }
    }

    /// Creates the table with its indexes if it does not exist and waits until it is active.
    /// Production tables come from the provisioner, from the same layout file; this is for
    /// local and test use.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let layout = Layout::ours().map_err(StoreError::Invalid)?;
        let key = |k: &LayoutKey| {
            let t = if k.key_type == "RANGE" { KeyType::Range } else { KeyType::Hash };
            KeySchemaElement::builder().attribute_name(&k.attribute_name).key_type(t).build()
        };
        let bad = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Invalid(format!("table layout: {e}"));
        let mut create = self.client.create_table().table_name(&*self.table).billing_mode(BillingMode::PayPerRequest);
        for k in &layout.key_schema {
            create = create.key_schema(key(k).map_err(bad)?);
        }
        for a in &layout.attribute_definitions {
            let t = match a.attribute_type.as_str() {
                "N" => ScalarAttributeType::N,
                "B" => ScalarAttributeType::B,
                _ => ScalarAttributeType::S,
            };
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&a.attribute_name)
                    .attribute_type(t)
                    .build()
                    .map_err(bad)?,
            );
        }
        for g in &layout.global_secondary_indexes {
            let mut index = GlobalSecondaryIndex::builder()
                .index_name(&g.index_name)
                .projection(Projection::builder().projection_type(ProjectionType::All).build());
            for k in &g.key_schema {
                index = index.key_schema(key(k).map_err(bad)?);
            }
            create = create.global_secondary_indexes(index.build().map_err(bad)?);
        }
        let res = create.send().await;
        match res {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_in_use_exception()) => {}
            Err(e) => return Err(classify("CreateTable", e)),
        }
        use aws_sdk_dynamodb::client::Waiters;
        self.client
            .wait_until_table_exists()
            .table_name(&*self.table)
            .wait(std::time::Duration::from_secs(120))
            .await
            .map_err(|e| StoreError::Unavailable(format!("table {} did not become active: {e}", self.table)))?;
        Ok(())
    }

    /// The writer's clock in µs, strictly increasing within this process.
    fn next_fseq(&self) -> i64 {
        crate::model::monotonic_micros(&self.last_fseq)
    }

    fn item(&self, env: &Envelope, fseq: i64) -> Result<Item, StoreError> {
        let e = &env.event;
        let body = serde_json::to_string(e).map_err(|err| StoreError::Invalid(err.to_string()))?;
        let mut item = Item::new();
        item.insert("unid".into(), s(&e.unid));
        item.insert("ver".into(), s(env.version().key()));
        item.insert("lu".into(), n(env.event.lastupdate_us));
        item.insert("arr".into(), n(env.arrival));
        item.insert("h".into(), s(format!("{:016x}", e.content_hash())));
        item.insert("day".into(), s(day_of(e.time_us)));
        item.insert("t".into(), n(e.time_us));
        if let Some(m) = e.mag {
            item.insert("mag".into(), n(m));
        }
        item.insert("lat".into(), n(e.lat));
        item.insert("lon".into(), n(e.lon));
        item.insert("body".into(), s(body));
        item.insert("fday".into(), s(day_of(fseq)));
        item.insert("fseq".into(), n(fseq));
        Ok(item)
    }

    async fn upsert_inner(&self, env: &Envelope) -> Result<WriteOutcome, StoreError> {
        let fseq = self.next_fseq();
        let item = self.item(env, fseq)?;
        let ver = env.version().key();
        let hash = item["h"].clone();
        let put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(unid) OR (ver < :ver AND h <> :h)")
            .expression_attribute_values(":ver", s(&ver))
            .expression_attribute_values(":h", hash.clone())
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match put {
            Ok(out) => {
                let existed = out.attributes().is_some_and(|a| !a.is_empty());
                return Ok(if existed { WriteOutcome::Updated } else { WriteOutcome::Created });
            }
            Err(e) if !e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                return Err(classify("PutItem", e));
            }
            Err(_) => {}
        }
        // Same or newer stored, or identical content under a newer version: move only `ver`, so
        // a later-arriving older message cannot win, and the change feed stays quiet.
        let bump = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key("unid", s(&env.event.unid))
            .update_expression("SET ver = :ver, lu = :lu, arr = :arr")
            .condition_expression("ver < :ver AND h = :h")
            .expression_attribute_values(":ver", s(&ver))
            .expression_attribute_values(":h", hash)
            .expression_attribute_values(":lu", n(env.event.lastupdate_us))
            .expression_attribute_values(":arr", n(env.arrival))
            .send()
            .await;
        match bump {
            Ok(_) => Ok(WriteOutcome::Unchanged),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Ok(WriteOutcome::Older)
            }
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }

    fn stored_from(item: &Item) -> Result<Stored, StoreError> {
        let get_s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str);
        let get_n = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|x| x.parse::<i64>().ok());
        let body = get_s("body").ok_or_else(|| StoreError::Invalid("item without body".into()))?;
        let event: Event =
            serde_json::from_str(body).map_err(|e| StoreError::Invalid(format!("stored body unreadable: {e}")))?;
        let version =
            Version { lastupdate_us: get_n("lu").unwrap_or(event.lastupdate_us), arrival: get_n("arr").unwrap_or(0) };
        Ok(Stored { event, version, seq: get_n("fseq").unwrap_or(0) })
    }

    /// Runs a paginated Query on one index partition and returns every item.
    #[allow(clippy::too_many_arguments)] // the Query's own parts, named at each call site
    async fn query_all(
        &self,
        index: &str,
        cond: &str,
        values: Vec<(&str, AttributeValue)>,
        names: Vec<(&str, &str)>,
        forward: bool,
        filter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name(index)
                .key_condition_expression(cond)
                .scan_index_forward(forward)
                .set_exclusive_start_key(start.take());
            for (k, v) in &values {
                q = q.expression_attribute_values(*k, v.clone());
            }
            for (k, v) in &names {
                q = q.expression_attribute_names(*k, *v);
            }
            if let Some(f) = filter {
                q = q.filter_expression(f);
            }
            let page = q.send().await.map_err(|e| classify("Query", e))?;
            out.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() && out.len() < limit => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// Day partitions one window query reads at once.
const DAYS_AT_ONCE: usize = 8;

fn days_between(from_us: i64, to_us: i64) -> Vec<String> {
    let (Some(a), Some(b)) = (DateTime::from_timestamp_micros(from_us), DateTime::from_timestamp_micros(to_us)) else {
        return Vec::new();
    };
    let mut d: NaiveDate = a.date_naive();
    let end = b.date_naive();
    let mut out = Vec::new();
    while d <= end && out.len() < 20_000 {
        out.push(d.format("%Y-%m-%d").to_string());
        d += ChronoDuration::days(1);
    }
    out
}

#[async_trait]
impl Store for DynamoStore {
    async fn upsert(&self, env: &Envelope) -> Result<WriteOutcome, StoreError> {
        self.upsert_inner(env).await
    }

    async fn upsert_batch(&self, envs: &[Envelope]) -> Vec<Result<WriteOutcome, StoreError>> {
        // Versions of one event go one after another, in the order given; different events go
        // concurrently. The conditions alone would keep the newest, but only if the service
        // evaluates them atomically, which emulators do not promise; in order is also cheaper.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut by_unid: HashMap<&str, usize> = HashMap::new();
        for (i, e) in envs.iter().enumerate() {
            let g = *by_unid.entry(e.event.unid.as_str()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        let this = self.clone();
        let envs = envs.to_vec();
        let n = envs.len();
        let envs = Arc::new(envs);
        let done: Vec<Vec<(usize, Result<WriteOutcome, StoreError>)>> =
            stream::iter(groups.into_iter().map(move |g| {
                let this = this.clone();
                let envs = envs.clone();
                async move {
                    let mut out = Vec::with_capacity(g.len());
                    for i in g {
                        out.push((i, this.upsert_inner(&envs[i]).await));
                    }
                    out
                }
            }))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut results: Vec<Option<Result<WriteOutcome, StoreError>>> = (0..n).map(|_| None).collect();
        for (i, r) in done.into_iter().flatten() {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("write not attempted".into()))))
            .collect()
    }

    async fn get(&self, unid: &str) -> Result<Option<Stored>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key("unid", s(unid))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item().map(Self::stored_from).transpose()
    }

    async fn window(&self, q: &WindowQuery) -> Result<Vec<Stored>, StoreError> {
        let mut filters = Vec::new();
        let mut values = vec![(":a", n(q.start_us)), (":b", n(q.end_us))];
        if let Some(m) = q.min_mag {
            filters.push("mag >= :minmag");
            values.push((":minmag", n(m)));
        }
        if let Some(m) = q.max_mag {
            filters.push("mag <= :maxmag");
            values.push((":maxmag", n(m)));
        }
        if let Some((a, b, c, d)) = q.bbox {
            filters.push("lat BETWEEN :la AND :lb");
            values.push((":la", n(a)));
            values.push((":lb", n(b)));
            if c <= d {
                filters.push("lon BETWEEN :lc AND :ld");
            } else {
                filters.push("(lon >= :lc OR lon <= :ld)");
            }
            values.push((":lc", n(c)));
            values.push((":ld", n(d)));
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        let mut days = days_between(q.start_us, q.end_us);
        // One Query per day partition: the span bounds what one request costs.
        if days.len() as i64 > super::MAX_SPAN_DAYS + 1 {
            return Err(StoreError::Invalid(format!(
                "a time window of {} days; one query spans at most {} days",
                days.len(),
                super::MAX_SPAN_DAYS
            )));
        }
        // The end the answer keeps is read first, so reading stops at `limit`.
        if !q.oldest {
            days.reverse();
        }
        // A few days are read at once, in order: a year is hundreds of round trips, one after
        // another seconds long. Reading stops (in-flight reads dropped) once `limit` are in.
        let (values, filter) = (&values, filter.as_deref());
        let mut pages = stream::iter(days)
            .map(|day| {
                let mut vals = values.clone();
                vals.push((":day", s(day)));
                self.query_all(
                    "by_time",
                    "#d = :day AND t BETWEEN :a AND :b",
                    vals,
                    vec![("#d", "day")],
                    q.oldest,
                    filter,
                    q.limit,
                )
            })
            .buffered(DAYS_AT_ONCE);
        let mut out = Vec::new();
        while let Some(items) = pages.next().await {
            for it in &items? {
                let st = Self::stored_from(it)?;
                if q.matches(&st.event) {
                    out.push(st);
                }
                if out.len() >= q.limit {
                    break;
                }
            }
            if out.len() >= q.limit {
                break;
            }
        }
        if q.oldest {
            out.reverse();
        }
        Ok(out)
    }

    async fn changes_since(&self, cursor: i64, limit: usize) -> Result<Changes, StoreError> {
        let now = chrono::Utc::now().timestamp_micros();
        // Cursor 0 means "from the beginning": the feed keeps a rolling 30 days.
        let from = if cursor <= 0 { now - 30 * 86_400_000_000 } else { cursor - FEED_OVERLAP_US };
        let mut events = Vec::new();
        let mut next = cursor;
        for day in days_between(from, now) {
            let items = self
                .query_all(
                    "by_feed",
                    "fday = :d AND fseq > :c",
                    vec![(":d", s(day)), (":c", n(from))],
                    vec![],
                    true,
                    None,
                    // Whole days: a page cut inside the overlap window could repeat forever.
                    usize::MAX,
                )
                .await?;
            for it in &items {
                let st = Self::stored_from(it)?;
                next = next.max(st.seq);
                events.push(st);
            }
            if events.len() >= limit {
                break;
            }
        }
        Ok(Changes { events, cursor: next })
    }

    fn feed_overlap(&self) -> i64 {
        FEED_OVERLAP_US
    }

    fn read_lag(&self) -> std::time::Duration {
        // The by_time index lags writes as the by_feed one does.
        std::time::Duration::from_micros(FEED_OVERLAP_US as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&*self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("DescribeTable", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout file holds exactly the keys and indexes the queries here use.
    #[test]
    fn the_layout_file_is_the_one_the_queries_use() {
        let l = Layout::ours().unwrap();
        fn keys(k: &[LayoutKey]) -> Vec<(&str, &str)> {
            k.iter().map(|k| (k.attribute_name.as_str(), k.key_type.as_str())).collect()
        }
        assert_eq!(keys(&l.key_schema), [("unid", "HASH")]);
        let index =
            |n: &str| l.global_secondary_indexes.iter().find(|g| g.index_name == n).map(|g| keys(&g.key_schema));
        assert_eq!(index("by_time").unwrap(), [("day", "HASH"), ("t", "RANGE")]);
        assert_eq!(index("by_feed").unwrap(), [("fday", "HASH"), ("fseq", "RANGE")]);
        assert_eq!(l.global_secondary_indexes.len(), 2);
        let types: Vec<(&str, &str)> =
            l.attribute_definitions.iter().map(|a| (a.attribute_name.as_str(), a.attribute_type.as_str())).collect();
        assert_eq!(types, [("unid", "S"), ("day", "S"), ("t", "N"), ("fday", "S"), ("fseq", "N")]);
    }

    #[test]
    fn days_cover_the_window_inclusively() {
        let d = |s: &str| crate::model::parse_utc(s).unwrap();
        assert_eq!(
            days_between(d("2024-04-11T23:00:00Z"), d("2024-04-13T00:00:00Z")),
            vec!["2024-04-11", "2024-04-12", "2024-04-13"]
        );
        assert!(days_between(d("2024-04-13T00:00:00Z"), d("2024-04-11T00:00:00Z")).is_empty());
    }
}
