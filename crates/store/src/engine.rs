//! The in-memory core shared by every backend: the current key space, the global revision,
//! transaction evaluation with etcd's rules, leases, and the watch hub.
//!
//! Writes are evaluated against a [`Batch`], an overlay on top of the committed [`State`].
//! The overlay lets a durable backend evaluate several transactions in order (each one seeing
//! the effects of the earlier ones), persist the combined result, and only then apply it to
//! the shared state with [`Core::commit`]. If persisting fails, the overlay is simply thrown
//! away ([`Core::abort`]) and memory never diverges from disk. The in-memory backend runs the
//! same code and applies immediately ([`Core::write`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::{
    Compare, CompareOp, CompareTarget, Event, EventKind, KeyValue, LeaseId, Op, OpResponse,
    RangeOptions, RangeResponse, Revision, StoreError, Txn, TxnResponse, Watch,
};

/// Tuning knobs shared by every backend. `Default` is what production uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// How many recent events the watch hub keeps for `watch(prefix, from)` replays. A watch
    /// from a revision older than the retained window fails with `StoreError::Compacted`.
    pub watch_history_events: usize,
    /// Capacity (in revision groups) of each watcher's channel beyond its initial replay. A
    /// watcher that falls this far behind is closed with `StoreError::Compacted` rather than
    /// slowing writers down.
    pub watch_channel_capacity: usize,
    /// How often the background task looks for expired leases.
    pub lease_tick: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            watch_history_events: 10_000,
            watch_channel_capacity: 1024,
            lease_tick: Duration::from_millis(500),
        }
    }
}

/// Leases shorter than this are rounded up, like etcd's minimum TTL, so a lease cannot expire
/// before its holder had any chance to renew it.
const MIN_LEASE_TTL_MS: i64 = 1_000;

/// Converts a lease TTL in seconds to milliseconds, clamped to the minimum.
pub(crate) fn lease_ttl_ms(ttl_seconds: i64) -> i64 {
    ttl_seconds.saturating_mul(1000).max(MIN_LEASE_TTL_MS)
}

/// A live lease. Expiry is kept in memory only: durable backends persist the TTL and give
/// surviving leases a fresh full TTL on restart, as etcd does after a leader change.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) ttl_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) keys: BTreeSet<String>,
    /// Set while a revocation is evaluated but not yet durable, so a keep-alive racing with it
    /// cannot report success for a lease that is about to disappear.
    pub(crate) revoking: bool,
}

/// The committed state: what readers see.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) kvs: BTreeMap<String, KeyValue>,
    pub(crate) revision: Revision,
    pub(crate) leases: HashMap<LeaseId, Lease>,
    pub(crate) next_lease_id: LeaseId,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            next_lease_id: 1,
            ..Self::default()
        }
    }

    /// Rebuilds the state from persisted rows. Every lease gets a fresh full TTL from `now_ms`.
    pub(crate) fn restore(
        kvs: Vec<KeyValue>,
        revision: Revision,
        leases: Vec<(LeaseId, i64)>,
        next_lease_id: LeaseId,
        now_ms: i64,
    ) -> Self {
        let mut state = Self {
            revision,
            next_lease_id: next_lease_id.max(1),
            ..Self::default()
        };
        for (id, ttl_ms) in leases {
            state.next_lease_id = state.next_lease_id.max(id + 1);
            state.leases.insert(
                id,
                Lease {
                    ttl_ms,
                    expires_at_ms: now_ms + ttl_ms,
                    keys: BTreeSet::new(),
                    revoking: false,
                },
            );
        }
        for kv in kvs {
            if let Some(id) = kv.lease {
                match state.leases.get_mut(&id) {
                    Some(lease) => {
                        lease.keys.insert(kv.key.clone());
                    }
                    // Cannot happen with our own writes (a lease row and its keys go away in
                    // one SQLite transaction), but a hand-edited file should not stop startup.
                    None => {
                        tracing::warn!(key = %kv.key, lease = id, "key is attached to an unknown lease")
                    }
                }
            }
            state.kvs.insert(kv.key.clone(), kv);
        }
        state
    }

    fn range(&self, prefix: &str, options: &RangeOptions) -> RangeResponse {
        let mut kvs = Vec::new();
        let mut more = false;
        for (_, kv) in prefix_range(&self.kvs, prefix, options.start_after.as_deref()) {
            if options.limit > 0 && kvs.len() == options.limit {
                more = true;
                break;
            }
            kvs.push(kv.clone());
        }
        RangeResponse {
            kvs,
            revision: self.revision,
            more,
        }
    }

    fn has_expired_leases(&self, now_ms: i64) -> bool {
        self.leases
            .values()
            .any(|l| !l.revoking && l.expires_at_ms <= now_ms)
    }

    /// Applies a finished batch. Replaying the events in order keeps the lease -> keys index
    /// right even when one batch touches a key several times.
    fn apply(&mut self, outcome: &Outcome, now_ms: i64) {
        for commit in &outcome.commits {
            for &(id, ttl_ms) in &commit.lease_grants {
                self.leases.insert(
                    id,
                    Lease {
                        ttl_ms,
                        expires_at_ms: now_ms + ttl_ms,
                        keys: BTreeSet::new(),
                        revoking: false,
                    },
                );
            }
            for event in commit.events.iter() {
                if let Some(prev) = &event.prev {
                    if let Some(lease) = prev.lease.and_then(|id| self.leases.get_mut(&id)) {
                        lease.keys.remove(&prev.key);
                    }
                }
                match event.kind {
                    EventKind::Put => {
                        if let Some(lease) = event.kv.lease.and_then(|id| self.leases.get_mut(&id))
                        {
                            lease.keys.insert(event.kv.key.clone());
                        }
                        self.kvs.insert(event.kv.key.clone(), event.kv.clone());
                    }
                    EventKind::Delete => {
                        self.kvs.remove(&event.kv.key);
                    }
                }
            }
            for id in &commit.lease_removals {
                self.leases.remove(id);
            }
        }
        self.revision = outcome.revision;
        self.next_lease_id = outcome.next_lease_id;
    }
}

/// Keys starting with `prefix` (and strictly after `start_after`, if given), ascending.
fn prefix_range<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
    start_after: Option<&str>,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    map.range::<str, _>((lower, Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// One unit of change with its own revision: a transaction or a lease revocation. A unit that
/// deleted or wrote no key has no events and did not bump the revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct Commit {
    pub(crate) revision: Revision,
    pub(crate) events: Vec<Event>,
    pub(crate) lease_grants: Vec<(LeaseId, i64)>,
    pub(crate) lease_removals: Vec<LeaseId>,
}

/// The result of evaluating a batch: the per-unit commits (for watchers and in-memory apply)
/// and the final value of every touched row (for persisting).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) commits: Vec<Commit>,
    /// Final state of every key the batch wrote; `None` means deleted.
    pub(crate) kvs: BTreeMap<String, Option<KeyValue>>,
    /// Leases granted (`Some(ttl_ms)`) or removed (`None`) by the batch.
    pub(crate) leases: BTreeMap<LeaseId, Option<i64>>,
    pub(crate) revision: Revision,
    pub(crate) next_lease_id: LeaseId,
}

impl Outcome {
    /// True when nothing needs persisting (only reads, failed compares or no-op deletes).
    pub(crate) fn is_read_only(&self) -> bool {
        self.kvs.is_empty() && self.leases.is_empty()
    }
}

/// An overlay of pending writes on top of the committed state.
pub(crate) struct Batch<'a> {
    base: &'a State,
    now_ms: i64,
    kvs: BTreeMap<String, Option<KeyValue>>,
    leases: BTreeMap<LeaseId, Option<i64>>,
    revision: Revision,
    next_lease_id: LeaseId,
    commits: Vec<Commit>,
}

impl<'a> Batch<'a> {
    fn new(base: &'a State, now_ms: i64) -> Self {
        Self {
            base,
            now_ms,
            kvs: BTreeMap::new(),
            leases: BTreeMap::new(),
            revision: base.revision,
            next_lease_id: base.next_lease_id,
            commits: Vec::new(),
        }
    }

    fn finish(self) -> Outcome {
        Outcome {
            commits: self.commits,
            kvs: self.kvs,
            leases: self.leases,
            revision: self.revision,
            next_lease_id: self.next_lease_id,
        }
    }

    fn get(&self, key: &str) -> Option<&KeyValue> {
        match self.kvs.get(key) {
            Some(pending) => pending.as_ref(),
            None => self.base.kvs.get(key),
        }
    }

    /// Every key under `prefix` as this batch sees it: a merge of the committed keys and the
    /// pending writes, pending ones winning.
    fn range_all(&self, prefix: &str) -> Vec<KeyValue> {
        let mut base = prefix_range(&self.base.kvs, prefix, None).peekable();
        let mut pending = prefix_range(&self.kvs, prefix, None).peekable();
        let mut out = Vec::new();
        loop {
            let take_pending = match (base.peek().copied(), pending.peek().copied()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((bk, _)), Some((pk, _))) => {
                    if bk == pk {
                        // The pending write shadows the committed row.
                        base.next();
                    }
                    pk <= bk
                }
            };
            if take_pending {
                if let Some((_, Some(kv))) = pending.next() {
                    out.push(kv.clone());
                }
            } else if let Some((_, kv)) = base.next() {
                out.push(kv.clone());
            }
        }
        out
    }

    fn lease_exists(&self, id: LeaseId) -> bool {
        match self.leases.get(&id) {
            Some(change) => change.is_some(),
            None => self
                .base
                .leases
                .get(&id)
                .is_some_and(|l| !l.revoking && l.expires_at_ms > self.now_ms),
        }
    }

    fn compare(&self, compare: &Compare) -> bool {
        let kv = self.get(&compare.key);
        let ordering = match &compare.target {
            CompareTarget::ModRevision(r) => kv.map_or(0, |kv| kv.mod_revision).cmp(r),
            CompareTarget::CreateRevision(r) => kv.map_or(0, |kv| kv.create_revision).cmp(r),
            CompareTarget::Version(v) => kv.map_or(0, |kv| kv.version).cmp(v),
            CompareTarget::Value(v) => match kv {
                Some(kv) => kv.value.as_ref().cmp(v.as_ref()),
                // A missing key has no value: every value compare fails, even NotEqual.
                None => return false,
            },
        };
        match compare.op {
            CompareOp::Equal => ordering.is_eq(),
            CompareOp::NotEqual => ordering.is_ne(),
            CompareOp::Less => ordering.is_lt(),
            CompareOp::Greater => ordering.is_gt(),
        }
    }

    fn delete_key(&mut self, key: &str, revision: Revision, events: &mut Vec<Event>) -> bool {
        let Some(prev) = self.get(key).cloned() else {
            return false;
        };
        self.kvs.insert(key.to_string(), None);
        events.push(Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_string(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: revision,
                version: 0,
                lease: None,
            },
            prev: Some(prev),
        });
        true
    }

    /// Evaluates one transaction. On error the batch is left exactly as before.
    pub(crate) fn txn(&mut self, txn: &Txn) -> Result<TxnResponse, StoreError> {
        let succeeded = txn.compares.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        // Check leases before touching anything, so a failing transaction has no partial
        // effects on the batch (later transactions in it must not see them).
        for op in ops {
            if let Op::Put {
                lease: Some(id), ..
            } = op
            {
                if !self.lease_exists(*id) {
                    return Err(StoreError::LeaseNotFound(*id));
                }
            }
        }
        let revision = self.revision + 1;
        let mut events = Vec::new();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op {
                Op::Put { key, value, lease } => {
                    let prev = self.get(key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                        version: prev.as_ref().map_or(0, |p| p.version) + 1,
                        lease: *lease,
                    };
                    self.kvs.insert(key.clone(), Some(kv.clone()));
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev: prev.clone(),
                    });
                    OpResponse::Put { prev }
                }
                Op::Delete { key } => {
                    let deleted = self.delete_key(key, revision, &mut events);
                    OpResponse::Delete {
                        deleted: i64::from(deleted),
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let victims = self.range_all(prefix);
                    for kv in &victims {
                        self.delete_key(&kv.key, revision, &mut events);
                    }
                    OpResponse::Delete {
                        deleted: victims.len() as i64,
                    }
                }
                Op::Get { key } => OpResponse::Get {
                    kv: self.get(key).cloned(),
                },
                Op::Range { prefix } => OpResponse::Range {
                    kvs: self.range_all(prefix),
                },
            };
            responses.push(response);
        }
        // etcd: a transaction that changed nothing does not create a revision.
        if !events.is_empty() {
            self.revision = revision;
            self.commits.push(Commit {
                revision,
                events,
                ..Commit::default()
            });
        }
        Ok(TxnResponse {
            succeeded,
            revision: self.revision,
            responses,
        })
    }

    /// Grants a lease of `ttl_ms`; it starts ticking when the batch is applied.
    pub(crate) fn grant(&mut self, ttl_ms: i64) -> LeaseId {
        let id = self.next_lease_id;
        self.next_lease_id += 1;
        self.leases.insert(id, Some(ttl_ms));
        self.commits.push(Commit {
            revision: self.revision,
            lease_grants: vec![(id, ttl_ms)],
            ..Commit::default()
        });
        id
    }

    /// Revokes a live lease, deleting its keys in one revision.
    pub(crate) fn revoke(&mut self, id: LeaseId) -> Result<(), StoreError> {
        if !self.lease_exists(id) {
            return Err(StoreError::LeaseNotFound(id));
        }
        self.remove_lease(id);
        Ok(())
    }

    /// Revokes every lease that has expired by now; returns their ids.
    pub(crate) fn expire(&mut self) -> Vec<LeaseId> {
        let mut expired: Vec<LeaseId> = self
            .base
            .leases
            .iter()
            .filter(|(id, l)| {
                !l.revoking && l.expires_at_ms <= self.now_ms && !self.leases.contains_key(id)
            })
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        for &id in &expired {
            self.remove_lease(id);
        }
        expired
    }

    fn remove_lease(&mut self, id: LeaseId) {
        // The keys attached as this batch sees it: committed attachments that were not
        // overwritten, plus attachments made earlier in this batch.
        let mut keys = BTreeSet::new();
        if let Some(lease) = self.base.leases.get(&id) {
            for key in &lease.keys {
                if self.get(key).is_some_and(|kv| kv.lease == Some(id)) {
                    keys.insert(key.clone());
                }
            }
        }
        for (key, kv) in &self.kvs {
            if kv.as_ref().is_some_and(|kv| kv.lease == Some(id)) {
                keys.insert(key.clone());
            }
        }
        let revision = self.revision + 1;
        let mut events = Vec::new();
        for key in &keys {
            self.delete_key(key, revision, &mut events);
        }
        if !events.is_empty() {
            self.revision = revision;
        }
        self.leases.insert(id, None);
        self.commits.push(Commit {
            revision: self.revision,
            events,
            lease_removals: vec![id],
            ..Commit::default()
        });
    }
}

/// A registered watcher.
struct Watcher {
    prefix: String,
    /// Only revisions strictly greater than this are delivered.
    after: Revision,
    tx: mpsc::Sender<Result<Vec<Event>, StoreError>>,
}

/// Fans committed events out to watchers and keeps a bounded history for replays.
struct WatchHub {
    history: VecDeque<(Revision, Arc<Vec<Event>>)>,
    history_events: usize,
    /// Every event with a revision <= this one is gone from the history.
    compacted: Revision,
    watchers: Vec<Watcher>,
    history_limit: usize,
    channel_capacity: usize,
}

impl WatchHub {
    fn new(revision: Revision, config: &StoreConfig) -> Self {
        Self {
            history: VecDeque::new(),
            history_events: 0,
            compacted: revision,
            watchers: Vec::new(),
            history_limit: config.watch_history_events.max(1),
            channel_capacity: config.watch_channel_capacity.max(2),
        }
    }

    fn watch(&mut self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let from = from.max(0);
        if from < self.compacted {
            return Err(StoreError::Compacted {
                requested: from,
                oldest: self.compacted + 1,
            });
        }
        let replay: Vec<Vec<Event>> = self
            .history
            .iter()
            .filter(|(rev, _)| *rev > from)
            .filter_map(|(_, events)| filter_events(events, prefix))
            .collect();
        // Size the channel so the whole replay fits and live events still have headroom.
        let (tx, rx) = mpsc::channel(replay.len() + self.channel_capacity);
        for group in replay {
            if tx.try_send(Ok(group)).is_err() {
                // Unreachable: the channel was sized for the replay and nobody reads it yet.
                return Err(StoreError::Backend(
                    "watch replay did not fit its channel".into(),
                ));
            }
        }
        self.watchers.push(Watcher {
            prefix: prefix.to_string(),
            after: from,
            tx,
        });
        Ok(Watch { events: rx })
    }

    fn publish(&mut self, revision: Revision, events: Arc<Vec<Event>>) {
        let compacted = self.compacted;
        self.watchers.retain(|w| {
            if w.tx.is_closed() {
                return false;
            }
            if revision <= w.after {
                return true;
            }
            let Some(group) = filter_events(&events, &w.prefix) else {
                return true;
            };
            // Keep the last slot for the error: a watcher that has fallen this far behind is
            // cut off so it can never make writers wait; it resyncs from a fresh range.
            if w.tx.capacity() <= 1 {
                tracing::warn!(prefix = %w.prefix, revision, "closing slow watcher");
                let _ = w.tx.try_send(Err(StoreError::Compacted {
                    requested: revision - 1,
                    oldest: compacted + 1,
                }));
                return false;
            }
            w.tx.try_send(Ok(group)).is_ok()
        });
        self.history_events += events.len();
        self.history.push_back((revision, events));
        // Always keep the newest revision, even if it alone exceeds the limit.
        while self.history_events > self.history_limit && self.history.len() > 1 {
            if let Some((rev, dropped)) = self.history.pop_front() {
                self.history_events -= dropped.len();
                self.compacted = rev;
            }
        }
    }
}

fn filter_events(events: &[Event], prefix: &str) -> Option<Vec<Event>> {
    let group: Vec<Event> = events
        .iter()
        .filter(|e| e.kv.key.starts_with(prefix))
        .cloned()
        .collect();
    (!group.is_empty()).then_some(group)
}

/// The shared core: committed state, watch hub and clock. Lock order is state, then hub.
pub(crate) struct Core {
    pub(crate) state: RwLock<State>,
    hub: Mutex<WatchHub>,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
}

impl Core {
    pub(crate) fn new(state: State, clock: Arc<dyn Clock>, config: StoreConfig) -> Self {
        let hub = WatchHub::new(state.revision, &config);
        Self {
            state: RwLock::new(state),
            hub: Mutex::new(hub),
            clock,
            config,
        }
    }

    pub(crate) fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    // Lock poisoning only means another thread panicked while holding the lock; every
    // mutation here is computed first and applied without fallible steps, so the data is
    // still consistent and we keep serving rather than cascading the panic.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn hub(&self) -> MutexGuard<'_, WatchHub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        self.read().kvs.get(key).cloned()
    }

    pub(crate) fn range(&self, prefix: &str, options: &RangeOptions) -> RangeResponse {
        self.read().range(prefix, options)
    }

    pub(crate) fn revision(&self) -> Revision {
        self.read().revision
    }

    pub(crate) fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.hub().watch(prefix, from)
    }

    pub(crate) fn keep_alive(&self, id: LeaseId) -> Result<(), StoreError> {
        let now = self.now_ms();
        let mut state = self.write_lock();
        match state.leases.get_mut(&id) {
            Some(lease) if !lease.revoking && lease.expires_at_ms > now => {
                lease.expires_at_ms = now + lease.ttl_ms;
                Ok(())
            }
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    pub(crate) fn has_expired_leases(&self) -> bool {
        self.read().has_expired_leases(self.now_ms())
    }

    /// Evaluates `f` against a fresh batch and applies the result at once (no persistence).
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut Batch<'_>) -> R) -> R {
        let now = self.now_ms();
        let mut state = self.write_lock();
        let mut batch = Batch::new(&state, now);
        let result = f(&mut batch);
        let outcome = batch.finish();
        self.apply_locked(&mut state, &outcome);
        result
    }

    /// First half of a durable write: evaluates `f` against a batch without changing the
    /// committed state, except for marking leases being revoked. Follow with `commit` once the
    /// outcome is durable, or `abort` if persisting failed.
    pub(crate) fn prepare<R>(&self, f: impl FnOnce(&mut Batch<'_>) -> R) -> (R, Outcome) {
        let now = self.now_ms();
        let mut state = self.write_lock();
        let mut batch = Batch::new(&state, now);
        let result = f(&mut batch);
        let outcome = batch.finish();
        for (id, change) in &outcome.leases {
            if change.is_none() {
                if let Some(lease) = state.leases.get_mut(id) {
                    lease.revoking = true;
                }
            }
        }
        (result, outcome)
    }

    /// Applies a prepared outcome that is now durable, and notifies watchers.
    pub(crate) fn commit(&self, outcome: &Outcome) {
        let mut state = self.write_lock();
        self.apply_locked(&mut state, outcome);
    }

    /// Forgets a prepared outcome that could not be persisted.
    pub(crate) fn abort(&self, outcome: &Outcome) {
        let mut state = self.write_lock();
        for (id, change) in &outcome.leases {
            if change.is_none() {
                if let Some(lease) = state.leases.get_mut(id) {
                    lease.revoking = false;
                }
            }
        }
    }

    fn apply_locked(&self, state: &mut State, outcome: &Outcome) {
        state.apply(outcome, self.now_ms());
        // Publishing under the state lock keeps watchers in revision order.
        let mut hub = self.hub();
        for commit in &outcome.commits {
            if !commit.events.is_empty() {
                hub.publish(commit.revision, Arc::new(commit.events.clone()));
            }
        }
    }
}

/// Runs `tick` every `period` for as long as `target` is alive: on the current tokio runtime
/// if there is one, else on a plain thread (so a backend can be built outside a runtime).
pub(crate) fn spawn_ticker<T: Send + Sync + 'static>(
    period: Duration,
    target: Weak<T>,
    tick: fn(&T),
) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    let Some(target) = target.upgrade() else {
                        break;
                    };
                    tick(&target);
                }
            });
        }
        Err(_) => {
            let spawned = std::thread::Builder::new()
                .name("store-lease-ticker".into())
                .spawn(move || loop {
                    // A periodic tick, not a wait for a condition: sleeping is the point.
                    std::thread::sleep(period);
                    let Some(target) = target.upgrade() else {
                        break;
                    };
                    tick(&target);
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "could not start the lease expiry thread; leases will not expire");
            }
        }
    }
}
