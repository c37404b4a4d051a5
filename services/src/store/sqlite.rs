//! The embedded store for the local default: one SQLite file, the same contract as DynamoDB.
//!
//! A batch is one transaction, so the consumer pays one fsync per batch, not per event.

use super::{decide, Changes, Store, StoreError, Stored, WindowQuery, WriteOutcome};
use crate::model::{Envelope, Event, Version};
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Arc;

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS events (
    unid         TEXT PRIMARY KEY,
    lastupdate   INTEGER NOT NULL,
    arrival      INTEGER NOT NULL,
    hash         INTEGER NOT NULL,
    time_us      INTEGER NOT NULL,
    mag          REAL,
    lat          REAL NOT NULL,
    lon          REAL NOT NULL,
    body         TEXT NOT NULL,
    seq          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events(time_us);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_seq ON events(seq);
";

/// SQLite-backed [`Store`]; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            StoreError::Throttled(e.to_string())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl SqliteStore {
    /// Opens (and creates if needed) the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let conn = Connection::open(path).map_err(db_err)?;
        Self::init(conn)
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db_err)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock();
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

/// One message's write inside the batch's transaction. Statements are prepared once per
/// connection (`prepare_cached`): parsing SQL per event cost more than executing it.
fn upsert_one(tx: &rusqlite::Transaction<'_>, env: &Envelope, seq: &mut i64) -> Result<WriteOutcome, StoreError> {
    let e = &env.event;
    // One serialisation gives both the stored body and the content hash (the hash is defined
    // over exactly these bytes, see `Event::content_hash`).
    let body = serde_json::to_string(e).map_err(|err| StoreError::Invalid(err.to_string()))?;
    let hash = crate::model::fnv1a(body.as_bytes());
    let incoming = env.version();
    let stored: Option<(i64, i64, i64)> = tx
        .prepare_cached("SELECT lastupdate, arrival, hash FROM events WHERE unid = ?1")
        .and_then(|mut st| st.query_row([&e.unid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(db_err)?;
    let outcome = decide(stored.map(|(l, a, h)| (Version { lastupdate_us: l, arrival: a }, h as u64)), incoming, hash);
    match outcome {
        WriteOutcome::Older => {}
        WriteOutcome::Unchanged => {
            tx.prepare_cached("UPDATE events SET lastupdate = ?2, arrival = ?3 WHERE unid = ?1")
                .and_then(|mut st| st.execute(params![e.unid, incoming.lastupdate_us, incoming.arrival]))
                .map_err(db_err)?;
        }
        WriteOutcome::Created | WriteOutcome::Updated => {
            *seq += 1;
            tx.prepare_cached(
                "INSERT INTO events (unid, lastupdate, arrival, hash, time_us, mag, lat, lon, body, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(unid) DO UPDATE SET lastupdate = ?2, arrival = ?3, hash = ?4, time_us = ?5,
                   mag = ?6, lat = ?7, lon = ?8, body = ?9, seq = ?10",
            )
            .and_then(|mut st| {
                st.execute(params![
                    e.unid,
                    incoming.lastupdate_us,
                    incoming.arrival,
                    hash as i64,
                    e.time_us,
                    e.mag,
                    e.lat,
                    e.lon,
                    body,
                    *seq
                ])
            })
            .map_err(db_err)?;
        }
    }
    Ok(outcome)
}

fn row_to_stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_stored((body, l, a, seq): (String, i64, i64, i64)) -> Result<Stored, StoreError> {
    let event: Event =
        serde_json::from_str(&body).map_err(|e| StoreError::Invalid(format!("stored body unreadable: {e}")))?;
    Ok(Stored { event, version: Version { lastupdate_us: l, arrival: a }, seq })
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert(&self, env: &Envelope) -> Result<WriteOutcome, StoreError> {
        self.upsert_batch(std::slice::from_ref(env)).await.pop().unwrap_or(Ok(WriteOutcome::Older))
    }

    async fn upsert_batch(&self, envs: &[Envelope]) -> Vec<Result<WriteOutcome, StoreError>> {
        let envs = envs.to_vec();
        let n = envs.len();
        let res = self
            .blocking(move |conn| {
                let tx = conn.transaction().map_err(db_err)?;
                // The feed position of the last write; one writer (the lock) keeps it unique.
                let mut seq: i64 =
                    tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0)).map_err(db_err)?;
                let mut out = Vec::with_capacity(envs.len());
                for env in &envs {
                    out.push(upsert_one(&tx, env, &mut seq)?);
                }
                tx.commit().map_err(db_err)?;
                Ok(out)
            })
            .await;
        match res {
            Ok(v) => v.into_iter().map(Ok).collect(),
            // The transaction rolled back as a whole: every message of the batch failed alike.
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    async fn get(&self, unid: &str) -> Result<Option<Stored>, StoreError> {
        let unid = unid.to_owned();
        self.blocking(move |conn| {
            conn.query_row("SELECT body, lastupdate, arrival, seq FROM events WHERE unid = ?1", [&unid], row_to_stored)
                .optional()
                .map_err(db_err)?
                .map(to_stored)
                .transpose()
        })
        .await
    }

    async fn window(&self, q: &WindowQuery) -> Result<Vec<Stored>, StoreError> {
        let q = q.clone();
        self.blocking(move |conn| {
            // The end the answer keeps is read first, so reading stops at `limit`.
            let sql = if q.oldest {
                "SELECT body, lastupdate, arrival, seq FROM events
                 WHERE time_us BETWEEN ?1 AND ?2 ORDER BY time_us ASC, unid ASC"
            } else {
                "SELECT body, lastupdate, arrival, seq FROM events
                 WHERE time_us BETWEEN ?1 AND ?2 ORDER BY time_us DESC, unid DESC"
            };
            let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
            let rows = stmt.query_map(params![q.start_us, q.end_us], row_to_stored).map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let s = to_stored(row.map_err(db_err)?)?;
                if q.matches(&s.event) {
                    out.push(s);
                    if out.len() >= q.limit {
                        break;
                    }
                }
            }
            if q.oldest {
                out.reverse();
            }
            Ok(out)
        })
        .await
    }

    async fn changes_since(&self, cursor: i64, limit: usize) -> Result<Changes, StoreError> {
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body, lastupdate, arrival, seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = stmt.query_map(params![cursor, limit as i64], row_to_stored).map_err(db_err)?;
            let mut events = Vec::new();
            for row in rows {
                events.push(to_stored(row.map_err(db_err)?)?);
            }
            let cursor = events.last().map_or(cursor, |s| s.seq);
            Ok(Changes { events, cursor })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err)).await
    }
}
