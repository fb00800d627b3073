//! Test harness shared by the integration tests: opens either backend behind `&dyn Store`
//! with a `ManualClock`, and can close and reopen the SQLite one on the same file.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use store::clock::ManualClock;
use store::{MemoryStore, SqliteStats, SqliteStore, Store, StoreConfig, StoreError, Watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Sqlite,
}

enum Opened {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
}

pub struct Harness {
    pub backend: Backend,
    pub clock: Arc<ManualClock>,
    pub config: StoreConfig,
    dir: tempfile::TempDir,
    store: Option<Opened>,
}

impl Harness {
    pub fn new(backend: Backend) -> Self {
        Self::with_config(backend, StoreConfig::default())
    }

    pub fn with_config(backend: Backend, config: StoreConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(1_000_000));
        let mut harness = Self {
            backend,
            clock,
            config,
            dir,
            store: None,
        };
        harness.store = Some(harness.open());
        harness
    }

    fn open(&self) -> Opened {
        match self.backend {
            Backend::Memory => Opened::Memory(MemoryStore::with_config(
                self.clock.clone(),
                self.config.clone(),
            )),
            Backend::Sqlite => Opened::Sqlite(
                SqliteStore::open_with_config(
                    &self.dir.path().join("store.db"),
                    self.clock.clone(),
                    self.config.clone(),
                )
                .expect("open SQLite store"),
            ),
        }
    }

    pub fn store(&self) -> &dyn Store {
        match self.store.as_ref().expect("store is open") {
            Opened::Memory(s) => s,
            Opened::Sqlite(s) => s,
        }
    }

    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match self.store.as_ref()? {
            Opened::Sqlite(s) => Some(s),
            Opened::Memory(_) => None,
        }
    }

    pub fn sqlite_stats(&self) -> Option<SqliteStats> {
        self.sqlite().map(SqliteStore::stats)
    }

    /// Closes and reopens the SQLite store on the same file; a no-op for the memory store,
    /// whose state would not survive.
    pub async fn reopen(&mut self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            if let Some(Opened::Sqlite(store)) = self.store.take() {
                store.close().await?;
            }
            self.store = Some(self.open());
        }
        Ok(())
    }

    /// Runs lease expiry now rather than waiting for the background tick.
    pub async fn expire_leases_now(&self) -> Result<(), StoreError> {
        match self.store.as_ref().expect("store is open") {
            Opened::Memory(s) => {
                s.expire_leases_now();
                Ok(())
            }
            Opened::Sqlite(s) => s.expire_leases_now().await,
        }
    }
}

/// Everything already queued on a watch, without waiting: replays are queued by `watch`
/// itself and live events before the write that caused them returns.
pub fn drain(watch: &mut Watch) -> Vec<Result<Vec<store::Event>, StoreError>> {
    let mut out = Vec::new();
    while let Ok(item) = watch.events.try_recv() {
        out.push(item);
    }
    out
}

/// The next item on a watch, or None if nothing arrives within `deadline`.
pub async fn next_within(
    watch: &mut Watch,
    deadline: Duration,
) -> Option<Result<Vec<store::Event>, StoreError>> {
    tokio::time::timeout(deadline, watch.events.recv())
        .await
        .ok()
        .flatten()
}
