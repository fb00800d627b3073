//! Instance health: notices agents whose session lapsed, and after a grace period marks the
//! tasks on their instances STOPPED (releasing what they reserved) so nothing waits forever on
//! a host that is gone. It also removes STOPPED tasks once their retention has passed.
//!
//! ```text
//! session live ──lapse──> disconnected (wharfDisconnectedAt = now)
//!      ^                      │ grace passes
//!      └──── heartbeat ───────┤
//!                             v
//!                 tasks on the instance: lastStatus STOPPED
//! ```

use std::sync::Arc;
use std::time::Duration;

use model::ecs::cluster::Cluster;
use store::{Op, Txn};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ecs::cluster_state::ClusterState;
use crate::ecs::tasks::{force_stopped, put_task, TaskRecord};
use crate::ecs::{encode, keys, unchanged, EcsContext, EcsError};

#[derive(Debug, Clone)]
pub struct InstanceHealthSettings {
    /// How long an agent may be gone before its tasks are marked STOPPED.
    pub disconnect_grace: Duration,
    /// How long STOPPED tasks stay describable.
    pub task_retention: Duration,
    /// How often the controller resyncs.
    pub period: Duration,
}

impl Default for InstanceHealthSettings {
    fn default() -> Self {
        InstanceHealthSettings {
            disconnect_grace: Duration::from_secs(300),
            task_retention: Duration::from_secs(3600),
            period: Duration::from_secs(5),
        }
    }
}

pub async fn run(
    ctx: Arc<EcsContext>,
    settings: InstanceHealthSettings,
    cancel: CancellationToken,
) {
    while super::tick(settings.period, &cancel).await {
        if let Err(error) = reconcile_all(&ctx, &settings).await {
            warn!(%error, "instance health pass failed; retrying next period");
        }
    }
}

async fn reconcile_all(
    ctx: &EcsContext,
    settings: &InstanceHealthSettings,
) -> Result<(), EcsError> {
    for (_, cluster) in ctx.range_json::<Cluster>(keys::CLUSTER_PREFIX).await? {
        if cluster.status.as_deref() != Some("ACTIVE") {
            continue;
        }
        let name = cluster.cluster_name.unwrap_or_default();
        // One cluster's bad record must not stop health checks for every other cluster.
        if let Err(error) = reconcile_cluster(ctx, &name, settings).await {
            warn!(cluster = %name, %error, "instance health pass failed for this cluster");
        }
    }
    Ok(())
}

pub async fn reconcile_cluster(
    ctx: &EcsContext,
    cluster: &str,
    settings: &InstanceHealthSettings,
) -> Result<(), EcsError> {
    let state = ClusterState::load(ctx, cluster).await?;
    let now = ctx.now();
    for stored in &state.instances {
        let record = &stored.record;
        if record.instance.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        let key = keys::container_instance(cluster, &record.wharf_id);
        let connected = state.connected.contains(&record.wharf_id);
        match (connected, record.wharf_disconnected_at) {
            (true, Some(_)) | (false, None) => {
                let mut updated = record.clone();
                updated.wharf_disconnected_at = if connected { None } else { Some(now) };
                // A lost race means someone else wrote the instance; the next pass retries.
                ctx.store
                    .txn(Txn {
                        compares: vec![unchanged(&key, stored.mod_revision)],
                        success: vec![Op::Put {
                            key: key.clone(),
                            value: encode(&updated),
                            lease: None,
                        }],
                        failure: vec![],
                    })
                    .await?;
            }
            (false, Some(since)) if now - since >= settings.disconnect_grace.as_secs_f64() => {
                let arn = record
                    .instance
                    .container_instance_arn
                    .clone()
                    .unwrap_or_default();
                let reason = format!(
                    "The agent on container instance {arn} has been disconnected for more than {} seconds.",
                    settings.disconnect_grace.as_secs()
                );
                // One transaction per task, each re-reading the instance, so releases add up.
                for task in state
                    .tasks_on(&arn)
                    .filter(|t| t.task.last_status.as_deref() != Some("STOPPED"))
                {
                    let task_key = keys::task(cluster, &task.id);
                    let Some((mut task_record, task_revision)) =
                        ctx.get_json::<TaskRecord>(&task_key).await?
                    else {
                        continue;
                    };
                    force_stopped(&mut task_record.task, &reason, "TaskFailedToStart", now);
                    if put_task(ctx, cluster, &task.id, task_revision, &mut task_record).await? {
                        info!(cluster, task = task.task.task_arn.as_deref().unwrap_or(""), instance = %arn,
                            "task marked STOPPED: agent disconnected past the grace period");
                    }
                }
            }
            _ => {}
        }
    }
    // Retention: STOPPED tasks leave once they have been stopped long enough.
    let retention = settings.task_retention.as_secs_f64();
    for task in &state.tasks {
        let expired = task.task.last_status.as_deref() == Some("STOPPED")
            && task.task.stopped_at.is_some_and(|at| now - at >= retention);
        if expired {
            let key = keys::task(cluster, &task.id);
            let arn = task.task.task_arn.clone().unwrap_or_default();
            ctx.store
                .txn(Txn {
                    compares: vec![unchanged(&key, task.mod_revision)],
                    success: vec![
                        Op::Delete { key },
                        Op::Delete {
                            key: keys::tags(&arn),
                        },
                    ],
                    failure: vec![],
                })
                .await?;
        }
    }
    Ok(())
}
