//! CloudWatch Logs (`logs`, JSON 1.1 `Logs_20140328`): log groups, streams and events.
//!
//! - `api`: the operations (validation, paging tokens, output shapes);
//! - `store`: the durable SQLite log store (`<dir>/logs.db`, or in memory);
//! - `pattern`: FilterLogEvents filter patterns;
//! - `error`: the one error enum and its mapping to AWS error codes.
//!
//! Retention is enforced by a periodic sweep: `run_retention` is the loop the server spawns;
//! `LogsContext::sweep` runs one pass (tests call it with a manual clock's time).

mod api;
mod error;
pub mod pattern;
mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::store::clock::Clock;
use tokio_util::sync::CancellationToken;

pub use self::error::LogsError;
pub use self::store::LogStore;

/// How often `run_retention` deletes expired events. AWS takes up to 72 hours; a minute keeps
/// the store small without measurable cost (the sweep walks an index by time).
pub const RETENTION_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Everything CloudWatch Logs' handlers need.
pub struct LogsContext {
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub account_id: String,
    pub store: Arc<LogStore>,
}

impl LogsContext {
    /// Open the log store in `dir` (None: in memory).
    pub fn open(
        dir: Option<&Path>,
        clock: Arc<dyn Clock>,
        region: &str,
        account_id: &str,
    ) -> Result<LogsContext, LogsError> {
        let store = match dir {
            Some(dir) => LogStore::open(dir)?,
            None => LogStore::in_memory()?,
        };
        Ok(LogsContext {
            clock,
            region: region.to_string(),
            account_id: account_id.to_string(),
            store: Arc::new(store),
        })
    }

    /// Run a store call on the blocking pool, so SQLite never holds up the async runtime.
    async fn blocking<T, F>(&self, f: F) -> Result<T, LogsError>
    where
        T: Send + 'static,
        F: FnOnce(&LogStore) -> Result<T, LogsError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|error| {
                tracing::error!(%error, "log store task failed");
                LogsError::Unavailable("The log store could not complete the request.".into())
            })?
    }

    /// Delete every event older than its group's retention as of `now_ms`; returns how many.
    /// Blocking: call it from a blocking context (`run_retention` does).
    pub fn sweep(&self, now_ms: i64) -> Result<u64, LogsError> {
        self.store.sweep(now_ms)
    }
}

/// The retention loop: sweep once right away, then every `RETENTION_SWEEP_INTERVAL`, until
/// `cancel` fires. The time compared with event timestamps is the context's clock.
pub async fn run_retention(ctx: Arc<LogsContext>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(RETENTION_SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = ctx.clock.now_millis();
        let pass = ctx.clone();
        match tokio::task::spawn_blocking(move || pass.sweep(now)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(deleted)) => tracing::debug!(deleted, "log retention sweep"),
            Ok(Err(error)) => tracing::warn!(%error, "log retention sweep failed"),
            Err(error) => tracing::warn!(%error, "log retention sweep panicked"),
        }
    }
}

pub const TARGET_PREFIX: &str = "Logs_20140328";

/// Run one operation; `None` when `operation` is not one of Logs'.
pub async fn dispatch(
    ctx: &Arc<LogsContext>,
    operation: &str,
    input: serde_json::Value,
) -> Option<Result<serde_json::Value, LogsError>> {
    let result = match operation {
        "CreateLogGroup" => api::create_log_group(ctx, input).await,
        "DeleteLogGroup" => api::delete_log_group(ctx, input).await,
        "DescribeLogGroups" => api::describe_log_groups(ctx, input).await,
        "CreateLogStream" => api::create_log_stream(ctx, input).await,
        "DeleteLogStream" => api::delete_log_stream(ctx, input).await,
        "DescribeLogStreams" => api::describe_log_streams(ctx, input).await,
        "PutLogEvents" => api::put_log_events(ctx, input).await,
        "GetLogEvents" => api::get_log_events(ctx, input).await,
        "FilterLogEvents" => api::filter_log_events(ctx, input).await,
        "PutRetentionPolicy" => api::put_retention_policy(ctx, input).await,
        "DeleteRetentionPolicy" => api::delete_retention_policy(ctx, input).await,
        "PutLogGroupDeletionProtection" => api::put_log_group_deletion_protection(ctx, input).await,
        "TagLogGroup" => api::tag_log_group(ctx, input).await,
        "UntagLogGroup" => api::untag_log_group(ctx, input).await,
        "ListTagsLogGroup" => api::list_tags_log_group(ctx, input).await,
        "TagResource" => api::tag_resource(ctx, input).await,
        "UntagResource" => api::untag_resource(ctx, input).await,
        "ListTagsForResource" => api::list_tags_for_resource(ctx, input).await,
        _ => return None,
    };
    if let Err(error) = &result {
        tracing::debug!(operation, %error, "logs request refused");
    }
    Some(result)
}
