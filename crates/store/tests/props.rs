//! Property tests run against both backends: random sequences of puts, deletes, ranges and
//! transactions with compares are checked step by step against a deliberately naive
//! reference model, together with revision monotonicity, watch replays and live watches,
//! range paging, and (for SQLite) that closing and reopening yields the same state.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use store::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyValue, Op, OpResponse, RangeOptions,
    Revision, Store, StoreError, Txn, TxnResponse,
};

use common::{drain, Backend, Harness};

const KEYS: &[&str] = &["a", "a/x", "a/y", "a/y/z", "ab", "b", "b/x", "c/1", "c/2"];
const PREFIXES: &[&str] = &["", "a", "a/", "a/y", "b", "b/", "c/", "d"];
/// Prefixes that get a live watcher and replay checks.
const WATCHED: &[&str] = &["", "a/", "c/"];

/// The reference: a full copy of the key space per transaction and linear scans everywhere.
#[derive(Debug, Default)]
struct Model {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
    log: Vec<(Revision, Vec<Event>)>,
}

impl Model {
    fn compare(&self, c: &Compare) -> bool {
        let kv = self.kvs.get(&c.key);
        let (actual, wanted) = match &c.target {
            CompareTarget::ModRevision(r) => (kv.map_or(0, |kv| kv.mod_revision), *r),
            CompareTarget::CreateRevision(r) => (kv.map_or(0, |kv| kv.create_revision), *r),
            CompareTarget::Version(v) => (kv.map_or(0, |kv| kv.version), *v),
            CompareTarget::Value(v) => {
                let Some(kv) = kv else { return false };
                return match c.op {
                    CompareOp::Equal => kv.value == *v,
                    CompareOp::NotEqual => kv.value != *v,
                    CompareOp::Less => kv.value < *v,
                    CompareOp::Greater => kv.value > *v,
                };
            }
        };
        match c.op {
            CompareOp::Equal => actual == wanted,
            CompareOp::NotEqual => actual != wanted,
            CompareOp::Less => actual < wanted,
            CompareOp::Greater => actual > wanted,
        }
    }

    fn txn(&mut self, txn: &Txn) -> TxnResponse {
        let succeeded = txn.compares.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let rev = self.revision + 1;
        let mut kvs = self.kvs.clone();
        let mut events = Vec::new();
        let mut responses = Vec::new();
        let deletion = |prev: KeyValue| Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: prev.key.clone(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: rev,
                version: 0,
                lease: None,
            },
            prev: Some(prev),
        };
        for op in ops {
            responses.push(match op {
                Op::Put { key, value, lease } => {
                    let prev = kvs.get(key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: *lease,
                    };
                    kvs.insert(key.clone(), kv.clone());
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev: prev.clone(),
                    });
                    OpResponse::Put { prev }
                }
                Op::Delete { key } => match kvs.remove(key) {
                    Some(prev) => {
                        events.push(deletion(prev));
                        OpResponse::Delete { deleted: 1 }
                    }
                    None => OpResponse::Delete { deleted: 0 },
                },
                Op::DeletePrefix { prefix } => {
                    let victims: Vec<String> = kvs
                        .keys()
                        .filter(|k| k.starts_with(prefix.as_str()))
                        .cloned()
                        .collect();
                    for key in &victims {
                        if let Some(prev) = kvs.remove(key) {
                            events.push(deletion(prev));
                        }
                    }
                    OpResponse::Delete {
                        deleted: victims.len() as i64,
                    }
                }
                Op::Get { key } => OpResponse::Get {
                    kv: kvs.get(key).cloned(),
                },
                Op::Range { prefix } => OpResponse::Range {
                    kvs: kvs
                        .values()
                        .filter(|kv| kv.key.starts_with(prefix.as_str()))
                        .cloned()
                        .collect(),
                },
            });
        }
        if !events.is_empty() {
            self.revision = rev;
            self.kvs = kvs;
            self.log.push((rev, events));
        }
        TxnResponse {
            succeeded,
            revision: self.revision,
            responses,
        }
    }

    fn under(&self, prefix: &str) -> Vec<KeyValue> {
        self.kvs
            .values()
            .filter(|kv| kv.key.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The groups a watcher on `prefix` from revision `from` must see, in order.
    fn groups_after(&self, from: Revision, prefix: &str) -> Vec<Vec<Event>> {
        self.log
            .iter()
            .filter(|(rev, _)| *rev > from)
            .map(|(_, events)| {
                events
                    .iter()
                    .filter(|e| e.kv.key.starts_with(prefix))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|group| !group.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Action {
    Txn(Txn),
    Put(String, Bytes),
    Delete(String),
    Range {
        prefix: String,
        limit: usize,
        start_after: Option<String>,
    },
    /// Page through a whole prefix with `limit`-sized pages.
    Page {
        prefix: String,
        limit: usize,
    },
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_string)
}

fn prefix() -> impl Strategy<Value = String> {
    prop::sample::select(PREFIXES).prop_map(str::to_string)
}

fn value() -> impl Strategy<Value = Bytes> {
    (0u8..4).prop_map(|v| Bytes::from(vec![b'0' + v]))
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        (0i64..12).prop_map(CompareTarget::ModRevision),
        (0i64..12).prop_map(CompareTarget::CreateRevision),
        (0i64..4).prop_map(CompareTarget::Version),
        value().prop_map(CompareTarget::Value),
    ];
    let op = prop::sample::select(
        &[
            CompareOp::Equal,
            CompareOp::NotEqual,
            CompareOp::Less,
            CompareOp::Greater,
        ][..],
    );
    (key(), target, op).prop_map(|(key, target, op)| Compare { key, target, op })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(key, value)| Op::Put { key, value, lease: None }),
        2 => key().prop_map(|key| Op::Delete { key }),
        1 => prefix().prop_map(|prefix| Op::DeletePrefix { prefix }),
        1 => key().prop_map(|key| Op::Get { key }),
        1 => prefix().prop_map(|prefix| Op::Range { prefix }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let txn = (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op(), 0..4),
        prop::collection::vec(op(), 0..3),
    )
        .prop_map(|(compares, success, failure)| {
            Action::Txn(Txn {
                compares,
                success,
                failure,
            })
        });
    prop_oneof![
        4 => txn,
        3 => (key(), value()).prop_map(|(k, v)| Action::Put(k, v)),
        1 => key().prop_map(Action::Delete),
        1 => (prefix(), 0usize..4, prop::option::of(key()))
            .prop_map(|(prefix, limit, start_after)| Action::Range { prefix, limit, start_after }),
        1 => (prefix(), 1usize..4).prop_map(|(prefix, limit)| Action::Page { prefix, limit }),
    ]
}

fn fail(e: StoreError) -> TestCaseError {
    TestCaseError::fail(format!("store error: {e}"))
}

/// Checks that the store's whole key space and revision equal the model's.
async fn check_state(store: &dyn Store, model: &Model) -> Result<(), TestCaseError> {
    let all = store
        .range("", RangeOptions::default())
        .await
        .map_err(fail)?;
    prop_assert_eq!(&all.kvs, &model.under(""));
    prop_assert_eq!(all.revision, model.revision);
    prop_assert!(!all.more);
    prop_assert_eq!(store.revision().await.map_err(fail)?, model.revision);
    for key in KEYS {
        prop_assert_eq!(
            store.get(key).await.map_err(fail)?,
            model.kvs.get(*key).cloned()
        );
    }
    Ok(())
}

/// Runs `actions` against an open store, checking every answer, then checks live watchers
/// opened at the start and replays from several revisions within this session.
async fn run_session(
    store: &dyn Store,
    model: &mut Model,
    actions: &[Action],
) -> Result<(), TestCaseError> {
    let start = store.revision().await.map_err(fail)?;
    prop_assert_eq!(start, model.revision);
    let mut live = Vec::new();
    for prefix in WATCHED {
        live.push((*prefix, store.watch(prefix, start).await.map_err(fail)?));
    }
    let mut last = start;
    for action in actions {
        match action {
            Action::Txn(txn) => {
                let got = store.txn(txn.clone()).await.map_err(fail)?;
                prop_assert_eq!(&got, &model.txn(txn));
                prop_assert!(got.revision >= last, "revision went backwards");
                last = got.revision;
            }
            Action::Put(key, value) => {
                let got = store.put(key, value.clone()).await.map_err(fail)?;
                let want = model.txn(&Txn {
                    success: vec![Op::Put {
                        key: key.clone(),
                        value: value.clone(),
                        lease: None,
                    }],
                    ..Txn::default()
                });
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(got.revision, last + 1, "a put always creates a revision");
                last = got.revision;
            }
            Action::Delete(key) => {
                let got = store.delete(key).await.map_err(fail)?;
                let want = model.txn(&Txn {
                    success: vec![Op::Delete { key: key.clone() }],
                    ..Txn::default()
                });
                prop_assert_eq!(&got, &want);
                prop_assert!(got.revision >= last);
                last = got.revision;
            }
            Action::Range {
                prefix,
                limit,
                start_after,
            } => {
                let options = RangeOptions {
                    limit: *limit,
                    start_after: start_after.clone(),
                };
                let got = store.range(prefix, options).await.map_err(fail)?;
                let matching: Vec<KeyValue> = model
                    .under(prefix)
                    .into_iter()
                    .filter(|kv| start_after.as_ref().is_none_or(|after| kv.key > *after))
                    .collect();
                let cut = *limit > 0 && matching.len() > *limit;
                let want: Vec<KeyValue> = if cut {
                    matching[..*limit].to_vec()
                } else {
                    matching
                };
                prop_assert_eq!(got.kvs, want);
                prop_assert_eq!(got.more, cut);
                prop_assert_eq!(got.revision, model.revision);
            }
            Action::Page { prefix, limit } => {
                let mut seen = Vec::new();
                let mut start_after = None;
                loop {
                    let page = store
                        .range(
                            prefix,
                            RangeOptions {
                                limit: *limit,
                                start_after: start_after.clone(),
                            },
                        )
                        .await
                        .map_err(fail)?;
                    prop_assert!(page.kvs.len() <= *limit);
                    start_after = page.kvs.last().map(|kv| kv.key.clone());
                    seen.extend(page.kvs);
                    if !page.more {
                        break;
                    }
                    prop_assert!(
                        start_after.is_some(),
                        "a page with more=true must not be empty"
                    );
                }
                prop_assert_eq!(seen, model.under(prefix));
            }
        }
    }
    check_state(store, model).await?;

    for (prefix, mut watch) in live {
        let got: Vec<Vec<Event>> = drain(&mut watch)
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(fail)?;
        prop_assert_eq!(
            got,
            model.groups_after(start, prefix),
            "live watch on {:?}",
            prefix
        );
    }
    let end = model.revision;
    let mut froms = vec![start, (start + end) / 2, (end - 1).max(start), end, end + 3];
    froms.dedup();
    for from in froms {
        for prefix in WATCHED {
            let mut watch = store.watch(prefix, from).await.map_err(fail)?;
            let got: Vec<Vec<Event>> = drain(&mut watch)
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(fail)?;
            prop_assert_eq!(
                got,
                model.groups_after(from, prefix),
                "replay on {:?} from {}",
                prefix,
                from
            );
        }
    }
    Ok(())
}

/// Two sessions of actions. Between them, and after the second, the SQLite store is closed
/// and reopened and must come back with the same keys and revision, refusing watches from
/// before the reopen (the history is gone) and continuing at the next revision.
async fn check_case(
    backend: Backend,
    first: Vec<Action>,
    second: Vec<Action>,
) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(backend);
    let mut model = Model::default();
    run_session(harness.store(), &mut model, &first).await?;

    harness.reopen().await.map_err(fail)?;
    check_state(harness.store(), &model).await?;
    if backend == Backend::Sqlite && model.revision > 0 {
        let old = harness.store().watch("", model.revision - 1).await;
        prop_assert!(
            matches!(old, Err(StoreError::Compacted { .. })),
            "watch before reopen: {:?}",
            old
        );
    }

    run_session(harness.store(), &mut model, &second).await?;
    harness.reopen().await.map_err(fail)?;
    check_state(harness.store(), &model).await?;

    // The revision counter continues where it was, even if every key was deleted.
    let put = harness
        .store()
        .put("z", Bytes::from_static(b"after"))
        .await
        .map_err(fail)?;
    prop_assert_eq!(put.revision, model.revision + 1);
    let z = harness.store().get("z").await.map_err(fail)?;
    prop_assert_eq!(
        z.map(|kv| (kv.create_revision, kv.version)),
        Some((model.revision + 1, 1))
    );
    Ok(())
}

fn run(backend: Backend, first: Vec<Action>, second: Vec<Action>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(format!("runtime: {e}")))?;
    runtime.block_on(check_case(backend, first, second))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memory_matches_model(
        first in prop::collection::vec(action(), 0..40),
        second in prop::collection::vec(action(), 0..20),
    ) {
        run(Backend::Memory, first, second)?;
    }
}

proptest! {
    // Every write here is an fsync: keep the case count modest.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_matches_model(
        first in prop::collection::vec(action(), 0..40),
        second in prop::collection::vec(action(), 0..20),
    ) {
        run(Backend::Sqlite, first, second)?;
    }
}
