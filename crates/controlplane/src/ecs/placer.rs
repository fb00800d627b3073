//! Placement at fleet scale: one `Placer` per cluster keeps a long-lived scheduler and a
//! batching committer, so RunTask costs about O(tasks × log instances) instead of re-reading
//! the cluster, and concurrent calls share one store transaction (and one fsync).
//!
//! ```text
//!  RunTask ─┐                      planner (lock)            committer (lock, batches)
//!  RunTask ─┼─> plan on the speculative scheduler ──> queue ──> re-check capacity on the
//!  RunTask ─┘   (reserves what it places)                       committed records, one txn
//!                                                               comparing every instance's
//!                                                               revision; answer each caller
//! ```
//!
//! Correctness never rests on the planner's view: the committer re-checks every placement
//! against the instance records it last committed or read, and the transaction compares their
//! revisions, so a stale view costs a retry, never an over-committed instance (also with
//! several servers, whose writes show up as revision conflicts). A watch on the store marks the
//! planner stale when anyone else changes the cluster (agents' reports, registrations,
//! sessions, attributes); the next call reloads it.
//!
//! What is persisted: nothing beyond the task and instance records in the store. What is
//! rebuilt: everything here, lazily, from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use model::ecs::container_instance::{integer_resource, string_set_resource};
use scheduler::{PlacementRequest, Plan, Scheduler};
use store::{Compare, Op, Revision, Store, Txn};
use tokio::sync::oneshot;

use super::cluster_state::{ClusterState, InstanceRecord};
use super::placement::{self, TaskNeeds};
use super::tasks::TaskRecord;
use super::{decode, encode, keys, unchanged, EcsContext, EcsError};

/// Every cluster's placer, created on first use.
#[derive(Default)]
pub struct Placers {
    by_cluster: Mutex<HashMap<String, Arc<Placer>>>,
}

impl Placers {
    pub fn get(&self, store: &Arc<dyn Store>, cluster: &str) -> Arc<Placer> {
        let mut placers = self.by_cluster.lock().unwrap_or_else(|p| p.into_inner());
        placers
            .entry(cluster.to_string())
            .or_insert_with(|| Placer::new(store.clone(), cluster))
            .clone()
    }
}

/// The planner's view: a scheduler over the cluster's instances and their records, aligned by
/// index.
struct Planner {
    scheduler: Scheduler,
    records: Vec<InstanceRecord>,
    /// Bumped on every reload, so a plan is only released on the scheduler that made it.
    generation: u64,
}

/// One caller's plan, waiting to be committed.
struct Pending {
    /// (instance id, what one task reserves) per placed task.
    placements: Vec<(String, TaskNeeds)>,
    ops: Vec<Op>,
    compares: Vec<Compare>,
    answer: oneshot::Sender<Result<bool, EcsError>>,
}

pub struct Placer {
    cluster: String,
    store: Arc<dyn Store>,
    planner: tokio::sync::Mutex<Option<Planner>>,
    /// Instance records as last committed or read, with their revisions.
    committed: tokio::sync::Mutex<HashMap<String, (InstanceRecord, Revision)>>,
    queue: Mutex<Vec<Pending>>,
    /// Set by the watch when someone else changed the cluster.
    stale: Arc<AtomicBool>,
    /// Keys this placer is writing or wrote (None while in flight), so the watch can tell
    /// our own writes from everyone else's.
    ours: Arc<Mutex<HashMap<String, OwnWrite>>>,
    /// The key prefixes whose changes can make the planner stale.
    prefixes: Arc<[String; 4]>,
    watch: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Placer {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.lock().unwrap_or_else(|p| p.into_inner()).take() {
            watch.abort();
        }
    }
}

/// A write of this placer's, as the watch should treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnWrite {
    /// Being committed; its revision is not known yet.
    InFlight,
    /// Its echo arrived (at this revision) before the commit returned.
    Seen(Revision),
    /// Committed at this revision; its echo has not arrived yet.
    Written(Revision),
}

/// The outcome of one planning round.
pub struct Planned {
    /// Index into the planner's instances, per task.
    pub records: Vec<InstanceRecord>,
    pub failures: Vec<model::ecs::task::Failure>,
    plan: Plan,
    generation: u64,
}

impl Placer {
    fn new(store: Arc<dyn Store>, cluster: &str) -> Arc<Placer> {
        Arc::new(Placer {
            cluster: cluster.to_string(),
            store,
            planner: tokio::sync::Mutex::new(None),
            committed: tokio::sync::Mutex::new(HashMap::new()),
            queue: Mutex::new(Vec::new()),
            stale: Arc::new(AtomicBool::new(true)),
            ours: Arc::new(Mutex::new(HashMap::new())),
            prefixes: Arc::new([
                keys::container_instance_cluster_prefix(cluster),
                keys::task_cluster_prefix(cluster),
                keys::agent_session_cluster_prefix(cluster),
                keys::attribute_cluster_prefix(cluster),
            ]),
            watch: Mutex::new(None),
        })
    }

    /// Start (once) the watch that notices other writers.
    async fn ensure_watch(&self, from: Revision) -> Result<(), EcsError> {
        let running = {
            let slot = self.watch.lock().unwrap_or_else(|p| p.into_inner());
            slot.as_ref().is_some_and(|w| !w.is_finished())
        };
        if running {
            return Ok(());
        }
        let mut watch = self.store.watch("ecs/", from).await?;
        let prefixes = self.prefixes.clone();
        let stale = self.stale.clone();
        let ours = self.ours.clone();
        let handle = tokio::spawn(async move {
            while let Some(batch) = watch.events.recv().await {
                let Ok(events) = batch else {
                    // Compacted or closed: we may have missed changes.
                    stale.store(true, Ordering::SeqCst);
                    return;
                };
                let mut ours = ours.lock().unwrap_or_else(|p| p.into_inner());
                for event in events {
                    let key = &event.kv.key;
                    if !prefixes.iter().any(|p| key.starts_with(p.as_str())) {
                        continue;
                    }
                    let revision = event.kv.mod_revision;
                    match ours.get(key).copied() {
                        // Our commit's echo, seen before the commit returned: the committer
                        // removes the entry once it knows the revision.
                        Some(OwnWrite::InFlight) => {
                            ours.insert(key.clone(), OwnWrite::Seen(revision));
                        }
                        Some(OwnWrite::Written(written)) if revision == written => {
                            ours.remove(key);
                        }
                        Some(OwnWrite::Written(written)) if revision < written => {}
                        _ => stale.store(true, Ordering::SeqCst),
                    }
                }
            }
        });
        *self.watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Plan `request` on the speculative scheduler (reloading it first if stale), for EC2
    /// container instances or (`fargate`) Fargate capacity.
    pub async fn plan(
        &self,
        ctx: &EcsContext,
        request: &PlacementRequest,
        fargate: bool,
    ) -> Result<Planned, EcsError> {
        let mut planner = self.planner.lock().await;
        if planner.is_none() || self.stale.swap(false, Ordering::SeqCst) {
            let state = ClusterState::load(ctx, &self.cluster).await?;
            self.ensure_watch(state.revision).await?;
            let snapshot = scheduler::Snapshot {
                container_instances: state
                    .instances
                    .iter()
                    .map(|stored| placement::scheduler_instance(&state, stored))
                    .collect(),
            };
            let mut committed = self.committed.lock().await;
            committed.clear();
            for stored in &state.instances {
                committed.insert(
                    stored.record.wharf_id.clone(),
                    (stored.record.clone(), stored.mod_revision),
                );
            }
            let generation = planner.as_ref().map(|p| p.generation + 1).unwrap_or(0);
            *planner = Some(Planner {
                scheduler: Scheduler::new(snapshot, rand::random()),
                records: state.instances.into_iter().map(|s| s.record).collect(),
                generation,
            });
        }
        let planner = planner
            .as_mut()
            .ok_or_else(|| EcsError::Conflict("placement is reloading; retry.".to_string()))?;
        // EC2 launches see only EC2 container instances, Fargate launches only Fargate
        // capacity (the request's constraints keep them apart; this keeps the other kind out
        // of the answer).
        if !planner.records.iter().any(|r| {
            r.instance.status.as_deref() == Some("ACTIVE") && r.is_fargate_capacity() == fargate
        }) {
            return Err(EcsError::InvalidParameter(
                scheduler::plan::NO_CONTAINER_INSTANCES_MESSAGE.to_string(),
            ));
        }
        let plan = planner.scheduler.place(request)?;
        let hidden: std::collections::HashSet<&str> = planner
            .records
            .iter()
            .filter(|r| r.is_fargate_capacity() != fargate)
            .filter_map(|r| r.instance.container_instance_arn.as_deref())
            .collect();
        let failures = plan
            .failures(planner.scheduler.container_instances())
            .into_iter()
            .filter(|f| !hidden.contains(f.arn.as_str()))
            .map(|f| model::ecs::task::Failure {
                arn: Some(f.arn),
                reason: Some(f.reason.to_string()),
                detail: None,
            })
            .collect();
        let records = plan
            .placements
            .iter()
            .map(|p| planner.records[p.container_instance].clone())
            .collect();
        Ok(Planned {
            records,
            failures,
            plan,
            generation: planner.generation,
        })
    }

    /// Give back what a plan reserved on the speculative scheduler (its commit failed).
    pub async fn forget(&self, planned: &Planned) {
        if let Some(planner) = self.planner.lock().await.as_mut() {
            if planner.generation == planned.generation {
                planner.scheduler.release(&planned.plan);
            }
        }
    }

    /// Commit tasks placed by a plan, batched with every other caller's. `tasks[i]` runs on
    /// `planned.records[i]`; `extra` are further ops (tags, client token) with their compares.
    /// Ok(false): the commit lost a race or the capacity re-check failed; re-plan.
    pub async fn commit(
        &self,
        ctx: &EcsContext,
        planned: &Planned,
        tasks: &[TaskRecord],
        extra_ops: Vec<Op>,
        extra_compares: Vec<Compare>,
    ) -> Result<bool, EcsError> {
        let (answer, outcome) = oneshot::channel();
        let mut ops = extra_ops;
        let mut placements = Vec::new();
        for (record, task) in planned.records.iter().zip(tasks) {
            let arn = task.task.task_arn.clone().unwrap_or_default();
            let id = arn.rsplit('/').next().unwrap_or("").to_string();
            ops.push(Op::Put {
                key: keys::task(&self.cluster, &id),
                value: encode(task),
                lease: None,
            });
            placements.push((record.wharf_id.clone(), task.wharf_needs.clone()));
        }
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Pending {
                placements,
                ops,
                compares: extra_compares,
                answer,
            });
        // Whoever holds the committer commits everything queued so far. A caller whose plan
        // went out in someone else's batch must not queue for the lock just to find the queue
        // empty (that convoy serializes every caller behind one commit each): it waits for
        // its answer or the lock, whichever comes first.
        let mut outcome = outcome;
        loop {
            tokio::select! {
                biased;
                answer = &mut outcome => {
                    return answer.unwrap_or_else(|_| {
                        Err(EcsError::Conflict("placement commit was abandoned; retry.".to_string()))
                    });
                }
                mut committed = self.committed.lock() => {
                    let batch: Vec<Pending> =
                        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
                    if !batch.is_empty() {
                        self.commit_batch(ctx, &mut committed, batch).await;
                    }
                }
            }
        }
    }

    async fn commit_batch(
        &self,
        ctx: &EcsContext,
        committed: &mut HashMap<String, (InstanceRecord, Revision)>,
        batch: Vec<Pending>,
    ) {
        // Re-check capacity on the committed records, item by item.
        let mut working: HashMap<String, InstanceRecord> = HashMap::new();
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for item in batch {
            let mut trial = working.clone();
            let fits = item.placements.iter().all(|(id, needs)| {
                let Some(base) = trial
                    .get(id)
                    .cloned()
                    .or_else(|| committed.get(id).map(|(r, _)| r.clone()))
                else {
                    return false;
                };
                if !fits(&base, needs) {
                    return false;
                }
                let mut updated = base;
                let remaining = updated
                    .instance
                    .remaining_resources
                    .clone()
                    .unwrap_or_default();
                updated.instance.remaining_resources =
                    Some(placement::adjust_remaining(&remaining, needs, -1));
                trial.insert(id.clone(), updated);
                true
            });
            if fits {
                working = trial;
                accepted.push(item);
            } else {
                rejected.push(item);
            }
        }
        for item in rejected {
            self.stale.store(true, Ordering::SeqCst);
            let _ = item.answer.send(Ok(false));
        }
        if accepted.is_empty() {
            return;
        }
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut instance_keys = Vec::new();
        for (id, record) in &working {
            let key = keys::container_instance(&self.cluster, id);
            let revision = committed.get(id).map(|(_, r)| *r).unwrap_or(0);
            compares.push(unchanged(&key, revision));
            ops.push(Op::Put {
                key: key.clone(),
                value: encode(record),
                lease: None,
            });
            instance_keys.push(key);
        }
        for item in &accepted {
            compares.extend(item.compares.iter().cloned());
            ops.extend(item.ops.iter().cloned());
        }
        // Only keys the watch looks at are tracked (tags and client tokens are not), so every
        // entry is removed by its echo or by the outcome below.
        let written: Vec<String> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, .. } | Op::Delete { key } => Some(key.clone()),
                _ => None,
            })
            .filter(|key| self.prefixes.iter().any(|p| key.starts_with(p.as_str())))
            .collect();
        {
            let mut ours = self.ours.lock().unwrap_or_else(|p| p.into_inner());
            for key in &written {
                ours.insert(key.clone(), OwnWrite::InFlight);
            }
        }
        let result = ctx
            .store
            .txn(Txn {
                compares,
                success: ops,
                failure: vec![],
            })
            .await;
        let succeeded = matches!(&result, Ok(response) if response.succeeded);
        {
            let mut ours = self.ours.lock().unwrap_or_else(|p| p.into_inner());
            for key in &written {
                match (&result, ours.get(key).copied()) {
                    (Ok(response), Some(OwnWrite::Seen(seen)))
                        if response.succeeded && seen == response.revision =>
                    {
                        ours.remove(key);
                    }
                    (Ok(response), _) if response.succeeded => {
                        ours.insert(key.clone(), OwnWrite::Written(response.revision));
                    }
                    _ => {
                        ours.remove(key);
                    }
                }
            }
        }
        if succeeded {
            let revision = result.map(|r| r.revision).unwrap_or_default();
            for (id, record) in working {
                committed.insert(id, (record, revision));
            }
            for item in accepted {
                let _ = item.answer.send(Ok(true));
            }
            return;
        }
        // Someone else wrote one of the instances (or a client token): re-read them.
        for id in working.keys() {
            if let Ok(Some(kv)) = ctx
                .store
                .get(&keys::container_instance(&self.cluster, id))
                .await
            {
                if let Ok(record) = decode::<InstanceRecord>(&kv) {
                    committed.insert(id.clone(), (record, kv.mod_revision));
                }
            }
        }
        self.stale.store(true, Ordering::SeqCst);
        let error = result.err().map(|e| e.to_string());
        for item in accepted {
            let _ = item.answer.send(match &error {
                Some(error) => Err(EcsError::Store(store::StoreError::Backend(error.clone()))),
                None => Ok(false),
            });
        }
    }
}

/// Whether one task's needs fit an instance's committed remaining resources.
fn fits(record: &InstanceRecord, needs: &TaskNeeds) -> bool {
    let remaining = record
        .instance
        .remaining_resources
        .as_deref()
        .unwrap_or_default();
    if record.instance.status.as_deref() != Some("ACTIVE")
        || integer_resource(remaining, "CPU") < needs.cpu
        || integer_resource(remaining, "MEMORY") < needs.memory
    {
        return false;
    }
    let used_tcp = string_set_resource(remaining, "PORTS");
    let used_udp = string_set_resource(remaining, "PORTS_UDP");
    !needs
        .tcp_ports
        .iter()
        .any(|p| used_tcp.contains(&p.to_string()))
        && !needs
            .udp_ports
            .iter()
            .any(|p| used_udp.contains(&p.to_string()))
}
