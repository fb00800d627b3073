//! Watch edge cases on both backends: bounded history answers `Compacted`, a slow watcher is
//! cut off with `Compacted` instead of stalling writers, dropped watchers are forgotten, and
//! prefix filtering.

mod common;

use std::time::Duration;

use bytes::Bytes;
use store::{StoreConfig, StoreError};

use common::{drain, next_within, Backend, Harness};

async fn old_revisions_are_compacted(backend: Backend) {
    let config = StoreConfig {
        watch_history_events: 5,
        ..StoreConfig::default()
    };
    let harness = Harness::with_config(backend, config);
    let store = harness.store();
    for i in 0..20 {
        store
            .put(&format!("k{}", i % 3), Bytes::from(vec![i]))
            .await
            .unwrap();
    }
    match store.watch("", 2).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!(requested, 2);
            assert_eq!(oldest, 16, "the last five revisions are kept");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut watch = store.watch("", 15).await.unwrap();
    let revisions: Vec<_> = drain(&mut watch)
        .into_iter()
        .map(|g| g.unwrap()[0].kv.mod_revision)
        .collect();
    assert_eq!(revisions, vec![16, 17, 18, 19, 20]);
}

async fn slow_watcher_is_closed_without_blocking_writers(backend: Backend) {
    let config = StoreConfig {
        watch_channel_capacity: 4,
        ..StoreConfig::default()
    };
    let harness = Harness::with_config(backend, config);
    let store = harness.store();
    let mut slow = store.watch("", 0).await.unwrap();
    let mut prompt = store.watch("", 0).await.unwrap();
    for i in 0..10u8 {
        store.put("k", Bytes::from(vec![i])).await.unwrap();
        // The prompt watcher keeps up and must see everything.
        let group = next_within(&mut prompt, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(group[0].kv.mod_revision, i64::from(i) + 1);
    }
    let items = drain(&mut slow);
    assert_eq!(
        items.len(),
        4,
        "three groups, then the error in the reserved slot"
    );
    assert!(items[..3].iter().all(Result::is_ok));
    assert!(matches!(items[3], Err(StoreError::Compacted { .. })));
    assert!(slow.events.recv().await.is_none(), "closed after the error");

    // It can resume from where it was, since that is still in history.
    let mut resumed = store.watch("", 3).await.unwrap();
    assert_eq!(drain(&mut resumed).len(), 7);
}

async fn prefix_and_future_revisions(backend: Backend) {
    let harness = Harness::new(backend);
    let store = harness.store();
    let mut future = store.watch("app/", 2).await.unwrap();
    let dropped = store.watch("", 0).await.unwrap();
    drop(dropped);
    store.put("app/1", Bytes::from_static(b"a")).await.unwrap(); // rev 1: before `from`
    store.put("other", Bytes::from_static(b"b")).await.unwrap(); // rev 2: other prefix
    store.put("app/2", Bytes::from_static(b"c")).await.unwrap(); // rev 3
    store.delete("app/1").await.unwrap(); // rev 4
    store.delete("app/1").await.unwrap(); // no-op: no revision, no event
    let groups: Vec<_> = drain(&mut future).into_iter().map(Result::unwrap).collect();
    let seen: Vec<_> = groups
        .iter()
        .map(|g| (g[0].kv.key.as_str(), g[0].kv.mod_revision))
        .collect();
    assert_eq!(seen, vec![("app/2", 3), ("app/1", 4)]);
    assert!(groups[1][0].kv.value.is_empty());
    assert_eq!(
        groups[1][0].prev.as_ref().map(|p| p.value.clone()),
        Some(Bytes::from_static(b"a"))
    );
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
    old_revisions_are_compacted,
    slow_watcher_is_closed_without_blocking_writers,
    prefix_and_future_revisions
);
