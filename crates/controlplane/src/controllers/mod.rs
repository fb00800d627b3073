//! Controllers: level-triggered loops that compare desired with observed state and write
//! through the store. Each is keyed (it re-reads what it acts on), idempotent, and resyncs
//! periodically, so a missed wake-up costs latency, never correctness. Every loop is owned by
//! `Controllers` and stops with its cancellation token.

mod instance_health;
mod service;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ecs::EcsContext;

pub use instance_health::InstanceHealthSettings;
pub use service::ServiceSettings;

/// Every controller's settings.
#[derive(Debug, Clone, Default)]
pub struct ControllerSettings {
    pub instance_health: InstanceHealthSettings,
    pub services: ServiceSettings,
}

/// The running controllers of one server.
pub struct Controllers {
    tasks: JoinSet<()>,
}

impl Controllers {
    pub fn start(
        ctx: Arc<EcsContext>,
        settings: ControllerSettings,
        cancel: CancellationToken,
    ) -> Controllers {
        let mut tasks = JoinSet::new();
        tasks.spawn(instance_health::run(
            ctx.clone(),
            settings.instance_health,
            cancel.clone(),
        ));
        tasks.spawn(usage::run(ctx.clone(), cancel.clone()));
        tasks.spawn(service::run(ctx, settings.services, cancel));
        Controllers { tasks }
    }

    /// Where other services (CloudWatch) start their own controllers, so one `join` waits
    /// for them all.
    pub fn tasks_mut(&mut self) -> &mut JoinSet<()> {
        &mut self.tasks
    }

    /// Wait for every controller to finish (after the token was cancelled).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Sleep for `period` unless cancelled first; false when cancelled.
async fn tick(period: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => true,
        _ = cancel.cancelled() => false,
    }
}
