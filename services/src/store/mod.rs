//! The event store: one trait, answered by DynamoDB in production and by SQLite locally.
//!
//! Every write is a conditional upsert on the event's [`Version`], so the stored state is the
//! newest version whatever order, and however often, the consumer delivers messages.

pub mod dynamo;
pub mod sqlite;

use crate::model::{Envelope, Event, Version};
use async_trait::async_trait;

/// An event as stored, with the position it took in the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub event: Event,
    pub version: Version,
    /// Change-feed position of the last content change (SQLite: a counter; DynamoDB: the
    /// writer's clock in microseconds).
    pub seq: i64,
}

/// What a conditional upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// The `unid` was unknown (an update for an unknown event is a create too).
    Created,
    /// A newer version with different content replaced the stored one.
    Updated,
    /// A newer version with identical content: only the version moved, nothing visible changed.
    Unchanged,
    /// The stored version is the same or newer: nothing was written.
    Older,
}

impl WriteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Older => "older",
        }
    }
}

/// Store failures, classified so the caller knows whether to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store asked us to slow down: retry with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Network, timeout or service trouble: retry with backoff.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// This input can never be written: dead-letter it.
    #[error("invalid write: {0}")]
    Invalid(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Invalid(_))
    }
}

/// A time-window query; all bounds inclusive, results newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowQuery {
    pub start_us: i64,
    pub end_us: i64,
    pub min_mag: Option<f64>,
    pub max_mag: Option<f64>,
    /// `(min_lat, max_lat, min_lon, max_lon)`; `min_lon > max_lon` crosses the antimeridian.
    pub bbox: Option<(f64, f64, f64, f64)>,
    /// At most this many events: the newest of the range, or with `oldest` its oldest (still
    /// answered newest first). A store stops reading when it has them.
    pub limit: usize,
    pub oldest: bool,
}

/// The longest time range one query may span (FDSN's common year, and a leap day): what bounds
/// the partitions a store reads for one request.
pub const MAX_SPAN_DAYS: i64 = 366;

impl WindowQuery {
    pub fn new(start_us: i64, end_us: i64) -> Self {
        Self { start_us, end_us, min_mag: None, max_mag: None, bbox: None, limit: usize::MAX, oldest: false }
    }

    /// The filters that are not part of the key, applied the same way by every store.
    pub fn matches(&self, e: &Event) -> bool {
        if e.time_us < self.start_us || e.time_us > self.end_us {
            return false;
        }
        if let Some(min) = self.min_mag {
            if e.mag.is_none_or(|m| m < min) {
                return false;
            }
        }
        if let Some(max) = self.max_mag {
            if e.mag.is_none_or(|m| m > max) {
                return false;
            }
        }
        if let Some((min_lat, max_lat, min_lon, max_lon)) = self.bbox {
            if e.lat < min_lat || e.lat > max_lat {
                return false;
            }
            let in_lon = if min_lon <= max_lon {
                e.lon >= min_lon && e.lon <= max_lon
            } else {
                e.lon >= min_lon || e.lon <= max_lon
            };
            if !in_lon {
                return false;
            }
        }
        true
    }
}

/// One page of the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub events: Vec<Stored>,
    /// Pass this back to get what was stored after this page.
    pub cursor: i64,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Conditionally writes one message: only a newer version changes anything.
    async fn upsert(&self, env: &Envelope) -> Result<WriteOutcome, StoreError>;

    /// Writes several messages; one result per message, in order. Stores override this to batch.
    async fn upsert_batch(&self, envs: &[Envelope]) -> Vec<Result<WriteOutcome, StoreError>> {
        let mut out = Vec::with_capacity(envs.len());
        for e in envs {
            out.push(self.upsert(e).await);
        }
        out
    }

    async fn get(&self, unid: &str) -> Result<Option<Stored>, StoreError>;

    /// Events with origin time in the window and matching the filters, newest first.
    async fn window(&self, q: &WindowQuery) -> Result<Vec<Stored>, StoreError>;

    /// Events whose content changed after `cursor` (0 = from the beginning), oldest change
    /// first, at most about `limit`. At-least-once: an event may come again in a later page
    /// (DynamoDB re-reads a short overlap because its index is eventually consistent), so
    /// followers dedupe by `(unid, version)`.
    async fn changes_since(&self, cursor: i64, limit: usize) -> Result<Changes, StoreError>;

    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How far behind its cursor the change feed may still deliver a change, in cursor units:
    /// 0 when the feed is in commit order.
    fn feed_overlap(&self) -> i64 {
        0
    }

    /// How long after a write [`Store::window`] may still answer without it (eventually
    /// consistent indexes): an answer read sooner than this after a change may be stale, so it
    /// is not kept.
    fn read_lag(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// The decision every store makes for an incoming version against the stored one.
pub fn decide(stored: Option<(Version, u64)>, incoming: Version, hash: u64) -> WriteOutcome {
    match stored {
        None => WriteOutcome::Created,
        Some((v, _)) if v >= incoming => WriteOutcome::Older,
        Some((_, h)) if h == hash => WriteOutcome::Unchanged,
        Some(_) => WriteOutcome::Updated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: i64, a: i64) -> Version {
        Version { lastupdate_us: l, arrival: a }
    }

    #[test]
    fn decide_covers_every_case() {
        assert_eq!(decide(None, v(1, 1), 7), WriteOutcome::Created);
        assert_eq!(decide(Some((v(1, 1), 7)), v(1, 1), 7), WriteOutcome::Older);
        assert_eq!(decide(Some((v(2, 0), 7)), v(1, 9), 8), WriteOutcome::Older);
        assert_eq!(decide(Some((v(1, 1), 7)), v(1, 2), 7), WriteOutcome::Unchanged);
        assert_eq!(decide(Some((v(1, 1), 7)), v(1, 2), 8), WriteOutcome::Updated);
    }
}
