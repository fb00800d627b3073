//! The SQLite file behind the engine: its schema, how connections are opened, and the encoding
//! of dimension lists in it.
//!
//! SQLite holds three kinds of data, all written by the engine's single committer:
//! - `wal`: the write-ahead log, one row per group commit, deleted by each checkpoint;
//! - `chunks` and `heads`: sealed chunks and the snapshot of each open head chunk as of the
//!   last checkpoint (the log holds what came after);
//! - `units`, `series`, `lanes`: the dictionaries the chunks refer to.
//!
//! A checkpoint writes chunks, heads and dictionaries and deletes the log rows it covers in one
//! transaction, so recovery is "load the tables, replay whatever log rows remain".

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags};

use crate::codec::{get_varint, put_varint};
use crate::MetricStoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS units (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    metric_name TEXT NOT NULL,
    dims BLOB NOT NULL,
    last_ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lanes (
    id INTEGER PRIMARY KEY,
    series INTEGER NOT NULL,
    unit INTEGER NOT NULL,
    tier INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    lane INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_lane ON chunks (lane, max_ts, min_ts);
CREATE TABLE IF NOT EXISTS heads (lane INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS wal (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
";

/// Bumped when the on-disk format changes incompatibly.
const FORMAT: i64 = 1;

pub fn io(context: &str, e: impl std::fmt::Display) -> MetricStoreError {
    MetricStoreError::Io(format!("{context}: {e}"))
}

/// Where a store's database lives: a file, or a process-private in-memory database that
/// several connections share (SQLite's `memdb` VFS).
#[derive(Debug, Clone)]
pub enum Location {
    File(std::path::PathBuf),
    Memory(String),
}

impl Location {
    pub fn file_in(dir: &Path) -> Result<Location, MetricStoreError> {
        let dir = dir.join("metrics");
        std::fs::create_dir_all(&dir).map_err(|e| io("create metrics directory", e))?;
        Ok(Location::File(dir.join("metrics.db")))
    }

    pub fn fresh_memory() -> Location {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A leading '/' makes memdb share the database between this store's connections.
        Location::Memory(format!(
            "file:/wharf-metrics-{}-{n}?vfs=memdb",
            std::process::id()
        ))
    }

    fn connect(&self) -> Result<Connection, MetricStoreError> {
        let conn = match self {
            Location::File(path) => Connection::open(path),
            Location::Memory(uri) => Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
        }
        .map_err(|e| io("open metrics database", e))?;
        // Readers wait for the committer instead of failing; in memory (no WAL) a commit
        // briefly excludes readers.
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| io("configure metrics database", e))?;
        Ok(conn)
    }

    /// The committer's connection, with the schema in place.
    pub fn open_writer(&self) -> Result<Connection, MetricStoreError> {
        let conn = self.connect()?;
        let setup = || -> rusqlite::Result<()> {
            // Both must precede the first table. 8 KiB pages hold four sealed chunks (see
            // `engine::SEAL_BYTES`) with little slack, where 4 KiB pages fit only two of the
            // shorter chunks a flush or a roll-up leaves. Incremental auto-vacuum lets `compact`
            // hand freed pages (deleted log rows, rewritten chunks) back to the file system.
            conn.pragma_update(None, "page_size", 8192)?;
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            if let Location::File(_) = self {
                conn.pragma_update(None, "journal_mode", "WAL")?;
                // FULL: a commit is on stable storage when it returns (survives power loss,
                // not only kill -9).
                conn.pragma_update(None, "synchronous", "FULL")?;
            }
            conn.execute_batch(SCHEMA)?;
            conn.execute(
                "INSERT OR IGNORE INTO meta (k, v) VALUES ('format', ?1)",
                [FORMAT],
            )?;
            Ok(())
        };
        setup().map_err(|e| io("create metrics schema", e))?;
        let format: i64 = conn
            .query_row("SELECT v FROM meta WHERE k = 'format'", [], |r| r.get(0))
            .map_err(|e| io("read metrics format", e))?;
        if format != FORMAT {
            return Err(MetricStoreError::Io(format!(
                "metrics database has format {format}, this build reads {FORMAT}"
            )));
        }
        Ok(conn)
    }

    pub fn open_reader(&self) -> Result<Connection, MetricStoreError> {
        self.connect()
    }
}

pub fn encode_dims(dims: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in dims {
        for s in [n, v] {
            put_varint(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

pub fn decode_dims(mut data: &[u8]) -> Result<Vec<(String, String)>, MetricStoreError> {
    let mut strings = Vec::new();
    while !data.is_empty() {
        let (len, used) = get_varint(data).ok_or_else(|| io("series dimensions", "bad length"))?;
        let end = used
            .checked_add(len as usize)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| io("series dimensions", "truncated"))?;
        let s = std::str::from_utf8(&data[used..end]).map_err(|e| io("series dimensions", e))?;
        strings.push(s.to_string());
        data = &data[end..];
    }
    if strings.len() % 2 != 0 {
        return Err(io("series dimensions", "odd number of strings"));
    }
    let mut it = strings.into_iter();
    let mut dims = Vec::new();
    while let (Some(n), Some(v)) = (it.next(), it.next()) {
        dims.push((n, v));
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_round_trip() {
        let dims = vec![
            ("ClusterName".to_string(), "prod".to_string()),
            ("ServiceName".to_string(), "".to_string()),
        ];
        assert_eq!(decode_dims(&encode_dims(&dims)).unwrap(), dims);
        assert_eq!(decode_dims(&[]).unwrap(), vec![]);
        assert!(decode_dims(&[5, b'a']).is_err());
    }

    #[test]
    fn memory_databases_are_shared_between_connections_of_one_store_only() {
        let a = Location::fresh_memory();
        let w = a.open_writer().unwrap();
        w.execute("INSERT INTO units (id, name) VALUES (1, 'Percent')", [])
            .unwrap();
        let r = a.open_reader().unwrap();
        let n: i64 = r
            .query_row("SELECT COUNT(*) FROM units", [], |row| row.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let other = Location::fresh_memory().open_writer().unwrap();
        let n: i64 = other
            .query_row("SELECT COUNT(*) FROM units", [], |row| row.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
