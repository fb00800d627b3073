//! The service scheduler: a level-triggered controller keyed by service. Its input is a key
//! (cluster, service name), never an event's payload: a key is queued when something under
//! `ecs/` changes that concerns the service (the service record, one of its tasks, an
//! instance, session or attribute of its cluster), when a load balancer's observed target
//! health changes (every service is looked at: health decides when tasks behind load balancers
//! count as available, and health changes are rare), when a pass asks to look again later (a
//! grace period or a backoff ends), and for every service on each periodic resync. A pass
//! (`ecs::services::reconcile`) re-reads everything it acts on, so a missed wake-up costs
//! latency, never correctness.
//!
//! ```text
//!   store watch (ecs/, elbv2/health/) ──┐
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

use model::ecs::task::Task;
use store::{Event, Watch};
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
/// service (target health changed).
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

/// The key an `ecs/` change wakes, if any.
fn key_for(event: &Event) -> Option<Key> {
    let key = event.kv.key.as_str();
    if key.starts_with(model::elb::keys::HEALTH_PREFIX) {
        return Some(Key::All);
    }
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

/// Queue every service (the resync).
async fn queue_all(ctx: &EcsContext, queue: &mut Queue) -> Result<(), EcsError> {
    let response = ctx
        .store
        .range(keys::SERVICE_PREFIX, Default::default())
        .await?;
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

async fn open_watch(ctx: &EcsContext) -> Result<Watch, EcsError> {
    let revision = ctx.store.revision().await?;
    // Everything: `key_for` picks what concerns services (ECS records and target health).
    Ok(ctx.store.watch("", revision).await?)
}

pub async fn run(ctx: Arc<EcsContext>, settings: ServiceSettings, cancel: CancellationToken) {
    let pacing = Pacing {
        restart_backoff_base: settings.restart_backoff_base,
        restart_backoff_max: settings.restart_backoff_max,
        event_repeat: settings.event_repeat,
    };
    let mut queue = Queue::default();
    let mut watch: Option<Watch> = None;
    let mut resync = tokio::time::interval(settings.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if watch.is_none() {
            // (Re)open the watch first, then resync: nothing between the two is missed.
            match open_watch(&ctx).await {
                Ok(opened) => watch = Some(opened),
                Err(error) => warn!(%error, "service scheduler cannot watch the store; retrying"),
            }
            if let Err(error) = queue_all(&ctx, &mut queue).await {
                warn!(%error, "service scheduler cannot list services; retrying");
            }
        }
        // Work through what is ready before waiting again.
        while let Some(key) = queue.pop() {
            let work = process(&ctx, &pacing, &mut queue, key);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = work => {}
            }
            drain_watch(&mut watch, &mut queue);
        }
        let deadline = queue.next_deadline();
        let delayed = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let next_batch = async {
            match watch.as_mut() {
                Some(w) => w.events.recv().await,
                None => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    None
                }
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            batch = next_batch => match batch {
                Some(Ok(events)) => events.iter().filter_map(key_for).for_each(|k| queue.add(k)),
                // Cut off (too slow, compacted) or closed: reopen and resync.
                _ => watch = None,
            },
            _ = resync.tick() => {
                if let Err(error) = queue_all(&ctx, &mut queue).await {
                    warn!(%error, "service scheduler resync failed");
                }
            }
            _ = delayed => queue.promote_due(),
        }
    }
}

/// Take what the watch already delivered without waiting.
fn drain_watch(watch: &mut Option<Watch>, queue: &mut Queue) {
    let Some(w) = watch.as_mut() else { return };
    loop {
        match w.events.try_recv() {
            Ok(Ok(events)) => events.iter().filter_map(key_for).for_each(|k| queue.add(k)),
            Ok(Err(_)) | Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                *watch = None;
                return;
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return,
        }
    }
}

async fn process(ctx: &EcsContext, pacing: &Pacing, queue: &mut Queue, key: Key) {
    match key {
        Key::All => {
            if let Err(error) = queue_all(ctx, queue).await {
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
