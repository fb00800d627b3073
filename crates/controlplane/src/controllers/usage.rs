//! Publishes task resource usage as `AWS/ECS` metrics about every second (see
//! `ecs::usage`); the work per tick is what arrived since the last one.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::ecs::{usage, EcsContext};

pub async fn run(ctx: Arc<EcsContext>, cancel: CancellationToken) {
    while super::tick(Duration::from_secs(1), &cancel).await {
        if let Err(error) = usage::publish(&ctx).await {
            warn!(%error, "cannot publish task usage metrics");
        }
    }
}
