//! `SqliteStore`: the durable backend. The whole key space lives in the in-memory core and
//! every read is served from memory; SQLite (WAL, `synchronous=FULL`) is the durable log of
//! the current state.
//!
//! All writes go through one dedicated writer thread that owns the SQLite connection and does
//! group commit: it drains every queued request, evaluates them in order against an overlay
//! of the in-memory state (each sees the effects of the ones before it), writes the combined
//! result in ONE SQLite transaction (one fsync), and only after that commit is durable applies
//! it to memory, notifies watchers and answers the callers. A failed commit discards the
//! overlay, so memory never runs ahead of disk.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::engine::{lease_ttl_ms, spawn_ticker, Batch, Core, Outcome, State, StoreConfig};
use crate::{
    KeyValue, LeaseId, RangeOptions, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse,
    Watch,
};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// Upper bound on requests folded into one SQLite transaction, so one commit stays short and
/// callers at the head of a long queue are not held back indefinitely.
const MAX_BATCH: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key        TEXT PRIMARY KEY NOT NULL,
    value      BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev    INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    lease      INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id     INTEGER PRIMARY KEY NOT NULL,
    ttl_ms INTEGER NOT NULL
);
";

/// Counters describing the writer's group commit, for tests, benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteStats {
    /// SQLite transactions committed; each is one durable WAL fsync.
    pub sqlite_commits: u64,
    /// `Store::txn` calls the writer evaluated, including ones whose compares failed, that
    /// wrote nothing, or whose batch failed to commit.
    pub txns: u64,
    /// Store revisions committed (transactions and lease revocations that changed a key).
    pub revisions: u64,
    /// Batches the writer drained from its queue (read-only batches need no SQLite commit).
    pub batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sqlite_commits: AtomicU64,
    txns: AtomicU64,
    revisions: AtomicU64,
    batches: AtomicU64,
}

/// A request for the writer thread.
enum Command {
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResponse, StoreError>>,
    },
    Grant {
        ttl_ms: i64,
        reply: oneshot::Sender<Result<LeaseId, StoreError>>,
    },
    Revoke {
        lease: LeaseId,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Revoke whatever has expired by now. The ticker does not wait for an answer.
    Expire {
        reply: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
    /// Stop after the requests queued before this one; report how closing the database went.
    Shutdown {
        ack: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
}

/// A request evaluated against the batch, waiting for the commit before it is answered.
enum Evaluated {
    Txn(
        oneshot::Sender<Result<TxnResponse, StoreError>>,
        Result<TxnResponse, StoreError>,
    ),
    Grant(
        oneshot::Sender<Result<LeaseId, StoreError>>,
        Result<LeaseId, StoreError>,
    ),
    Unit(
        Option<oneshot::Sender<Result<(), StoreError>>>,
        Result<(), StoreError>,
    ),
}

/// The caller's final answer: a result computed against a batch whose commit failed becomes
/// an error, because the caller must not believe in a write that is not durable (and a read
/// in that batch may have seen it).
fn settle<T>(result: Result<T, StoreError>, failure: Option<&str>) -> Result<T, StoreError> {
    match (result, failure) {
        (Ok(_), Some(msg)) => Err(StoreError::Backend(msg.to_string())),
        (result, _) => result,
    }
}

impl Evaluated {
    fn answer(self, failure: Option<&str>) {
        // A caller that stopped waiting dropped its receiver; there is nobody to tell.
        match self {
            Evaluated::Txn(reply, result) => drop(reply.send(settle(result, failure))),
            Evaluated::Grant(reply, result) => drop(reply.send(settle(result, failure))),
            Evaluated::Unit(Some(reply), result) => drop(reply.send(settle(result, failure))),
            Evaluated::Unit(None, _) => {}
        }
    }
}

impl Command {
    fn evaluate(self, batch: &mut Batch<'_>, counters: &Counters) -> Evaluated {
        match self {
            Command::Txn { txn, reply } => {
                counters.txns.fetch_add(1, Ordering::Relaxed);
                Evaluated::Txn(reply, batch.txn(&txn))
            }
            Command::Grant { ttl_ms, reply } => Evaluated::Grant(reply, Ok(batch.grant(ttl_ms))),
            Command::Revoke { lease, reply } => Evaluated::Unit(Some(reply), batch.revoke(lease)),
            Command::Expire { reply } => {
                let expired = batch.expire();
                if !expired.is_empty() {
                    tracing::debug!(?expired, "expiring leases");
                }
                Evaluated::Unit(reply, Ok(()))
            }
            // `run_writer` splits the batch at a shutdown, so none reaches evaluation.
            Command::Shutdown { ack } => Evaluated::Unit(ack, Ok(())),
        }
    }

    /// Refuses a request that arrived after shutdown.
    fn reject(self) {
        match self {
            Command::Txn { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Command::Grant { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Command::Revoke { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            Command::Expire { reply } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(StoreError::Closed));
                }
            }
            // A second shutdown request: the store is closing as asked.
            Command::Shutdown { ack } => {
                if let Some(ack) = ack {
                    let _ = ack.send(Ok(()));
                }
            }
        }
    }
}

/// State shared by the store handle and its lease ticker.
struct Shared {
    core: Arc<Core>,
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands.send(command).map_err(|_| StoreError::Closed)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Let the writer finish what is queued and close the database, so the file is free
        // for the next opener once the store is gone.
        let _ = self.commands.send(Command::Shutdown { ack: None });
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
    }
}

/// The durable `Store`. Cheap reads from memory; each write is durable (fsynced) before its
/// call returns.
///
/// The database is opened with `locking_mode=EXCLUSIVE`: only one process (one `SqliteStore`)
/// can use a file at a time, because two in-memory copies of the state would diverge.
pub struct SqliteStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("revision", &self.shared.core.revision())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and loads it into memory.
    ///
    /// This is a synchronous call that does blocking file I/O proportional to the database
    /// size; call it at startup (or from `spawn_blocking`). The lease ticker is spawned on the
    /// current tokio runtime if there is one, otherwise on a small thread.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::open_with_config(path, clock, StoreConfig::default())
    }

    /// `open` with explicit tuning (history size, watcher buffers, lease tick).
    pub fn open_with_config(
        path: &Path,
        clock: Arc<dyn Clock>,
        config: StoreConfig,
    ) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path).map_err(backend)?;
        configure(&conn)?;
        let state = load(&mut conn, clock.now_millis())?;
        tracing::info!(
            path = %path.display(),
            revision = state.revision,
            keys = state.kvs.len(),
            leases = state.leases.len(),
            "opened SQLite store"
        );
        let core = Arc::new(Core::new(state, clock, config));
        let counters = Arc::new(Counters::default());
        let (commands, rx) = mpsc::channel();
        let writer = {
            let core = Arc::clone(&core);
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name("store-sqlite-writer".into())
                .spawn(move || run_writer(conn, &core, &counters, &rx))
                .map_err(backend)?
        };
        let shared = Arc::new(Shared {
            core,
            commands,
            counters,
            writer: Mutex::new(Some(writer)),
        });
        spawn_ticker(
            shared.core.config().lease_tick,
            Arc::downgrade(&shared),
            request_expiry,
        );
        Ok(Self { shared })
    }

    /// Group-commit counters since this store was opened.
    pub fn stats(&self) -> SqliteStats {
        let c = &self.shared.counters;
        SqliteStats {
            sqlite_commits: c.sqlite_commits.load(Ordering::Relaxed),
            txns: c.txns.load(Ordering::Relaxed),
            revisions: c.revisions.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
        }
    }

    /// Revokes every lease that has expired according to the clock, now, instead of waiting
    /// for the next background tick. Returns once that is durable. Handy with `ManualClock`.
    pub async fn expire_leases_now(&self) -> Result<(), StoreError> {
        self.request(|reply| Command::Expire { reply: Some(reply) })
            .await
    }

    /// Finishes queued writes and closes the database; later calls fail with `Closed`.
    /// Dropping the store does the same, without reporting errors.
    pub async fn close(self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.shared.send(Command::Shutdown { ack: Some(ack) })?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.shared.send(make(reply))?;
        // The writer answers every request it takes; a dropped sender means it stopped.
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn request_expiry(shared: &Shared) {
    if shared.core.has_expired_leases() {
        // If the writer is gone the store is shutting down; nothing left to expire.
        let _ = shared.send(Command::Expire { reply: None });
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    // Exclusive locking must be set before the first WAL access; it also means SQLite needs no
    // shared-memory file, and a second opener gets "database is locked" instead of silently
    // forking the state.
    let mode: String = conn
        .pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |row| row.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("exclusive") {
        return Err(StoreError::Backend(format!(
            "could not set exclusive locking mode (got {mode})"
        )));
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "could not enable WAL (journal_mode is {mode})"
        )));
    }
    // FULL: every commit fsyncs the WAL, so an acknowledged write survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    // Every read is served from memory, so SQLite's page cache only serves the writer: a
    // large one keeps B-tree inserts from re-reading pages from the kernel (the default 2 MiB
    // made large batches I/O-bound). It grows only as the file does.
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(backend)?;
    // Checkpoint in larger, rarer steps: a checkpoint runs inline on the writer thread, and
    // the default (every 1000 pages) interrupts large batches often.
    conn.pragma_update(None, "wal_autocheckpoint", 8_192)
        .map_err(backend)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(backend)?;
    Ok(())
}

fn load(conn: &mut Connection, now_ms: i64) -> Result<State, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "database schema version {version} is newer than this build understands ({SCHEMA_VERSION})"
        )));
    }
    tx.execute_batch(SCHEMA).map_err(backend)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(backend)?;

    let meta = |name: &str| -> Result<Option<i64>, StoreError> {
        tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
            row.get(0)
        })
        .optional()
        .map_err(backend)
    };
    let revision = meta("revision")?.unwrap_or(0);
    let next_lease_id = meta("next_lease_id")?.unwrap_or(1);

    let kvs = {
        let mut stmt = tx
            .prepare("SELECT key, value, create_rev, mod_rev, version, lease FROM kv")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(KeyValue {
                    key: row.get(0)?,
                    value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                    create_revision: row.get(2)?,
                    mod_revision: row.get(3)?,
                    version: row.get(4)?,
                    lease: row.get(5)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)?
    };
    let leases = {
        let mut stmt = tx
            .prepare("SELECT id, ttl_ms FROM leases")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)?
    };
    tx.commit().map_err(backend)?;
    Ok(State::restore(kvs, revision, leases, next_lease_id, now_ms))
}

/// Writes a batch's final row states in one transaction; durable when this returns Ok.
fn persist(conn: &mut Connection, outcome: &Outcome) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO kv (key, value, create_rev, mod_rev, version, lease) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, create_rev = excluded.create_rev,
                 mod_rev = excluded.mod_rev, version = excluded.version, lease = excluded.lease",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
        for (key, kv) in &outcome.kvs {
            match kv {
                Some(kv) => {
                    put.execute(params![
                        key,
                        kv.value.as_ref(),
                        kv.create_revision,
                        kv.mod_revision,
                        kv.version,
                        kv.lease
                    ])?;
                }
                None => {
                    delete.execute([key])?;
                }
            }
        }
        let mut grant =
            tx.prepare_cached("INSERT OR REPLACE INTO leases (id, ttl_ms) VALUES (?1, ?2)")?;
        let mut remove = tx.prepare_cached("DELETE FROM leases WHERE id = ?1")?;
        for (id, change) in &outcome.leases {
            match change {
                Some(ttl_ms) => grant.execute([id, ttl_ms])?,
                None => remove.execute([id])?,
            };
        }
        let mut meta = tx.prepare_cached(
            "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?;
        meta.execute(params!["revision", outcome.revision])?;
        meta.execute(params!["next_lease_id", outcome.next_lease_id])?;
    }
    tx.commit()
}

fn run_writer(
    mut conn: Connection,
    core: &Core,
    counters: &Counters,
    rx: &mpsc::Receiver<Command>,
) {
    let mut ack = None;
    // `recv` fails only when every handle is gone, which cannot happen before `Shutdown`
    // since `Shared::drop` sends one; treat it as a shutdown anyway.
    while let Ok(first) = rx.recv() {
        let mut commands = vec![first];
        while commands.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(command) => commands.push(command),
                Err(_) => break,
            }
        }
        let stop_at = commands
            .iter()
            .position(|c| matches!(c, Command::Shutdown { .. }));
        let after_stop = stop_at.map(|at| commands.split_off(at));
        if !commands.is_empty() {
            process_batch(&mut conn, core, counters, commands);
        }
        if let Some(rest) = after_stop {
            let mut rest = rest.into_iter();
            if let Some(Command::Shutdown { ack: a }) = rest.next() {
                ack = a;
            }
            rest.for_each(Command::reject);
            break;
        }
    }
    // Whatever raced in after the shutdown request is refused, not silently dropped.
    rx.try_iter().for_each(Command::reject);
    let result = conn.close().map_err(|(_, error)| backend(error));
    if let Err(error) = &result {
        tracing::error!(%error, "closing the SQLite store failed");
    }
    tracing::debug!("SQLite writer stopped");
    if let Some(ack) = ack {
        let _ = ack.send(result);
    }
}

fn process_batch(conn: &mut Connection, core: &Core, counters: &Counters, commands: Vec<Command>) {
    counters.batches.fetch_add(1, Ordering::Relaxed);
    let (evaluated, outcome) = core.prepare(|batch| {
        commands
            .into_iter()
            .map(|c| c.evaluate(batch, counters))
            .collect::<Vec<_>>()
    });
    let failure = if outcome.is_read_only() {
        None
    } else {
        match persist(conn, &outcome) {
            Ok(()) => {
                counters.sqlite_commits.fetch_add(1, Ordering::Relaxed);
                let revisions = outcome
                    .commits
                    .iter()
                    .filter(|c| !c.events.is_empty())
                    .count() as u64;
                counters.revisions.fetch_add(revisions, Ordering::Relaxed);
                None
            }
            Err(error) => {
                tracing::error!(%error, requests = evaluated.len(), "SQLite commit failed; batch rejected");
                Some(format!("commit failed: {error}"))
            }
        }
    };
    match &failure {
        None if outcome.is_read_only() => {}
        None => core.commit(&outcome),
        Some(_) => core.abort(&outcome),
    }
    // Answer only now: the batch is durable and visible to readers and watchers.
    for evaluated in evaluated {
        evaluated.answer(failure.as_deref());
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.shared.core.get(key))
    }

    async fn range(
        &self,
        prefix: &str,
        options: RangeOptions,
    ) -> Result<RangeResponse, StoreError> {
        Ok(self.shared.core.range(prefix, &options))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.request(|reply| Command::Txn { txn, reply }).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.shared.core.watch(prefix, from)
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId, StoreError> {
        let ttl_ms = lease_ttl_ms(ttl_seconds);
        self.request(|reply| Command::Grant { ttl_ms, reply }).await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        // Expiry deadlines are not persisted (a restart grants a fresh TTL), so renewing a
        // lease needs no write.
        self.shared.core.keep_alive(lease)
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.request(|reply| Command::Revoke { lease, reply }).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.core.revision())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::Op;

    /// Deterministic group commit: while the writer is held back (we hold the state lock it
    /// needs to evaluate), 64 writes queue up; they must land in at most two SQLite commits
    /// (whatever the writer had already drained, then everything else).
    #[tokio::test]
    async fn queued_writes_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open(&dir.path().join("s.db"), Arc::new(ManualClock::new(0))).unwrap();
        let answers: Vec<_> = {
            let _hold = store.shared.core.state.write().unwrap();
            (0..64)
                .map(|i| {
                    let (reply, answer) = oneshot::channel();
                    let txn = Txn {
                        success: vec![Op::Put {
                            key: format!("k{i:02}"),
                            value: Bytes::from_static(b"v"),
                            lease: None,
                        }],
                        ..Txn::default()
                    };
                    store.shared.send(Command::Txn { txn, reply }).unwrap();
                    answer
                })
                .collect()
        };
        let mut revisions = Vec::new();
        for answer in answers {
            revisions.push(answer.await.unwrap().unwrap().revision);
        }
        assert_eq!(
            revisions,
            (1..=64).collect::<Vec<_>>(),
            "queue order is commit order"
        );
        let stats = store.stats();
        assert_eq!((stats.txns, stats.revisions), (64, 64));
        assert!(stats.sqlite_commits <= 2, "{stats:?}");
    }

    #[tokio::test]
    async fn second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let first = SqliteStore::open(&path, clock.clone()).unwrap();
        first.put("k", Bytes::from_static(b"v")).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        let read: rusqlite::Result<i64> =
            conn.query_row("SELECT count(*) FROM kv", [], |row| row.get(0));
        assert!(
            read.is_err(),
            "the file is locked while a store has it open"
        );
        drop(conn);
        first.close().await.unwrap();
        let second = SqliteStore::open(&path, clock).unwrap();
        assert_eq!(second.get("k").await.unwrap().map(|kv| kv.version), Some(1));
    }
}
