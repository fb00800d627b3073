//! Many concurrent writers doing compare-and-swap increments on one counter never lose an
//! update, on both backends; on SQLite the writer folds concurrent requests into shared
//! commits, and a commit that fails leaves memory untouched.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use store::{Compare, CompareOp, CompareTarget, Op, Store, StoreError, Txn};

use common::{Backend, Harness};

const WRITERS: usize = 64;
const INCREMENTS: usize = 5;
const COUNTER: &str = "counter";

async fn increment(store: &dyn Store) -> Result<usize, StoreError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = store.get(COUNTER).await?;
        let (value, compare) = match &current {
            Some(kv) => {
                let text = std::str::from_utf8(&kv.value)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                let n: u64 = text
                    .parse()
                    .map_err(|e: std::num::ParseIntError| StoreError::Backend(e.to_string()))?;
                (n, CompareTarget::ModRevision(kv.mod_revision))
            }
            None => (0, CompareTarget::CreateRevision(0)),
        };
        let txn = Txn {
            compares: vec![Compare {
                key: COUNTER.into(),
                target: compare,
                op: CompareOp::Equal,
            }],
            success: vec![Op::Put {
                key: COUNTER.into(),
                value: Bytes::from((value + 1).to_string()),
                lease: None,
            }],
            failure: vec![],
        };
        if store.txn(txn).await?.succeeded {
            return Ok(attempts);
        }
    }
}

async fn concurrent_cas_increments_lose_nothing(backend: Backend) {
    let harness = Arc::new(Harness::new(backend));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let harness = Arc::clone(&harness);
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0;
            for _ in 0..INCREMENTS {
                attempts += increment(harness.store()).await.unwrap();
            }
            attempts
        }));
    }
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.unwrap();
    }
    let total = WRITERS * INCREMENTS;
    let kv = harness.store().get(COUNTER).await.unwrap().unwrap();
    assert_eq!(kv.value, Bytes::from(total.to_string()));
    assert_eq!(kv.version as usize, total);
    assert_eq!(harness.store().revision().await.unwrap() as usize, total);

    if let Some(stats) = harness.sqlite_stats() {
        assert_eq!(stats.txns as usize, attempts);
        assert_eq!(stats.revisions as usize, total);
        // Every successful increment needs its own revision, but the losing CAS attempts
        // that queued behind it were answered from the same batch without extra commits.
        assert!(stats.sqlite_commits as usize <= total, "{stats:?}");
        assert!(
            stats.batches < stats.txns,
            "concurrent requests were never batched: {stats:?}"
        );
        println!("{stats:?}, {attempts} attempts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_concurrent_cas_increments_lose_nothing() {
    concurrent_cas_increments_lose_nothing(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_cas_increments_lose_nothing() {
    concurrent_cas_increments_lose_nothing(Backend::Sqlite).await;
}

/// A commit that fails (here: a trigger planted in the file) must fail every request of its
/// batch and leave the in-memory state and watchers exactly as before.
#[tokio::test]
async fn failed_commit_leaves_memory_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let clock = Arc::new(store::clock::ManualClock::new(0));
    {
        let store = store::SqliteStore::open(&path, clock.clone()).unwrap();
        store.close().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON kv WHEN NEW.key = 'poison'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    }
    let store = store::SqliteStore::open(&path, clock.clone()).unwrap();
    store.put("fine", Bytes::from_static(b"1")).await.unwrap();
    let mut watch = store.watch("", 1).await.unwrap();

    let err = store
        .put("poison", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(store.revision().await.unwrap(), 1);
    assert!(store.get("poison").await.unwrap().is_none());
    assert!(
        common::drain(&mut watch).is_empty(),
        "no event for a write that did not commit"
    );

    let next = store.put("fine", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(
        next.revision, 2,
        "the failed batch did not consume a revision"
    );
    store.close().await.unwrap();

    let store = store::SqliteStore::open(&path, clock).unwrap();
    assert_eq!(store.revision().await.unwrap(), 2);
    assert!(store.get("poison").await.unwrap().is_none());
    assert_eq!(store.get("fine").await.unwrap().unwrap().version, 2);
}
