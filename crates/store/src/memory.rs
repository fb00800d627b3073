//! `MemoryStore`: the in-memory core with nothing behind it. For tests, simulations and
//! throwaway dev setups; everything is lost when it is dropped.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::engine::{lease_ttl_ms, spawn_ticker, Core, State, StoreConfig};
use crate::{
    KeyValue, LeaseId, RangeOptions, RangeResponse, Revision, Store, StoreError, Txn, TxnResponse,
    Watch,
};

/// A non-durable `Store`. Lease expiry runs on a background task (on the tokio runtime that
/// is current at construction, or a small thread if there is none) that stops when the store
/// is dropped.
pub struct MemoryStore {
    core: Arc<Core>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("revision", &self.core.revision())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store at revision 0 with the default configuration.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_config(clock, StoreConfig::default())
    }

    /// An empty store with explicit tuning (history size, watcher buffers, lease tick).
    pub fn with_config(clock: Arc<dyn Clock>, config: StoreConfig) -> Self {
        let core = Arc::new(Core::new(State::new(), clock, config));
        spawn_ticker(
            core.config().lease_tick,
            Arc::downgrade(&core),
            expire_leases,
        );
        Self { core }
    }

    /// Revokes every lease that has expired according to the clock, right now, instead of
    /// waiting for the next background tick. Handy with `ManualClock` in simulations.
    pub fn expire_leases_now(&self) {
        expire_leases(&self.core);
    }
}

fn expire_leases(core: &Core) {
    if core.has_expired_leases() {
        let expired = core.write(|batch| batch.expire());
        tracing::debug!(?expired, "expired leases");
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.core.get(key))
    }

    async fn range(
        &self,
        prefix: &str,
        options: RangeOptions,
    ) -> Result<RangeResponse, StoreError> {
        Ok(self.core.range(prefix, &options))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.core.write(|batch| batch.txn(&txn))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.core.watch(prefix, from)
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId, StoreError> {
        let ttl_ms = lease_ttl_ms(ttl_seconds);
        Ok(self.core.write(|batch| batch.grant(ttl_ms)))
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.core.keep_alive(lease)
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.core.write(|batch| batch.revoke(lease))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.core.revision())
    }
}
