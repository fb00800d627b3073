//! Wharf's state store: the `Store` trait with etcd semantics (keys, global revisions,
//! compare-and-swap transactions, prefix ranges, watches from a revision, leases) and its
//! backends. Every write in Wharf goes through one `Store::txn`.
//!
//! This crate does not know what the keys mean; resource layout lives in `controlplane`.

pub mod clock;
mod engine;
mod memory;
mod sqlite;

pub use engine::StoreConfig;
pub use memory::MemoryStore;
pub use sqlite::{SqliteStats, SqliteStore};

use async_trait::async_trait;
use bytes::Bytes;

/// A global, monotonically increasing store revision. Every committed write transaction that
/// changes at least one key bumps it by one. Revision 0 means "nothing written yet".
pub type Revision = i64;

/// Identifies a lease; keys attached to a lease are deleted when it expires or is revoked.
pub type LeaseId = i64;

/// One key with its value and its etcd-style bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the transaction that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the transaction that last modified the key.
    pub mod_revision: Revision,
    /// Number of modifications since creation (1 after the first put).
    pub version: i64,
    pub lease: Option<LeaseId>,
}

/// What a transaction compares before choosing its branch. A missing key has
/// create_revision = mod_revision = version = 0 and no value (Value compares fail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub target: CompareTarget,
    pub op: CompareOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    ModRevision(Revision),
    CreateRevision(Revision),
    Version(i64),
    Value(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

/// One operation inside a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Bytes,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
    DeletePrefix {
        prefix: String,
    },
    Get {
        key: String,
    },
    Range {
        prefix: String,
    },
}

/// The result of one `Op`, in the same position as the op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    /// For Put: the previous value, if any.
    Put {
        prev: Option<KeyValue>,
    },
    /// For Delete/DeletePrefix: how many keys were deleted.
    Delete {
        deleted: i64,
    },
    Get {
        kv: Option<KeyValue>,
    },
    Range {
        kvs: Vec<KeyValue>,
    },
}

/// An etcd-style transaction: if every compare holds, run `success`, else run `failure`.
/// The whole transaction is atomic and isolated; it is durable once `txn` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store revision after this transaction (unchanged if it wrote nothing).
    pub revision: Revision,
    pub responses: Vec<OpResponse>,
}

/// Options for `Store::range`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Return at most this many keys (0 = no limit).
    pub limit: usize,
    /// Only keys strictly greater than this one (for paging through a prefix).
    pub start_after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResponse {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// The store revision the range was read at.
    pub revision: Revision,
    /// True when `limit` cut the result short.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watcher. For deletes `kv.value` is empty and `kv.mod_revision` is the
/// deleting revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

/// A stream of watch events, delivered in revision order, grouped by revision.
/// Dropping it cancels the watch.
pub struct Watch {
    pub events: tokio::sync::mpsc::Receiver<Result<Vec<Event>, StoreError>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested watch revision is older than the retained history; the watcher must
    /// re-read with `range` and watch from the revision that read returned.
    #[error("required revision {requested} has been compacted (oldest retained is {oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    #[error("the store is shutting down")]
    Closed,
    #[error("storage error: {0}")]
    Backend(String),
}

/// The store contract, with etcd's semantics, implemented by every backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Read one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Read every key starting with `prefix`, in ascending order.
    async fn range(&self, prefix: &str, options: RangeOptions)
        -> Result<RangeResponse, StoreError>;

    /// Run one atomic compare-and-swap transaction; durable when it returns.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;

    /// Watch keys starting with `prefix` for changes after revision `from` (events with
    /// revision > `from`). `from` = current revision gives only future events.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError>;

    /// Grant a lease that expires `ttl_seconds` after its last keep-alive.
    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId, StoreError>;

    /// Renew a lease; errors if it has already expired.
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Revoke a lease now, deleting its keys.
    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// The current store revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Convenience: unconditional put.
    async fn put(&self, key: &str, value: Bytes) -> Result<TxnResponse, StoreError> {
        self.txn(Txn {
            compares: vec![],
            success: vec![Op::Put {
                key: key.to_string(),
                value,
                lease: None,
            }],
            failure: vec![],
        })
        .await
    }

    /// Convenience: unconditional delete.
    async fn delete(&self, key: &str) -> Result<TxnResponse, StoreError> {
        self.txn(Txn {
            compares: vec![],
            success: vec![Op::Delete {
                key: key.to_string(),
            }],
            failure: vec![],
        })
        .await
    }
}
