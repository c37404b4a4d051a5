//! The stack lock: one conditional item per stack in a small DynamoDB table the tool creates on
//! first use, with holder, operation, time and expiry, kept alive while the holder works. Two
//! applies on one stack cannot interleave; a crashed holder's lock expires or is force-unlocked.
//! The same table keeps each stack's regions index: where besides its own region it may hold
//! resources, so discovery looks there even after those regions left the stack file.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TableStatus,
};
use aws_sdk_dynamodb::Client;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;

/// The table holding every stack's lock, in the stack's region.
pub const TABLE: &str = "provisioner-locks";

/// Who holds a lock, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    pub operation: String,
    /// Seconds since the epoch.
    pub since: u64,
    pub expires: u64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ago = now().saturating_sub(self.since);
        write!(
            f,
            "{} ({}, {ago} s ago, expires in {} s)",
            self.holder,
            self.operation,
            self.expires.saturating_sub(now())
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the stack is locked by {0}; if that run is dead, run `provisioner force-unlock`")]
    Held(Holder),
    #[error("lock table: {0}")]
    Aws(String),
}

/// A held lock; renewed in the background until released.
pub struct Lock {
    ddb: Client,
    stack: String,
    holder: String,
    renew: JoinHandle<()>,
    /// When the previous run was found interrupted (its lock forced open), seconds since the
    /// epoch: what it made moments before may not be in AWS's lists yet.
    pub interrupted: Option<u64>,
}

/// Runs one call again while AWS throttles it (beyond the SDK's own few attempts), for up to a
/// minute with full-jitter backoff: a lock must not fail because the account is busy.
async fn patiently<T, E, R, F, Fut>(mut call: F) -> Result<T, SdkError<E, R>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_millis(6400));
    loop {
        match call().await {
            Err(e) if tokio::time::Instant::now() < deadline && transient(&e) => {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            other => return other,
        }
    }
}

fn transient<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_))
        || e.code().is_some_and(crate::error::throttled)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn err(op: &str, e: impl ProvideErrorMetadata + std::fmt::Debug) -> LockError {
    LockError::Aws(format!("{op}: {}", e.code().map_or_else(|| format!("{e:?}"), str::to_owned)))
}

/// `user@host pid N`: enough to find the other run.
pub fn whoami() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
    format!("{user}@{host} pid {}", std::process::id())
}

/// Creates the lock table unless it exists, and waits until it is usable.
async fn ensure_table(ddb: &Client) -> Result<(), LockError> {
    match patiently(|| ddb.describe_table().table_name(TABLE).send()).await {
        Ok(d) if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) => return Ok(()),
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
            let attribute = AttributeDefinition::builder()
                .attribute_name("stack")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| LockError::Aws(e.to_string()))?;
            let key = KeySchemaElement::builder()
                .attribute_name("stack")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| LockError::Aws(e.to_string()))?;
            let created = patiently(|| {
                ddb.create_table()
                    .table_name(TABLE)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(attribute.clone())
                    .key_schema(key.clone())
                    .send()
            })
            .await;
            match created {
                Ok(_) => {}
                // Another run created it at the same moment.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(err("CreateTable", e)),
            }
        }
        Err(e) => return Err(err("DescribeTable", e)),
    }
    for _ in 0..120 {
        let d =
            patiently(|| ddb.describe_table().table_name(TABLE).send()).await.map_err(|e| err("DescribeTable", e))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(LockError::Aws(format!("table {TABLE} did not become active")))
}

fn interrupted_key(stack: &str) -> AttributeValue {
    s(format!("{stack}#interrupted"))
}

fn regions_key(stack: &str) -> AttributeValue {
    // `#` cannot appear in a stack name, so this never meets a lock item.
    s(format!("{stack}#regions"))
}

/// The regions the last apply recorded for `stack` besides its own (empty when none was, or the
/// table does not exist yet). Not a record of resources: only where discovery looks.
pub async fn regions(ddb: &Client, stack: &str) -> Result<BTreeSet<String>, LockError> {
    let got =
        patiently(|| ddb.get_item().table_name(TABLE).key("stack", regions_key(stack)).consistent_read(true).send())
            .await;
    match got {
        Ok(out) => Ok(out
            .item()
            .and_then(|i| i.get("regions"))
            .and_then(|v| v.as_ss().ok())
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(BTreeSet::new()),
        Err(e) => Err(err("GetItem", e)),
    }
}

/// Records where besides its own region `stack` may hold resources (the lock table exists: the
/// caller holds the lock).
pub async fn record_regions(ddb: &Client, stack: &str, regions: &BTreeSet<String>) -> Result<(), LockError> {
    if regions.is_empty() {
        patiently(|| ddb.delete_item().table_name(TABLE).key("stack", regions_key(stack)).send())
            .await
            .map_err(|e| err("DeleteItem", e))?;
        return Ok(());
    }
    let set = AttributeValue::Ss(regions.iter().cloned().collect());
    patiently(|| {
        ddb.put_item().table_name(TABLE).item("stack", regions_key(stack)).item("regions", set.clone()).send()
    })
    .await
    .map_err(|e| err("PutItem", e))?;
    Ok(())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn holder_of(item: &HashMap<String, AttributeValue>) -> Holder {
    let get = |k: &str| item.get(k).and_then(|v| v.as_s().ok().or(v.as_n().ok())).cloned().unwrap_or_default();
    Holder {
        holder: get("holder"),
        operation: get("operation"),
        since: get("since").parse().unwrap_or(0),
        expires: get("expires").parse().unwrap_or(0),
    }
}

impl Lock {
    /// Takes the stack's lock for `operation`, failing fast when someone else holds it.
    pub async fn acquire(ddb: &Client, stack: &str, operation: &str, ttl: Duration) -> Result<Lock, LockError> {
        ensure_table(ddb).await?;
        let holder = whoami();
        let t = now();
        let put = patiently(|| {
            ddb.put_item()
                .table_name(TABLE)
                .item("stack", s(stack))
                .item("holder", s(&holder))
                .item("operation", s(operation))
                .item("since", n(t))
                .item("expires", n(t + ttl.as_secs()))
                .condition_expression("attribute_not_exists(#s) OR #e < :now")
                .expression_attribute_names("#s", "stack")
                .expression_attribute_names("#e", "expires")
                .expression_attribute_values(":now", n(t))
                .send()
        })
        .await;
        match put {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                let got =
                    patiently(|| ddb.get_item().table_name(TABLE).key("stack", s(stack)).consistent_read(true).send())
                        .await
                        .map_err(|e| err("GetItem", e))?;
                let current = got.item().map(holder_of);
                // Our own put, answered late and sent again: the lock is ours.
                if current.as_ref().is_some_and(|h| h.holder == holder) {
                    return Lock::keep(ddb, stack, holder, ttl).after_interruption().await;
                }
                return Err(LockError::Held(current.unwrap_or(Holder {
                    holder: "(released just now; try again)".into(),
                    operation: String::new(),
                    since: t,
                    expires: t,
                })));
            }
            Err(e) => return Err(err("PutItem", e)),
        }
        Lock::keep(ddb, stack, holder, ttl).after_interruption().await
    }

    /// Takes over the mark a forced unlock left (see [`force_unlock`]) into `interrupted`: the
    /// lock is held, so no other run reads it meanwhile.
    async fn after_interruption(mut self) -> Result<Lock, LockError> {
        let key = interrupted_key(&self.stack);
        let old = patiently(|| {
            self.ddb.delete_item().table_name(TABLE).key("stack", key.clone()).return_values(ReturnValue::AllOld).send()
        })
        .await
        .map_err(|e| err("DeleteItem", e))?;
        self.interrupted =
            old.attributes().and_then(|a| a.get("at")).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
        Ok(self)
    }

    /// The held lock, renewed every third of its lifetime while this run lives.
    fn keep(ddb: &Client, stack: &str, holder: String, ttl: Duration) -> Lock {
        let renew = tokio::spawn({
            let (ddb, stack, holder) = (ddb.clone(), stack.to_owned(), holder.clone());
            async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    // A failed renewal is retried at the next tick; the expiry leaves room.
                    let _ = ddb
                        .update_item()
                        .table_name(TABLE)
                        .key("stack", s(&stack))
                        .update_expression("SET #e = :e")
                        .condition_expression("holder = :me")
                        .expression_attribute_names("#e", "expires")
                        .expression_attribute_values(":e", n(now() + ttl.as_secs()))
                        .expression_attribute_values(":me", s(&holder))
                        .send()
                        .await;
                }
            }
        });
        Lock { ddb: ddb.clone(), stack: stack.to_owned(), holder, renew, interrupted: None }
    }

    /// Gives the lock back (only if still ours).
    pub async fn release(self) -> Result<(), LockError> {
        self.renew.abort();
        let r = patiently(|| {
            self.ddb
                .delete_item()
                .table_name(TABLE)
                .key("stack", s(&self.stack))
                .condition_expression("holder = :me")
                .expression_attribute_values(":me", s(&self.holder))
                .send()
        })
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(err("DeleteItem", e)),
        }
    }
}

/// Removes the stack's lock whoever holds it; returns who held it. A run that held it was
/// interrupted: the next run learns when (see [`Lock::interrupted`]).
pub async fn force_unlock(ddb: &Client, stack: &str) -> Result<Option<Holder>, LockError> {
    match patiently(|| {
        ddb.delete_item().table_name(TABLE).key("stack", s(stack)).return_values(ReturnValue::AllOld).send()
    })
    .await
    {
        Ok(out) => {
            let held = out.attributes().map(holder_of);
            if held.is_some() {
                patiently(|| {
                    ddb.put_item().table_name(TABLE).item("stack", interrupted_key(stack)).item("at", n(now())).send()
                })
                .await
                .map_err(|e| err("PutItem", e))?;
            }
            Ok(held)
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
        Err(e) => Err(err("DeleteItem", e)),
    }
}
