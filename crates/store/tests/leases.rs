//! Lease behaviour on both backends, driven by a `ManualClock`: expiry deletes the attached
//! keys in one revision and emits delete events, keep-alive extends, revoke and lease
//! validation, and (SQLite) leases surviving a reopen with a fresh TTL.

mod common;

use std::time::Duration;

use bytes::Bytes;
use store::{EventKind, LeaseId, Op, RangeOptions, Store, StoreConfig, StoreError, Txn};

use common::{drain, next_within, Backend, Harness};

const WAIT: Duration = Duration::from_secs(10);

async fn put_leased(
    store: &dyn Store,
    key: &str,
    lease: LeaseId,
) -> Result<store::TxnResponse, StoreError> {
    store
        .txn(Txn {
            success: vec![Op::Put {
                key: key.to_string(),
                value: Bytes::from_static(b"v"),
                lease: Some(lease),
            }],
            ..Txn::default()
        })
        .await
}

/// Uses the real background ticker (sped up), not `expire_leases_now`.
async fn expiry_deletes_keys_and_emits_delete_events(backend: Backend) {
    let config = StoreConfig {
        lease_tick: Duration::from_millis(20),
        ..StoreConfig::default()
    };
    let harness = Harness::with_config(backend, config);
    let store = harness.store();
    let lease = store.lease_grant(10).await.unwrap();
    put_leased(store, "l/a", lease).await.unwrap();
    put_leased(store, "l/b", lease).await.unwrap();
    store.put("l/c", Bytes::from_static(b"keep")).await.unwrap();
    let before = store.revision().await.unwrap();
    let mut watch = store.watch("l/", before).await.unwrap();

    harness.clock.advance(Duration::from_secs(9));
    harness.expire_leases_now().await.unwrap();
    assert!(store.get("l/a").await.unwrap().is_some(), "not expired yet");

    harness.clock.advance(Duration::from_secs(2));
    let group = next_within(&mut watch, WAIT)
        .await
        .expect("delete events within the deadline")
        .unwrap();
    let keys: Vec<_> = group
        .iter()
        .map(|e| (e.kind.clone(), e.kv.key.as_str(), e.kv.mod_revision))
        .collect();
    assert_eq!(
        keys,
        vec![
            (EventKind::Delete, "l/a", before + 1),
            (EventKind::Delete, "l/b", before + 1)
        ]
    );
    assert!(group
        .iter()
        .all(|e| e.prev.as_ref().is_some_and(|p| p.lease == Some(lease))));

    assert_eq!(
        store.revision().await.unwrap(),
        before + 1,
        "one revision for the whole expiry"
    );
    let left = store.range("l/", RangeOptions::default()).await.unwrap();
    assert_eq!(
        left.kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        vec!["l/c"]
    );
    assert!(
        matches!(store.lease_keep_alive(lease).await, Err(StoreError::LeaseNotFound(id)) if id == lease)
    );
    assert!(matches!(
        put_leased(store, "l/d", lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

async fn keep_alive_extends(backend: Backend) {
    let harness = Harness::new(backend);
    let store = harness.store();
    let lease = store.lease_grant(10).await.unwrap();
    put_leased(store, "k", lease).await.unwrap();

    harness.clock.advance(Duration::from_secs(6));
    store.lease_keep_alive(lease).await.unwrap();
    harness.clock.advance(Duration::from_secs(6));
    harness.expire_leases_now().await.unwrap();
    assert!(
        store.get("k").await.unwrap().is_some(),
        "12s after grant but only 6s after keep-alive"
    );

    harness.clock.advance(Duration::from_secs(5));
    harness.expire_leases_now().await.unwrap();
    assert!(
        store.get("k").await.unwrap().is_none(),
        "11s after the last keep-alive"
    );
}

async fn keep_alive_after_expiry_fails_even_before_reaping(backend: Backend) {
    let harness = Harness::new(backend);
    let store = harness.store();
    let lease = store.lease_grant(5).await.unwrap();
    harness.clock.advance(Duration::from_secs(6));
    assert!(matches!(
        store.lease_keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        put_leased(store, "k", lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

async fn revoke_deletes_keys_in_one_revision(backend: Backend) {
    let harness = Harness::new(backend);
    let store = harness.store();
    let lease = store.lease_grant(60).await.unwrap();
    let empty = store.lease_grant(60).await.unwrap();
    assert_ne!(lease, empty);
    put_leased(store, "r/1", lease).await.unwrap();
    put_leased(store, "r/2", lease).await.unwrap();
    let rev = store.revision().await.unwrap();
    let mut watch = store.watch("r/", rev).await.unwrap();

    store.lease_revoke(lease).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), rev + 1);
    let groups = drain(&mut watch);
    assert_eq!(groups.len(), 1);
    let group = groups.into_iter().next().unwrap().unwrap();
    assert_eq!(group.len(), 2);
    assert!(group
        .iter()
        .all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == rev + 1));

    assert!(matches!(
        store.lease_revoke(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    // A lease without keys goes away without creating a revision.
    store.lease_revoke(empty).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), rev + 1);
    assert!(matches!(
        store.lease_keep_alive(empty).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

async fn unknown_lease_fails_the_whole_txn(backend: Backend) {
    let harness = Harness::new(backend);
    let store = harness.store();
    let txn = Txn {
        success: vec![
            Op::Put {
                key: "plain".into(),
                value: Bytes::from_static(b"1"),
                lease: None,
            },
            Op::Put {
                key: "leased".into(),
                value: Bytes::from_static(b"2"),
                lease: Some(4242),
            },
        ],
        ..Txn::default()
    };
    assert!(matches!(
        store.txn(txn).await,
        Err(StoreError::LeaseNotFound(4242))
    ));
    assert_eq!(store.revision().await.unwrap(), 0);
    assert!(store.get("plain").await.unwrap().is_none());
}

async fn overwriting_without_lease_detaches(backend: Backend) {
    let harness = Harness::new(backend);
    let store = harness.store();
    let lease = store.lease_grant(60).await.unwrap();
    put_leased(store, "d", lease).await.unwrap();
    store
        .put("d", Bytes::from_static(b"mine now"))
        .await
        .unwrap();
    store.lease_revoke(lease).await.unwrap();
    let kv = store
        .get("d")
        .await
        .unwrap()
        .expect("key survives its old lease");
    assert_eq!((kv.lease, kv.version), (None, 2));
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Memory).await })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
    };
}

on_both_backends!(
    expiry_deletes_keys_and_emits_delete_events,
    keep_alive_extends,
    keep_alive_after_expiry_fails_even_before_reaping,
    revoke_deletes_keys_in_one_revision,
    unknown_lease_fails_the_whole_txn,
    overwriting_without_lease_detaches,
);

/// etcd gives leases a fresh full TTL after a leader change; we do the same after a restart,
/// so a crash cannot make every lease expire at once before its holders reconnect.
#[tokio::test]
async fn sqlite_leases_survive_reopen_with_fresh_ttl() {
    let mut harness = Harness::new(Backend::Sqlite);
    let lease = harness.store().lease_grant(10).await.unwrap();
    put_leased(harness.store(), "s", lease).await.unwrap();
    harness.clock.advance(Duration::from_secs(8));

    harness.reopen().await.unwrap();
    let kv = harness
        .store()
        .get("s")
        .await
        .unwrap()
        .expect("key survives reopen");
    assert_eq!(kv.lease, Some(lease));
    harness.clock.advance(Duration::from_secs(5));
    harness.expire_leases_now().await.unwrap();
    assert!(
        harness.store().get("s").await.unwrap().is_some(),
        "13s after grant, 5s after reopen"
    );
    harness.store().lease_keep_alive(lease).await.unwrap();

    // New leases never reuse an id from before the restart.
    let other = harness.store().lease_grant(10).await.unwrap();
    assert!(other > lease);

    harness.clock.advance(Duration::from_secs(11));
    harness.expire_leases_now().await.unwrap();
    assert!(harness.store().get("s").await.unwrap().is_none());
    harness.reopen().await.unwrap();
    assert!(harness.store().get("s").await.unwrap().is_none());
    assert!(matches!(
        harness.store().lease_keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}
