//! The service scheduler: a level-triggered controller keyed by service. Its input is a key
//! (cluster, service name), never an event's payload: a key is queued when something under
//! `ecs/` changes that concerns the service (the service record, one of its tasks, an
//! instance, session or attribute of its cluster), when a load balancer's observed target
//! health changes (the services whose deployments name that target group: health decides when
//! their tasks count as available), when a pass asks to look again later (a grace period or a
//! backoff ends), and for every service on each periodic resync. A pass
//! (`ecs::services::reconcile`) re-reads everything it acts on, so a missed wake-up costs
//! latency, never correctness.
//!
//! Which services name which target group is an in-memory index (`GroupIndex`) kept from the
//! service records the controller sees: rebuilt on every resync, updated by the watch. Until a
//! resync has built it, a health change wakes every service. Two watches, one on `ecs/` and
//! one on target health, keep other writes (ELBv2 configuration, CloudWatch, …) out of the
//! watchers' buffers, which a burst of unrelated writes could otherwise overflow (a cut-off
//! watch is reopened, followed by a full resync).
//!
//! ```text
//!   watch ecs/ ──────────┐
//!   watch elbv2/health/ ─┤
//!   resync tick ─────────┼──> queue (deduplicated keys; delayed keys) ──> one pass per key
//!   pass: "again at t" ──┘                                                   │
//!                                          writes tasks and the service ─────┘ (and so wakes)
//! ```
//!
//! Passes run one at a time, so two passes never race on one service inside a server; across
//! servers the compare-and-swap writes keep them safe (at worst one retries). Cancelling the
//! token ends the loop between store operations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use model::ecs::service::LoadBalancer;
use model::ecs::task::Task;
use serde::Deserialize;
use store::{Event, EventKind, Watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::ecs::services::reconcile::{reconcile, Pacing};
use crate::ecs::services::ServiceRecord;
use crate::ecs::{keys, EcsContext, EcsError};

/// How the service scheduler paces itself.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Every service is looked at again this often, changed or not.
    pub resync: Duration,
    /// The first delay once tasks keep failing to start (three in a row); it doubles with
    /// every further failure.
    pub restart_backoff_base: Duration,
    /// The longest such delay.
    pub restart_backoff_max: Duration,
    /// An identical placement-failure event is not repeated within this window.
    pub event_repeat: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            resync: Duration::from_secs(15),
            restart_backoff_base: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(15 * 60),
            event_repeat: Duration::from_secs(300),
        }
    }
}

/// What can be queued: one service, every service of a cluster (an instance changed), or every
/// service (target health changed before the index of target groups was built).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Service { cluster: String, name: String },
    Cluster(String),
    All,
}

#[derive(Default)]
struct Queue {
    ready: BTreeSet<Key>,
    later: BTreeMap<Key, Instant>,
}

impl Queue {
    fn add(&mut self, key: Key) {
        self.later.remove(&key);
        self.ready.insert(key);
    }

    fn add_after(&mut self, key: Key, after: Duration) {
        if self.ready.contains(&key) {
            return;
        }
        let at = Instant::now() + after;
        let slot = self.later.entry(key).or_insert(at);
        if at < *slot {
            *slot = at;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.later.values().min().copied()
    }

    fn promote_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Key> = self
            .later
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.later.remove(&key);
            self.ready.insert(key);
        }
    }

    fn pop(&mut self) -> Option<Key> {
        self.ready.pop_first()
    }
}

/// A service as `(cluster, name)`.
type ServiceName = (String, String);

/// The part of a service record the index reads: which target groups its deployments name.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Balanced {
    #[serde(default)]
    wharf_deployments: Vec<BalancedDeployment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BalancedDeployment {
    #[serde(default)]
    wharf_load_balancers: Vec<LoadBalancer>,
}

/// The ids of the target groups a stored service record names (a group's id names its health
/// record, `model::elb::keys::target_health`).
fn group_ids(value: &[u8]) -> BTreeSet<String> {
    let Ok(record) = serde_json::from_slice::<Balanced>(value) else {
        return BTreeSet::new();
    };
    record
        .wharf_deployments
        .iter()
        .flat_map(|d| d.wharf_load_balancers.iter())
        .filter_map(|lb| lb.target_group_arn.as_deref())
        .filter_map(model::elb::parse_target_group_arn)
        .map(|(_, id)| id.to_string())
        .collect()
}

/// Which services name which target group, by group id.
#[derive(Default)]
struct GroupIndex {
    /// Whether a resync has listed every service since the controller started.
    complete: bool,
    by_group: BTreeMap<String, BTreeSet<ServiceName>>,
    /// Each service's groups, with the revision of the record they were read from (a watch
    /// event older than the last resync must not undo it).
    by_service: BTreeMap<ServiceName, (i64, BTreeSet<String>)>,
}

impl GroupIndex {
    /// Record that `service`'s record at `revision` names `groups` (none: deleted).
    fn set(&mut self, service: ServiceName, revision: i64, groups: BTreeSet<String>) {
        if let Some((known, old)) = self.by_service.get(&service) {
            if *known > revision {
                return;
            }
            for group in old.clone() {
                if let Some(services) = self.by_group.get_mut(&group) {
                    services.remove(&service);
                    if services.is_empty() {
                        self.by_group.remove(&group);
                    }
                }
            }
        }
        for group in &groups {
            self.by_group
                .entry(group.clone())
                .or_default()
                .insert(service.clone());
        }
        self.by_service.insert(service, (revision, groups));
    }

    /// What a change of the health of target group `id` wakes. A group no service names wakes
    /// none: a service that comes to name it is queued by its own record's change, and that
    /// pass reads the health as it is then.
    fn keys_for_health(&self, id: &str) -> Vec<Key> {
        if !self.complete {
            return vec![Key::All];
        }
        self.by_group
            .get(id)
            .into_iter()
            .flatten()
            .map(|(cluster, name)| Key::Service {
                cluster: cluster.clone(),
                name: name.clone(),
            })
            .collect()
    }

    /// Rebuild from every service record (the resync).
    fn rebuild(&mut self, kvs: &[store::KeyValue]) {
        *self = GroupIndex::default();
        for kv in kvs {
            if let Some((cluster, name)) = kv.key[keys::SERVICE_PREFIX.len()..].split_once('/') {
                let service = (cluster.to_string(), name.to_string());
                self.set(service, kv.mod_revision, group_ids(&kv.value));
            }
        }
        self.complete = true;
    }

    /// Follow a watch event: service records update the index, target health wakes the
    /// services naming the group, and every other `ecs/` change wakes what `key_for` says.
    fn keys_for(&mut self, event: &Event) -> Vec<Key> {
        let key = event.kv.key.as_str();
        if let Some(id) = key.strip_prefix(model::elb::keys::HEALTH_PREFIX) {
            return self.keys_for_health(id);
        }
        if let Some((cluster, name)) = key
            .strip_prefix(keys::SERVICE_PREFIX)
            .and_then(|rest| rest.split_once('/'))
        {
            let groups = match event.kind {
                EventKind::Put => group_ids(&event.kv.value),
                EventKind::Delete => BTreeSet::new(),
            };
            self.set(
                (cluster.to_string(), name.to_string()),
                event.kv.mod_revision,
                groups,
            );
        }
        key_for(event).into_iter().collect()
    }
}

/// The key an `ecs/` change wakes, if any.
fn key_for(event: &Event) -> Option<Key> {
    let key = event.kv.key.as_str();
    if let Some(rest) = key.strip_prefix(keys::SERVICE_PREFIX) {
        let (cluster, name) = rest.split_once('/')?;
        return Some(Key::Service {
            cluster: cluster.to_string(),
            name: name.to_string(),
        });
    }
    if let Some(rest) = key.strip_prefix("ecs/task/") {
        let cluster = rest.split('/').next()?;
        let task: Task = serde_json::from_slice(&event.kv.value).ok().or_else(|| {
            event
                .prev
                .as_ref()
                .and_then(|p| serde_json::from_slice(&p.value).ok())
        })?;
        let name = task.group.as_deref()?.strip_prefix("service:")?;
        return Some(Key::Service {
            cluster: cluster.to_string(),
            name: name.to_string(),
        });
    }
    if let Some(rest) = key.strip_prefix("ecs/container-instance/") {
        // Every placement rewrites an instance's remaining resources; only a new instance or
        // a changed status (DRAINING, deregistered) concerns the services of its cluster.
        let status = |value: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(value)
                .ok()
                .and_then(|v| v.get("status").cloned())
        };
        let before = event.prev.as_ref().map(|p| status(&p.value));
        if before.is_some_and(|b| b == status(&event.kv.value)) {
            return None;
        }
        return Some(Key::Cluster(rest.split('/').next()?.to_string()));
    }
    // Agents connecting or going away, custom attributes that constraints may read.
    for prefix in ["ecs/agent-session/", "ecs/attribute/"] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return Some(Key::Cluster(rest.split('/').next()?.to_string()));
        }
    }
    None
}

/// Queue every service (the resync), and rebuild the index of their target groups.
async fn queue_all(
    ctx: &EcsContext,
    queue: &mut Queue,
    index: &mut GroupIndex,
) -> Result<(), EcsError> {
    let response = ctx
        .store
        .range(keys::SERVICE_PREFIX, Default::default())
        .await?;
    index.rebuild(&response.kvs);
    for kv in &response.kvs {
        if let Some((cluster, name)) = kv.key[keys::SERVICE_PREFIX.len()..].split_once('/') {
            queue.add(Key::Service {
                cluster: cluster.to_string(),
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// The services of a cluster that are not INACTIVE.
async fn services_of(ctx: &EcsContext, cluster: &str) -> Result<Vec<String>, EcsError> {
    Ok(ctx
        .range_json::<ServiceRecord>(&keys::service_cluster_prefix(cluster))
        .await?
        .into_iter()
        .filter(|(_, r)| r.status() != model::ecs::service::INACTIVE)
        .map(|(_, r)| r.name().to_string())
        .collect())
}

/// The two watches: ECS records, and observed target health.
#[derive(Default)]
struct Watches {
    ecs: Option<Watch>,
    health: Option<Watch>,
}

impl Watches {
    fn open(&self) -> bool {
        self.ecs.is_some() && self.health.is_some()
    }

    /// Open the watches that are not; either may fail (and is tried again).
    async fn reopen(&mut self, ctx: &EcsContext) -> Result<(), EcsError> {
        let revision = ctx.store.revision().await?;
        if self.ecs.is_none() {
            self.ecs = Some(ctx.store.watch("ecs/", revision).await?);
        }
        if self.health.is_none() {
            self.health = Some(
                ctx.store
                    .watch(model::elb::keys::HEALTH_PREFIX, revision)
                    .await?,
            );
        }
        Ok(())
    }
}

/// The next batch of a watch; a closed (or unopened) watch answers `None` after a pause.
async fn next_batch(watch: &mut Option<Watch>) -> Option<Result<Vec<Event>, store::StoreError>> {
    match watch.as_mut() {
        Some(w) => w.events.recv().await,
        None => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}

pub async fn run(ctx: Arc<EcsContext>, settings: ServiceSettings, cancel: CancellationToken) {
    let pacing = Pacing {
        restart_backoff_base: settings.restart_backoff_base,
        restart_backoff_max: settings.restart_backoff_max,
        event_repeat: settings.event_repeat,
    };
    let mut queue = Queue::default();
    let mut index = GroupIndex::default();
    let mut watches = Watches::default();
    let mut resync = tokio::time::interval(settings.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !watches.open() {
            // (Re)open the watches first, then resync: nothing between the two is missed.
            if let Err(error) = watches.reopen(&ctx).await {
                warn!(%error, "service scheduler cannot watch the store; retrying");
            }
            if let Err(error) = queue_all(&ctx, &mut queue, &mut index).await {
                warn!(%error, "service scheduler cannot list services; retrying");
            }
        }
        // Work through what is ready before waiting again.
        while let Some(key) = queue.pop() {
            let work = process(&ctx, &pacing, &mut queue, &mut index, key);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = work => {}
            }
            drain_watch(&mut watches.ecs, &mut queue, &mut index);
            drain_watch(&mut watches.health, &mut queue, &mut index);
        }
        let deadline = queue.next_deadline();
        let delayed = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            batch = next_batch(&mut watches.ecs) => match batch {
                Some(Ok(events)) => take(&events, &mut queue, &mut index),
                // Cut off (too slow, compacted) or closed: reopen and resync.
                _ => watches.ecs = None,
            },
            batch = next_batch(&mut watches.health) => match batch {
                Some(Ok(events)) => take(&events, &mut queue, &mut index),
                _ => watches.health = None,
            },
            _ = resync.tick() => {
                if let Err(error) = queue_all(&ctx, &mut queue, &mut index).await {
                    warn!(%error, "service scheduler resync failed");
                }
            }
            _ = delayed => queue.promote_due(),
        }
    }
}

/// Queue what a batch of watch events wakes.
fn take(events: &[Event], queue: &mut Queue, index: &mut GroupIndex) {
    for event in events {
        for key in index.keys_for(event) {
            queue.add(key);
        }
    }
}

/// Take what a watch already delivered without waiting.
fn drain_watch(watch: &mut Option<Watch>, queue: &mut Queue, index: &mut GroupIndex) {
    let Some(w) = watch.as_mut() else { return };
    loop {
        match w.events.try_recv() {
            Ok(Ok(events)) => take(&events, queue, index),
            Ok(Err(_)) | Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                *watch = None;
                return;
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return,
        }
    }
}

async fn process(
    ctx: &EcsContext,
    pacing: &Pacing,
    queue: &mut Queue,
    index: &mut GroupIndex,
    key: Key,
) {
    match key {
        Key::All => {
            if let Err(error) = queue_all(ctx, queue, index).await {
                warn!(%error, "cannot list the services; retrying");
                queue.add_after(Key::All, Duration::from_secs(1));
            }
        }
        Key::Cluster(cluster) => match services_of(ctx, &cluster).await {
            Ok(names) => {
                for name in names {
                    queue.add(Key::Service {
                        cluster: cluster.clone(),
                        name,
                    });
                }
            }
            Err(error) => {
                warn!(cluster, %error, "cannot list the cluster's services; retrying");
                queue.add_after(Key::Cluster(cluster), Duration::from_secs(1));
            }
        },
        Key::Service { cluster, name } => match reconcile(ctx, pacing, &cluster, &name).await {
            Ok(outcome) => {
                if let Some(after) = outcome.recheck_after {
                    debug!(
                        cluster,
                        service = name,
                        ?after,
                        "service looked at again later"
                    );
                    queue.add_after(Key::Service { cluster, name }, after);
                }
            }
            Err(error) => {
                warn!(cluster, service = name, %error, "service pass failed; retrying");
                queue.add_after(Key::Service { cluster, name }, Duration::from_secs(1));
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: serde_json::Value, revision: i64) -> store::KeyValue {
        store::KeyValue {
            key: key.to_string(),
            value: serde_json::to_vec(&value).unwrap().into(),
            create_revision: 1,
            mod_revision: revision,
            version: 1,
            lease: None,
        }
    }

    fn service(groups: &[&str]) -> serde_json::Value {
        let lbs: Vec<_> = groups
            .iter()
            .map(|id| {
                serde_json::json!({
                    "targetGroupArn": format!("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/n{id}/{id}"),
                    "containerName": "app",
                    "containerPort": 80,
                })
            })
            .collect();
        serde_json::json!({"serviceName": "x", "wharfDeployments": [{"wharfLoadBalancers": lbs}]})
    }

    fn put(key: &str, value: serde_json::Value, revision: i64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: kv(key, value, revision),
            prev: None,
        }
    }

    fn woken(index: &mut GroupIndex, group: &str) -> Vec<Key> {
        let health = put(
            &model::elb::keys::target_health(group),
            serde_json::json!({}),
            100,
        );
        index.keys_for(&health)
    }

    fn one(cluster: &str, name: &str) -> Key {
        Key::Service {
            cluster: cluster.into(),
            name: name.into(),
        }
    }

    #[test]
    fn target_health_wakes_only_the_services_naming_the_group() {
        let mut index = GroupIndex::default();
        // Before the first resync nothing is known: every service.
        assert_eq!(woken(&mut index, "g1"), vec![Key::All]);
        index.rebuild(&[
            kv("ecs/service/c/a", service(&["g1"]), 5),
            kv("ecs/service/c/b", service(&["g1", "g2"]), 6),
            kv("ecs/service/c/plain", service(&[]), 7),
        ]);
        assert_eq!(woken(&mut index, "g1"), vec![one("c", "a"), one("c", "b")]);
        assert_eq!(woken(&mut index, "g2"), vec![one("c", "b")]);
        assert_eq!(woken(&mut index, "unused"), vec![]);

        // The watch follows the records: an update moves a service, a delete removes it, and
        // an event older than what the resync read changes nothing.
        let moved = index.keys_for(&put("ecs/service/c/a", service(&["g2"]), 8));
        assert_eq!(
            moved,
            vec![one("c", "a")],
            "the service's own change wakes it"
        );
        assert_eq!(woken(&mut index, "g1"), vec![one("c", "b")]);
        let deleted = Event {
            kind: EventKind::Delete,
            kv: kv("ecs/service/c/b", serde_json::Value::Null, 9),
            prev: None,
        };
        index.keys_for(&deleted);
        assert_eq!(woken(&mut index, "g2"), vec![one("c", "a")]);
        index.keys_for(&put("ecs/service/c/a", service(&["g1"]), 3));
        assert_eq!(woken(&mut index, "g2"), vec![one("c", "a")]);
        assert_eq!(woken(&mut index, "g1"), vec![]);
    }
}
