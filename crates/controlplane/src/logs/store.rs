//! The durable log store: log groups, streams and events in one SQLite database.
//!
//! Writes go through one connection behind a mutex (SQLite has a single writer anyway, and a
//! mutex keeps the ordering of `seq` equal to the commit order); in a file database, reads use a
//! small pool of extra connections, which WAL lets run beside the writer. Every call is
//! synchronous: the async handlers run them on the blocking pool.
//!
//! Durability: WAL with `synchronous=FULL`, so a transaction is on disk (fsynced) before the
//! call that wrote it returns; an acknowledged PutLogEvents survives kill -9 and power loss.
//!
//! Events are ordered by `(timestamp, seq)`: `seq` is an AUTOINCREMENT key, so it grows in
//! ingestion order and is never reused after deletions, which keeps paging cursors stable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use super::error::LogsError;

/// AWS's quota of log groups per account and Region.
const MAX_GROUPS: i64 = 1_000_000;

/// How many idle reader connections a file database keeps.
const READER_POOL: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log_groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    creation_time INTEGER NOT NULL,
    retention_days INTEGER,
    log_group_class TEXT NOT NULL,
    kms_key_id TEXT,
    deletion_protection INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '{}',
    stored_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS log_streams (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    creation_time INTEGER NOT NULL,
    first_event_ts INTEGER,
    -- -1 until the stream has events: NOT NULL so DescribeLogStreams by LastEventTime orders
    -- and pages on the index below instead of sorting every stream by coalesce(...).
    last_event_ts INTEGER NOT NULL DEFAULT -1,
    last_ingestion_time INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (group_id, name)
);
CREATE INDEX IF NOT EXISTS log_streams_by_last_event
    ON log_streams (group_id, last_event_ts, name);
CREATE TABLE IF NOT EXISTS log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL,
    stream_id INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    ingestion_time INTEGER NOT NULL,
    message TEXT NOT NULL
);
-- GetLogEvents: one stream by time.
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (stream_id, timestamp, seq);
-- FilterLogEvents and the retention sweep: a whole group by time.
CREATE INDEX IF NOT EXISTS log_events_by_group ON log_events (group_id, timestamp, seq);
-- Deleted groups whose events are still being deleted (in batches, after the group and its
-- streams are gone). `max_stream_id` is the largest stream id when the group was deleted: new
-- groups and streams take ids above every purge's, so the leftover events (which name the old
-- group and stream ids) can never surface in a new group or stream.
CREATE TABLE IF NOT EXISTS log_purges (
    group_id INTEGER PRIMARY KEY,
    max_stream_id INTEGER NOT NULL
);
";

/// Bring a database made by an earlier version up to `SCHEMA`'s conventions. `CREATE TABLE IF
/// NOT EXISTS` leaves an existing table's columns alone, so `last_event_ts` there is still
/// nullable: give its NULLs the -1 new databases use (writes always set it explicitly).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             UPDATE log_streams SET last_event_ts = -1 WHERE last_event_ts IS NULL;
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// Events deleted per transaction by the retention sweep and group purges: small enough that
/// the writer lock is never held long, so PutLogEvents keeps flowing.
const DELETE_BATCH: i64 = 5_000;

/// Bytes a returned event counts toward a page's size cap, as AWS counts them.
pub const EVENT_OVERHEAD: usize = 26;

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub name: String,
    pub creation_time: i64,
    pub retention_days: Option<i64>,
    pub log_group_class: String,
    pub kms_key_id: Option<String>,
    pub deletion_protection: bool,
    pub tags: BTreeMap<String, String>,
    pub stored_bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub name: String,
    pub creation_time: i64,
    pub first_event_ts: Option<i64>,
    pub last_event_ts: Option<i64>,
    pub last_ingestion_time: Option<i64>,
    pub stored_bytes: i64,
    /// The `seq` of the stream's newest event (0: none), the source of sequence tokens.
    pub last_seq: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub seq: i64,
    pub timestamp: i64,
    pub ingestion_time: i64,
    pub message: String,
    /// Filled by `scan_group` (FilterLogEvents names each event's stream).
    pub stream_name: String,
}

/// A point between events in `(timestamp, seq)` order: events `> cursor` come after it.
pub type Cursor = (i64, i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOrder {
    Name,
    LastEventTime,
}

/// Where a stream listing continues: after this stream in the listing's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAfter {
    /// `LastEventTime` order only; `None` sorts first (streams without events).
    pub last_event_ts: Option<i64>,
    pub name: String,
}

/// What one group listing asks for.
#[derive(Debug, Default, Clone)]
pub struct GroupQuery {
    pub after: Option<String>,
    pub prefix: Option<String>,
    pub contains: Option<String>,
    pub names: Option<Vec<String>>,
    pub classes: Option<Vec<String>>,
    pub limit: usize,
}

/// Which streams of a group a scan covers.
#[derive(Debug, Clone)]
pub enum StreamSelection {
    All,
    Names(Vec<String>),
    Prefix(String),
}

/// The outcome of a bounded scan over a group's events.
#[derive(Debug)]
pub struct Scan {
    pub matched: Vec<EventRecord>,
    /// The position of the last row examined; the next scan continues from there.
    pub position: Option<Cursor>,
    /// No rows remain beyond `position` in the scanned direction.
    pub exhausted: bool,
}

pub struct LogStore {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: Option<PathBuf>,
    /// A `purge_deleted` is running: a second one would only compete for the writer lock.
    purging: AtomicBool,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .finish()
    }
}

fn configure(conn: &Connection, file: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    if file {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "log store could not switch to WAL");
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
    }
    Ok(())
}

impl LogStore {
    /// Open (creating if needed) `dir/logs.db`.
    pub fn open(dir: &Path) -> Result<LogStore, LogsError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            LogsError::Unavailable(format!(
                "cannot create the log store directory {}: {error}",
                dir.display()
            ))
        })?;
        let path = dir.join("logs.db");
        let conn = Connection::open(&path)?;
        configure(&conn, true)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(LogStore {
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            path: Some(path),
            purging: AtomicBool::new(false),
        })
    }

    pub fn in_memory() -> Result<LogStore, LogsError> {
        let conn = Connection::open_in_memory()?;
        configure(&conn, false)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(LogStore {
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            path: None,
            purging: AtomicBool::new(false),
        })
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, LogsError>,
    ) -> Result<T, LogsError> {
        // A panic while holding the lock leaves no open transaction behind (the transaction
        // rolls back on drop), so a poisoned lock is still usable.
        let mut conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, LogsError>) -> Result<T, LogsError> {
        let Some(path) = &self.path else {
            // An in-memory database lives in one connection.
            let conn = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            return f(&conn);
        };
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open(path)?;
                configure(&conn, true)?;
                conn
            }
        };
        // One read transaction, so multi-statement reads see one snapshot.
        conn.execute_batch("BEGIN")?;
        let value = f(&conn);
        let _ = conn.execute_batch("COMMIT");
        let mut pool = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        value
    }

    // ---- groups ----

    pub fn create_group(&self, group: &GroupRecord) -> Result<(), LogsError> {
        self.write(|tx| {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT id FROM log_groups WHERE name = ?1",
                    [&group.name],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(LogsError::ResourceAlreadyExists(
                    "The specified log group already exists".to_string(),
                ));
            }
            let count: i64 = tx.query_row("SELECT count(*) FROM log_groups", [], |r| r.get(0))?;
            if count >= MAX_GROUPS {
                // guessed
                return Err(LogsError::LimitExceeded(
                    "Resource limit exceeded.".to_string(),
                ));
            }
            // An explicit id above every pending purge's (see `log_purges`): SQLite would
            // otherwise reuse a just-deleted group's id.
            tx.execute(
                "INSERT INTO log_groups (id, name, creation_time, retention_days, log_group_class,
                    kms_key_id, deletion_protection, tags, stored_bytes)
                 VALUES (max(coalesce((SELECT max(id) FROM log_groups), 0),
                             coalesce((SELECT max(group_id) FROM log_purges), 0)) + 1,
                         ?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
                params![
                    group.name,
                    group.creation_time,
                    group.retention_days,
                    group.log_group_class,
                    group.kms_key_id,
                    group.deletion_protection,
                    tags_json(&group.tags),
                ],
            )?;
            Ok(())
        })
    }

    pub fn get_group(&self, name: &str) -> Result<GroupRecord, LogsError> {
        self.read(|conn| {
            group_row(conn, name)?
                .map(|(_, g)| g)
                .ok_or_else(LogsError::group_not_found)
        })
    }

    /// Read-modify-write one group's settings (retention, tags, deletion protection).
    pub fn update_group(
        &self,
        name: &str,
        change: impl FnOnce(&mut GroupRecord) -> Result<(), LogsError>,
    ) -> Result<GroupRecord, LogsError> {
        self.write(|tx| {
            let (id, mut group) = group_row(tx, name)?.ok_or_else(LogsError::group_not_found)?;
            change(&mut group)?;
            tx.execute(
                "UPDATE log_groups SET retention_days = ?2, deletion_protection = ?3, tags = ?4
                 WHERE id = ?1",
                params![
                    id,
                    group.retention_days,
                    group.deletion_protection,
                    tags_json(&group.tags)
                ],
            )?;
            Ok(group)
        })
    }

    /// Delete a group and its streams at once; its events are left for `purge_deleted`, which
    /// removes them in batches. Deleting millions of events in this one transaction would hold
    /// the writer lock long enough for every PutLogEvents to time out (and agents to re-send,
    /// duplicating events).
    pub fn delete_group(&self, name: &str) -> Result<(), LogsError> {
        self.write(|tx| {
            let (id, group) = group_row(tx, name)?.ok_or_else(LogsError::group_not_found)?;
            if group.deletion_protection {
                // guessed
                return Err(LogsError::Validation(
                    "Log group deletion protection is enabled. Disable deletion protection before deleting the log group.".to_string(),
                ));
            }
            tx.execute(
                "INSERT OR REPLACE INTO log_purges (group_id, max_stream_id)
                 VALUES (?1, coalesce((SELECT max(id) FROM log_streams), 0))",
                [id],
            )?;
            tx.execute("DELETE FROM log_streams WHERE group_id = ?1", [id])?;
            tx.execute("DELETE FROM log_groups WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    /// Delete the events of deleted groups, `DELETE_BATCH` per transaction, until none are
    /// pending; a purge survives a restart (its `log_purges` row goes with its last batch).
    /// Returns how many events went; 0 at once if another purge is running (a group deleted
    /// just as that one finishes waits for the next retention sweep).
    pub fn purge_deleted(&self) -> Result<u64, LogsError> {
        struct Running<'a>(&'a AtomicBool);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        if self.purging.swap(true, Ordering::AcqRel) {
            return Ok(0);
        }
        let _running = Running(&self.purging);
        let mut total = 0u64;
        loop {
            let pending: Vec<i64> = self.read(|conn| {
                let mut stmt = conn.prepare_cached("SELECT group_id FROM log_purges")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })?;
            if pending.is_empty() {
                return Ok(total);
            }
            for group_id in pending {
                total += self.purge_group(group_id)?;
            }
        }
    }

    /// One deleted group's events, a batch per transaction; the last batch drops its purge row.
    fn purge_group(&self, group_id: i64) -> Result<u64, LogsError> {
        let mut total = 0u64;
        loop {
            let deleted = self.write(|tx| {
                let deleted = tx
                    .prepare_cached(
                        "DELETE FROM log_events WHERE seq IN (
                            SELECT seq FROM log_events WHERE group_id = ?1 LIMIT ?2)",
                    )?
                    .execute(params![group_id, DELETE_BATCH])?;
                if (deleted as i64) < DELETE_BATCH {
                    tx.execute("DELETE FROM log_purges WHERE group_id = ?1", [group_id])?;
                }
                Ok(deleted)
            })?;
            total += deleted as u64;
            if (deleted as i64) < DELETE_BATCH {
                return Ok(total);
            }
        }
    }

    /// Groups in ASCII name order.
    pub fn list_groups(&self, query: &GroupQuery) -> Result<Vec<GroupRecord>, LogsError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, creation_time, retention_days, log_group_class, kms_key_id,
                        deletion_protection, tags, stored_bytes
                 FROM log_groups
                 WHERE (?1 IS NULL OR name > ?1)
                   AND (?2 IS NULL OR substr(name, 1, length(?2)) = ?2)
                   AND (?3 IS NULL OR instr(name, ?3) > 0)
                 ORDER BY name",
            )?;
            let rows = stmt.query_map(
                params![query.after, query.prefix, query.contains],
                read_group,
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (_, group) = row?;
                if let Some(names) = &query.names {
                    if !names.contains(&group.name) {
                        continue;
                    }
                }
                if let Some(classes) = &query.classes {
                    if !classes.contains(&group.log_group_class) {
                        continue;
                    }
                }
                out.push(group);
                if out.len() >= query.limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    // ---- streams ----

    pub fn create_stream(&self, group: &str, stream: &str, now: i64) -> Result<(), LogsError> {
        self.write(|tx| {
            let (group_id, _) = group_row(tx, group)?.ok_or_else(LogsError::group_not_found)?;
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT id FROM log_streams WHERE group_id = ?1 AND name = ?2",
                    params![group_id, stream],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(LogsError::ResourceAlreadyExists(
                    "The specified log stream already exists".to_string(),
                ));
            }
            // An explicit id above every pending purge's (see `log_purges`), and -1 for "no
            // events" even in a database whose column still defaults to NULL.
            tx.execute(
                "INSERT INTO log_streams (id, group_id, name, creation_time, last_event_ts)
                 VALUES (max(coalesce((SELECT max(id) FROM log_streams), 0),
                             coalesce((SELECT max(max_stream_id) FROM log_purges), 0)) + 1,
                         ?1, ?2, ?3, -1)",
                params![group_id, stream, now],
            )?;
            Ok(())
        })
    }

    pub fn delete_stream(&self, group: &str, stream: &str) -> Result<(), LogsError> {
        self.write(|tx| {
            let (group_id, _) = group_row(tx, group)?.ok_or_else(LogsError::group_not_found)?;
            let (stream_id, record) =
                stream_row(tx, group_id, stream)?.ok_or_else(LogsError::stream_not_found)?;
            tx.execute("DELETE FROM log_events WHERE stream_id = ?1", [stream_id])?;
            tx.execute("DELETE FROM log_streams WHERE id = ?1", [stream_id])?;
            tx.execute(
                "UPDATE log_groups SET stored_bytes = max(0, stored_bytes - ?2) WHERE id = ?1",
                params![group_id, record.stored_bytes],
            )?;
            Ok(())
        })
    }

    pub fn get_stream(&self, group: &str, stream: &str) -> Result<StreamRecord, LogsError> {
        self.read(|conn| {
            let (group_id, _) = group_row(conn, group)?.ok_or_else(LogsError::group_not_found)?;
            stream_row(conn, group_id, stream)?
                .map(|(_, s)| s)
                .ok_or_else(LogsError::stream_not_found)
        })
    }

    /// One page of a group's streams.
    pub fn list_streams(
        &self,
        group: &str,
        order: StreamOrder,
        descending: bool,
        prefix: Option<&str>,
        after: Option<&StreamAfter>,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, LogsError> {
        self.read(|conn| {
            let (group_id, _) = group_row(conn, group)?.ok_or_else(LogsError::group_not_found)?;
            let sql = list_streams_sql(order, descending, after.is_some());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    group_id,
                    prefix,
                    after.map(|a| a.name.as_str()),
                    after.map(|a| a.last_event_ts.unwrap_or(-1)),
                    limit as i64
                ],
                read_stream,
            )?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.1);
            }
            Ok(out)
        })
    }

    // ---- events ----

    /// Append accepted events (already validated and in chronological order) to a stream.
    /// Returns the stream's new `last_seq`.
    pub fn put_events(
        &self,
        group: &str,
        stream: &str,
        events: &[(i64, String)],
        now: i64,
    ) -> Result<i64, LogsError> {
        self.write(|tx| {
            let (group_id, _) = group_row(tx, group)?.ok_or_else(LogsError::group_not_found)?;
            let (stream_id, record) =
                stream_row(tx, group_id, stream)?.ok_or_else(LogsError::stream_not_found)?;
            if events.is_empty() {
                return Ok(record.last_seq);
            }
            let mut bytes = 0i64;
            let mut last_seq = record.last_seq;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO log_events (group_id, stream_id, timestamp, ingestion_time, message)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (timestamp, message) in events {
                    insert.execute(params![group_id, stream_id, timestamp, now, message])?;
                    last_seq = tx.last_insert_rowid();
                    bytes += message.len() as i64;
                }
            }
            let first = events.iter().map(|e| e.0).min().unwrap_or_default();
            let last = events.iter().map(|e| e.0).max().unwrap_or_default();
            tx.execute(
                "UPDATE log_streams SET
                    first_event_ts = min(coalesce(first_event_ts, ?2), ?2),
                    last_event_ts = max(coalesce(last_event_ts, ?3), ?3),
                    last_ingestion_time = ?4,
                    stored_bytes = stored_bytes + ?5,
                    last_seq = ?6
                 WHERE id = ?1",
                params![stream_id, first, last, now, bytes, last_seq],
            )?;
            tx.execute(
                "UPDATE log_groups SET stored_bytes = stored_bytes + ?2 WHERE id = ?1",
                params![group_id, bytes],
            )?;
            Ok(last_seq)
        })
    }

    /// Up to `limit` events of one stream within `[start, end)`, either the first ones after
    /// `cursor` (forward) or the last ones at or before it (backward), stopping before the
    /// events' size (message bytes plus `EVENT_OVERHEAD` each) would pass `max_bytes`; always
    /// at least one event when any remains. Returned in ascending order.
    ///
    /// The cap is applied while reading: a page of `limit` (up to 10,000) large messages read
    /// first and trimmed afterwards could allocate gigabytes for a 1 MB answer.
    #[allow(clippy::too_many_arguments)]
    pub fn stream_events(
        &self,
        group: &str,
        stream: &str,
        start: i64,
        end: i64,
        forward: bool,
        cursor: Cursor,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<EventRecord>, LogsError> {
        self.read(|conn| {
            let (group_id, _) = group_row(conn, group)?.ok_or_else(LogsError::group_not_found)?;
            let (stream_id, _) =
                stream_row(conn, group_id, stream)?.ok_or_else(LogsError::stream_not_found)?;
            let sql = if forward {
                "SELECT seq, timestamp, ingestion_time, message FROM log_events
                 WHERE stream_id = ?1 AND timestamp >= ?2 AND timestamp < ?3
                   AND (timestamp, seq) > (?4, ?5)
                 ORDER BY timestamp ASC, seq ASC LIMIT ?6"
            } else {
                "SELECT seq, timestamp, ingestion_time, message FROM log_events
                 WHERE stream_id = ?1 AND timestamp >= ?2 AND timestamp < ?3
                   AND (timestamp, seq) <= (?4, ?5)
                 ORDER BY timestamp DESC, seq DESC LIMIT ?6"
            };
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query(params![
                stream_id,
                start,
                end,
                cursor.0,
                cursor.1,
                limit as i64
            ])?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            while let Some(row) = rows.next()? {
                // Size the message from SQLite's buffer before copying it out.
                let size = match row.get_ref(3)? {
                    ValueRef::Text(text) | ValueRef::Blob(text) => text.len(),
                    _ => 0,
                } + EVENT_OVERHEAD;
                if !out.is_empty() && bytes + size > max_bytes {
                    break;
                }
                bytes += size;
                out.push(EventRecord {
                    seq: row.get(0)?,
                    timestamp: row.get(1)?,
                    ingestion_time: row.get(2)?,
                    message: row.get(3)?,
                    stream_name: stream.to_string(),
                });
            }
            if !forward {
                out.reverse();
            }
            Ok(out)
        })
    }

    /// Scan a group's events within `[start, end]` (both inclusive) in `(timestamp, seq)` order
    /// from `cursor` (exclusive), examining at most `budget` rows and keeping those `keep`
    /// accepts until `limit` are kept or `max_bytes` of messages are collected.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_group(
        &self,
        group: &str,
        streams: &StreamSelection,
        start: i64,
        end: i64,
        forward: bool,
        cursor: Option<Cursor>,
        budget: usize,
        limit: usize,
        max_bytes: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Scan, LogsError> {
        self.read(|conn| {
            let (group_id, _) = group_row(conn, group)?.ok_or_else(LogsError::group_not_found)?;
            let stream_filter = match streams {
                StreamSelection::All => String::new(),
                StreamSelection::Names(names) => {
                    let ids = stream_ids(conn, group_id, |n| names.iter().any(|x| x == n))?;
                    if ids.is_empty() {
                        return Ok(Scan {
                            matched: Vec::new(),
                            position: cursor,
                            exhausted: true,
                        });
                    }
                    format!(" AND e.stream_id IN ({})", join_ids(&ids))
                }
                StreamSelection::Prefix(prefix) => {
                    let ids = stream_ids(conn, group_id, |n| n.starts_with(prefix.as_str()))?;
                    if ids.is_empty() {
                        return Ok(Scan {
                            matched: Vec::new(),
                            position: cursor,
                            exhausted: true,
                        });
                    }
                    format!(" AND e.stream_id IN ({})", join_ids(&ids))
                }
            };
            let (cmp, dir) = if forward { (">", "ASC") } else { ("<", "DESC") };
            let cursor_clause = if cursor.is_some() {
                format!(" AND (e.timestamp, e.seq) {cmp} (?4, ?5)")
            } else {
                String::new()
            };
            let sql = format!(
                "SELECT e.seq, e.timestamp, e.ingestion_time, e.message, s.name
                 FROM log_events e JOIN log_streams s ON s.id = e.stream_id
                 WHERE e.group_id = ?1 AND e.timestamp >= ?2 AND e.timestamp <= ?3
                 {stream_filter}{cursor_clause}
                 ORDER BY e.timestamp {dir}, e.seq {dir}
                 LIMIT ?6"
            );
            let (cts, cseq) = cursor.unwrap_or((0, 0));
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(params![
                group_id,
                start,
                end,
                cts,
                cseq,
                (budget + 1) as i64
            ])?;
            let mut matched = Vec::new();
            let mut bytes = 0usize;
            let mut position = cursor;
            let mut examined = 0usize;
            let mut exhausted = true;
            while let Some(row) = rows.next()? {
                if examined == budget || matched.len() >= limit {
                    exhausted = false;
                    break;
                }
                let message: String = row.get(3)?;
                let event_bytes = message.len() + EVENT_OVERHEAD;
                if keep(&message) {
                    if !matched.is_empty() && bytes + event_bytes > max_bytes {
                        exhausted = false;
                        break;
                    }
                    bytes += event_bytes;
                    matched.push(EventRecord {
                        seq: row.get(0)?,
                        timestamp: row.get(1)?,
                        ingestion_time: row.get(2)?,
                        message,
                        stream_name: row.get(4)?,
                    });
                }
                examined += 1;
                position = Some((row.get(1)?, row.get(0)?));
            }
            Ok(Scan {
                matched,
                position,
                exhausted,
            })
        })
    }

    // ---- retention ----

    /// Delete every event older than its group's retention as of `now` (epoch ms). Deletes in
    /// batches, each its own transaction, so writers are never blocked for long. Returns how
    /// many events were deleted.
    pub fn sweep(&self, now: i64) -> Result<u64, LogsError> {
        const BATCH: i64 = DELETE_BATCH;
        // Finish group deletions a restart interrupted (a no-op when none are pending).
        if let Err(error) = self.purge_deleted() {
            tracing::warn!(%error, "purging deleted log groups failed");
        }
        let groups: Vec<(i64, i64)> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, retention_days FROM log_groups WHERE retention_days IS NOT NULL",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        let mut total = 0u64;
        for (group_id, days) in groups {
            let cutoff = now - days * 86_400_000;
            loop {
                let deleted = self.write(|tx| {
                    let mut per_stream: BTreeMap<i64, i64> = BTreeMap::new();
                    let mut count = 0i64;
                    {
                        let mut stmt = tx.prepare_cached(
                            "DELETE FROM log_events WHERE seq IN (
                                SELECT seq FROM log_events WHERE group_id = ?1 AND timestamp < ?2
                                ORDER BY timestamp LIMIT ?3)
                             RETURNING stream_id, length(CAST(message AS BLOB))",
                        )?;
                        let mut rows = stmt.query(params![group_id, cutoff, BATCH])?;
                        while let Some(row) = rows.next()? {
                            let stream: i64 = row.get(0)?;
                            let bytes: i64 = row.get(1)?;
                            *per_stream.entry(stream).or_default() += bytes;
                            count += 1;
                        }
                    }
                    let mut group_bytes = 0;
                    for (stream, bytes) in &per_stream {
                        group_bytes += bytes;
                        tx.execute(
                            "UPDATE log_streams SET stored_bytes = max(0, stored_bytes - ?2)
                             WHERE id = ?1",
                            params![stream, bytes],
                        )?;
                    }
                    tx.execute(
                        "UPDATE log_groups SET stored_bytes = max(0, stored_bytes - ?2)
                         WHERE id = ?1",
                        params![group_id, group_bytes],
                    )?;
                    Ok(count)
                })?;
                total += deleted as u64;
                if deleted < BATCH {
                    break;
                }
            }
        }
        Ok(total)
    }
}

fn tags_json(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".to_string())
}

fn read_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, GroupRecord)> {
    let tags: String = r.get(7)?;
    Ok((
        r.get(0)?,
        GroupRecord {
            name: r.get(1)?,
            creation_time: r.get(2)?,
            retention_days: r.get(3)?,
            log_group_class: r.get(4)?,
            kms_key_id: r.get(5)?,
            deletion_protection: r.get(6)?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            stored_bytes: r.get(8)?,
        },
    ))
}

fn read_stream(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, StreamRecord)> {
    // Event timestamps are never negative, so -1 is "no events".
    let last_event_ts: Option<i64> = r.get(4)?;
    Ok((
        r.get(0)?,
        StreamRecord {
            name: r.get(1)?,
            creation_time: r.get(2)?,
            first_event_ts: r.get(3)?,
            last_event_ts: last_event_ts.filter(|ts| *ts >= 0),
            last_ingestion_time: r.get(5)?,
            stored_bytes: r.get(6)?,
            last_seq: r.get(7)?,
        },
    ))
}

fn group_row(conn: &Connection, name: &str) -> Result<Option<(i64, GroupRecord)>, LogsError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, name, creation_time, retention_days, log_group_class, kms_key_id,
                    deletion_protection, tags, stored_bytes
             FROM log_groups WHERE name = ?1",
        )?
        .query_row([name], read_group)
        .optional()?)
}

fn stream_row(
    conn: &Connection,
    group_id: i64,
    name: &str,
) -> Result<Option<(i64, StreamRecord)>, LogsError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, name, creation_time, first_event_ts, last_event_ts,
                    last_ingestion_time, stored_bytes, last_seq
             FROM log_streams WHERE group_id = ?1 AND name = ?2",
        )?
        .query_row(params![group_id, name], read_stream)
        .optional()?)
}

/// DescribeLogStreams' query. Streams without events have `last_event_ts` -1 (before all), so
/// both orders are plain column orders that the `(group_id, name)` and
/// `log_streams_by_last_event` indexes serve, and the continuation point is a separate query
/// (not `?3 IS NULL OR …`) so that SQLite can seek to it instead of scanning from the start.
fn list_streams_sql(order: StreamOrder, descending: bool, after: bool) -> String {
    let (cmp, order_by) = match (order, descending) {
        (StreamOrder::Name, false) => ("name > ?3", "name ASC"),
        (StreamOrder::Name, true) => ("name < ?3", "name DESC"),
        (StreamOrder::LastEventTime, false) => (
            "(last_event_ts, name) > (?4, ?3)",
            "last_event_ts ASC, name ASC",
        ),
        (StreamOrder::LastEventTime, true) => (
            "(last_event_ts, name) < (?4, ?3)",
            "last_event_ts DESC, name DESC",
        ),
    };
    // ?3 and ?4 are bound either way: with numbered parameters, SQLite counts up to ?5.
    let cmp = if after { cmp } else { "1" };
    format!(
        "SELECT id, name, creation_time, first_event_ts, last_event_ts,
                last_ingestion_time, stored_bytes, last_seq
         FROM log_streams
         WHERE group_id = ?1
           AND (?2 IS NULL OR substr(name, 1, length(?2)) = ?2)
           AND {cmp}
         ORDER BY {order_by}
         LIMIT ?5"
    )
}

fn stream_ids(
    conn: &Connection,
    group_id: i64,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<i64>, LogsError> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM log_streams WHERE group_id = ?1")?;
    let rows = stmt.query_map([group_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut ids = Vec::new();
    for row in rows {
        let (id, name) = row?;
        if wanted(&name) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> GroupRecord {
        GroupRecord {
            name: name.to_string(),
            creation_time: 1,
            retention_days: None,
            log_group_class: "STANDARD".to_string(),
            kms_key_id: None,
            deletion_protection: false,
            tags: BTreeMap::new(),
            stored_bytes: 0,
        }
    }

    fn events(list: &[(i64, &str)]) -> Vec<(i64, String)> {
        list.iter().map(|(t, m)| (*t, m.to_string())).collect()
    }

    #[test]
    fn groups_are_unique_and_listed_in_ascii_order() {
        let store = LogStore::in_memory().unwrap();
        for name in ["b", "a/x", "A", "a"] {
            store.create_group(&group(name)).unwrap();
        }
        assert!(matches!(
            store.create_group(&group("a")),
            Err(LogsError::ResourceAlreadyExists(_))
        ));
        let names = |q: &GroupQuery| {
            store
                .list_groups(q)
                .unwrap()
                .into_iter()
                .map(|g| g.name)
                .collect::<Vec<_>>()
        };
        let all = GroupQuery {
            limit: 50,
            ..Default::default()
        };
        assert_eq!(names(&all), ["A", "a", "a/x", "b"]);
        let prefixed = GroupQuery {
            prefix: Some("a".into()),
            ..all.clone()
        };
        assert_eq!(names(&prefixed), ["a", "a/x"]);
        let page = GroupQuery {
            after: Some("a".into()),
            limit: 1,
            ..Default::default()
        };
        assert_eq!(names(&page), ["a/x"]);
        let contains = GroupQuery {
            contains: Some("/".into()),
            ..all
        };
        assert_eq!(names(&contains), ["a/x"]);
    }

    #[test]
    fn events_read_forward_and_backward_in_time_order() {
        let store = LogStore::in_memory().unwrap();
        store.create_group(&group("g")).unwrap();
        store.create_stream("g", "s", 5).unwrap();
        store
            .put_events("g", "s", &events(&[(10, "a"), (20, "b")]), 100)
            .unwrap();
        // A later batch with an earlier timestamp sorts by time, not by arrival.
        store
            .put_events("g", "s", &events(&[(15, "c")]), 101)
            .unwrap();
        let all = store
            .stream_events("g", "s", 0, i64::MAX, true, (0, 0), 10, 1 << 20)
            .unwrap();
        let messages: Vec<_> = all.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["a", "c", "b"]);
        let tail = store
            .stream_events(
                "g",
                "s",
                0,
                i64::MAX,
                false,
                (i64::MAX, i64::MAX),
                2,
                1 << 20,
            )
            .unwrap();
        let messages: Vec<_> = tail.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["c", "b"]);
        let stream = store.get_stream("g", "s").unwrap();
        assert_eq!(stream.first_event_ts, Some(10));
        assert_eq!(stream.last_event_ts, Some(20));
        assert_eq!(stream.last_ingestion_time, Some(101));
        assert_eq!(stream.stored_bytes, 3);
        assert_eq!(store.get_group("g").unwrap().stored_bytes, 3);
    }

    #[test]
    fn scans_respect_budget_and_filters() {
        let store = LogStore::in_memory().unwrap();
        store.create_group(&group("g")).unwrap();
        store.create_stream("g", "s1", 0).unwrap();
        store.create_stream("g", "s2", 0).unwrap();
        store
            .put_events("g", "s1", &events(&[(1, "x1"), (3, "y3")]), 0)
            .unwrap();
        store
            .put_events("g", "s2", &events(&[(2, "x2"), (4, "y4")]), 0)
            .unwrap();
        let keep_x = |m: &str| m.starts_with('x');
        let scan = store
            .scan_group(
                "g",
                &StreamSelection::All,
                0,
                i64::MAX,
                true,
                None,
                100,
                100,
                1 << 20,
                &keep_x,
            )
            .unwrap();
        assert!(scan.exhausted);
        let got: Vec<_> = scan.matched.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(got, ["x1", "x2"]);
        assert_eq!(scan.matched[1].stream_name, "s2");
        // A budget of two rows stops early and says where.
        let scan = store
            .scan_group(
                "g",
                &StreamSelection::All,
                0,
                i64::MAX,
                true,
                None,
                2,
                100,
                1 << 20,
                &|_| true,
            )
            .unwrap();
        assert!(!scan.exhausted);
        assert_eq!(scan.position.map(|p| p.0), Some(2));
        let only_s1 = StreamSelection::Prefix("s1".into());
        let scan = store
            .scan_group(
                "g",
                &only_s1,
                0,
                i64::MAX,
                false,
                None,
                100,
                100,
                1 << 20,
                &|_| true,
            )
            .unwrap();
        let got: Vec<_> = scan.matched.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(got, ["y3", "x1"]);
    }

    #[test]
    fn streams_page_by_name_and_by_last_event_time() {
        let store = LogStore::in_memory().unwrap();
        store.create_group(&group("g")).unwrap();
        for name in ["a", "b", "c", "idle"] {
            store.create_stream("g", name, 0).unwrap();
        }
        store.put_events("g", "b", &events(&[(5, "m")]), 0).unwrap();
        store.put_events("g", "a", &events(&[(9, "m")]), 0).unwrap();
        store.put_events("g", "c", &events(&[(5, "m")]), 0).unwrap();
        let page = |order, descending, after: Option<StreamAfter>| {
            store
                .list_streams("g", order, descending, None, after.as_ref(), 2)
                .unwrap()
                .into_iter()
                .map(|s| (s.last_event_ts, s.name))
                .collect::<Vec<_>>()
        };
        let first = page(StreamOrder::LastEventTime, true, None);
        assert_eq!(first, [(Some(9), "a".into()), (Some(5), "c".into())]);
        let after = StreamAfter {
            last_event_ts: Some(5),
            name: "c".into(),
        };
        let second = page(StreamOrder::LastEventTime, true, Some(after));
        assert_eq!(second, [(Some(5), "b".into()), (None, "idle".into())]);
        let ascending = page(StreamOrder::LastEventTime, false, None);
        assert_eq!(ascending[0], (None, "idle".into()));
        let by_name = page(
            StreamOrder::Name,
            true,
            Some(StreamAfter {
                last_event_ts: None,
                name: "c".into(),
            }),
        );
        assert_eq!(by_name, [(Some(5), "b".into()), (Some(9), "a".into())]);
    }

    #[test]
    fn sweep_deletes_only_expired_events_of_groups_with_retention() {
        let store = LogStore::in_memory().unwrap();
        let mut kept = group("kept");
        kept.retention_days = None;
        let mut short = group("short");
        short.retention_days = Some(1);
        store.create_group(&kept).unwrap();
        store.create_group(&short).unwrap();
        let day = 86_400_000;
        for g in ["kept", "short"] {
            store.create_stream(g, "s", 0).unwrap();
            store
                .put_events(g, "s", &events(&[(0, "old"), (2 * day, "new")]), 0)
                .unwrap();
        }
        assert_eq!(store.sweep(2 * day + 1).unwrap(), 1);
        let left = store
            .stream_events("short", "s", 0, i64::MAX, true, (0, 0), 10, 1 << 20)
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(store.get_group("short").unwrap().stored_bytes, 3);
        let untouched = store
            .stream_events("kept", "s", 0, i64::MAX, true, (0, 0), 10, 1 << 20)
            .unwrap();
        assert_eq!(untouched.len(), 2);
    }

    #[test]
    fn a_file_store_keeps_everything_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            store.create_group(&group("g")).unwrap();
            store.create_stream("g", "s", 0).unwrap();
            store
                .put_events("g", "s", &events(&[(1, "kept")]), 2)
                .unwrap();
        }
        let store = LogStore::open(dir.path()).unwrap();
        let got = store
            .stream_events("g", "s", 0, i64::MAX, true, (0, 0), 10, 1 << 20)
            .unwrap();
        assert_eq!(got[0].message, "kept");
        // Sequence numbers keep growing after a reopen.
        let last = store
            .put_events("g", "s", &events(&[(3, "more")]), 4)
            .unwrap();
        assert!(last > got[0].seq);
    }

    fn event_count(store: &LogStore) -> i64 {
        let conn = store.writer.lock().unwrap();
        conn.query_row("SELECT count(*) FROM log_events", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn stream_pages_stop_at_the_byte_cap_while_reading() {
        let store = LogStore::in_memory().unwrap();
        store.create_group(&group("g")).unwrap();
        store.create_stream("g", "s", 0).unwrap();
        let big = "x".repeat(600_000);
        for t in 0..3 {
            store
                .put_events("g", "s", &[(t, format!("{t}{big}"))], 0)
                .unwrap();
        }
        let cap = 1_048_576;
        let seqs = |forward, cursor, limit, cap| {
            store
                .stream_events("g", "s", 0, i64::MAX, forward, cursor, limit, cap)
                .unwrap()
                .iter()
                .map(|e| e.timestamp)
                .collect::<Vec<_>>()
        };
        // A 10,000-event limit no longer means 10,000 messages read: the page stops at the
        // cap, keeping the end nearest the cursor.
        assert_eq!(seqs(true, (0, 0), 10_000, cap), [0]);
        assert_eq!(seqs(false, (i64::MAX, i64::MAX), 10_000, cap), [2]);
        // At least one event even when it alone is over the cap.
        assert_eq!(seqs(true, (0, 0), 10_000, 10), [0]);
        // Small events: the limit still counts.
        assert_eq!(seqs(true, (0, 0), 2, usize::MAX).len(), 2);
        // The cap counts each event's overhead too.
        store.create_stream("g", "small", 0).unwrap();
        store
            .put_events("g", "small", &events(&[(1, "ab"), (2, "cd")]), 0)
            .unwrap();
        let page = store
            .stream_events(
                "g",
                "small",
                0,
                i64::MAX,
                true,
                (0, 0),
                10,
                2 * (2 + 26) - 1,
            )
            .unwrap();
        assert_eq!(page.len(), 1);
    }

    #[test]
    fn a_deleted_groups_events_go_in_batches_and_never_resurface() {
        let store = LogStore::in_memory().unwrap();
        store.create_group(&group("g")).unwrap();
        store.create_stream("g", "s", 0).unwrap();
        let many: Vec<(i64, String)> = (0..DELETE_BATCH + 7)
            .map(|i| (i, format!("m{i}")))
            .collect();
        store.put_events("g", "s", &many, 0).unwrap();
        store.delete_group("g").unwrap();
        // The group and stream are gone at once; the events wait for the purge, outside the
        // transaction that removed the group (which writers would otherwise queue behind).
        assert!(matches!(
            store.get_group("g"),
            Err(LogsError::ResourceNotFound(_))
        ));
        assert_eq!(event_count(&store), DELETE_BATCH + 7);
        // A group and stream made meanwhile, with the same names, get fresh ids: SQLite would
        // hand the deleted (highest) ids out again, showing the old events in the new stream.
        store.create_group(&group("g")).unwrap();
        store.create_stream("g", "s", 0).unwrap();
        let leaked = store
            .stream_events("g", "s", 0, i64::MAX, true, (0, 0), 10, 1 << 20)
            .unwrap();
        assert!(leaked.is_empty());
        let scan = store
            .scan_group(
                "g",
                &StreamSelection::All,
                0,
                i64::MAX,
                true,
                None,
                100,
                100,
                1 << 20,
                &|_| true,
            )
            .unwrap();
        assert!(scan.matched.is_empty());
        store
            .put_events("g", "s", &events(&[(1, "new")]), 0)
            .unwrap();
        assert_eq!(store.purge_deleted().unwrap(), DELETE_BATCH as u64 + 7);
        assert_eq!(event_count(&store), 1);
        assert_eq!(store.purge_deleted().unwrap(), 0);
        let kept = store
            .stream_events("g", "s", 0, i64::MAX, true, (0, 0), 10, 1 << 20)
            .unwrap();
        assert_eq!(kept[0].message, "new");
    }

    #[test]
    fn an_interrupted_purge_finishes_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            store.create_group(&group("g")).unwrap();
            store.create_stream("g", "s", 0).unwrap();
            store.put_events("g", "s", &events(&[(1, "m")]), 0).unwrap();
            // Deleted, but the process "dies" before purging.
            store.delete_group("g").unwrap();
        }
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(event_count(&store), 1);
        store.create_group(&group("h")).unwrap();
        // The retention sweep picks the purge up.
        store.sweep(0).unwrap();
        assert_eq!(event_count(&store), 0);
    }

    #[test]
    fn stream_listings_page_on_an_index() {
        let store = LogStore::in_memory().unwrap();
        let conn = store.writer.lock().unwrap();
        for order in [StreamOrder::Name, StreamOrder::LastEventTime] {
            for descending in [false, true] {
                for after in [false, true] {
                    let sql = list_streams_sql(order, descending, after);
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                    let plan: Vec<String> = stmt
                        .query_map(params![1, None::<String>, "n", 5, 10], |r| r.get(3))
                        .unwrap()
                        .collect::<Result<_, _>>()
                        .unwrap();
                    let plan = plan.join("; ");
                    let case = format!("{order:?} descending={descending} after={after}: {plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "sorts: {case}");
                    if order == StreamOrder::LastEventTime {
                        assert!(plan.contains("log_streams_by_last_event"), "{case}");
                        if after {
                            // Seeks to the continuation point rather than scanning up to it.
                            assert!(plan.contains("last_event_ts"), "{case}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_older_database_gets_its_null_last_event_times_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The earlier schema: a nullable last_event_ts, NULL for streams without events.
            let conn = Connection::open(dir.path().join("logs.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE log_groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                    creation_time INTEGER NOT NULL, retention_days INTEGER,
                    log_group_class TEXT NOT NULL, kms_key_id TEXT,
                    deletion_protection INTEGER NOT NULL DEFAULT 0,
                    tags TEXT NOT NULL DEFAULT '{}', stored_bytes INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE log_streams (id INTEGER PRIMARY KEY, group_id INTEGER NOT NULL,
                    name TEXT NOT NULL, creation_time INTEGER NOT NULL, first_event_ts INTEGER,
                    last_event_ts INTEGER, last_ingestion_time INTEGER,
                    stored_bytes INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (group_id, name));
                 INSERT INTO log_groups (id, name, creation_time, log_group_class)
                    VALUES (1, 'g', 0, 'STANDARD');
                 INSERT INTO log_streams (group_id, name, creation_time, last_event_ts)
                    VALUES (1, 'idle', 0, NULL), (1, 'busy', 0, 7);",
            )
            .unwrap();
        }
        let store = LogStore::open(dir.path()).unwrap();
        store.create_stream("g", "new", 0).unwrap();
        let listed: Vec<_> = store
            .list_streams("g", StreamOrder::LastEventTime, false, None, None, 10)
            .unwrap()
            .into_iter()
            .map(|s| (s.last_event_ts, s.name))
            .collect();
        assert_eq!(
            listed,
            [
                (None, "idle".to_string()),
                (None, "new".to_string()),
                (Some(7), "busy".to_string())
            ]
        );
        let nulls: i64 = store
            .writer
            .lock()
            .unwrap()
            .query_row(
                "SELECT count(*) FROM log_streams WHERE last_event_ts IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(nulls, 0);
    }

    #[test]
    fn deleting_a_group_removes_its_streams_and_events() {
        let store = LogStore::in_memory().unwrap();
        store.create_group(&group("g")).unwrap();
        store.create_stream("g", "s", 0).unwrap();
        store.put_events("g", "s", &events(&[(1, "m")]), 0).unwrap();
        store.delete_group("g").unwrap();
        store.create_group(&group("g")).unwrap();
        assert!(matches!(
            store.get_stream("g", "s"),
            Err(LogsError::ResourceNotFound(_))
        ));
    }
}
