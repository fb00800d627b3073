//! CloudWatch Logs (`logs`, JSON 1.1 `Logs_20140328`): log groups, streams and events.
//!
//! Skeleton: the context and the dispatch entry point the server calls.

use std::path::Path;
use std::sync::Arc;

use store::clock::Clock;

/// Everything CloudWatch Logs' handlers need.
pub struct LogsContext {
    pub clock: Arc<dyn Clock>,
    pub region: String,
    pub account_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("{0}")]
    Unavailable(String),
}

impl LogsError {
    pub fn to_aws(&self) -> protocol::AwsError {
        protocol::AwsError::receiver("ServiceUnavailableException", self.to_string())
    }
}

impl LogsContext {
    /// Open the log store in `dir` (None: in memory).
    pub fn open(
        _dir: Option<&Path>,
        clock: Arc<dyn Clock>,
        region: &str,
        account_id: &str,
    ) -> Result<LogsContext, LogsError> {
        Ok(LogsContext {
            clock,
            region: region.to_string(),
            account_id: account_id.to_string(),
        })
    }
}

pub const TARGET_PREFIX: &str = "Logs_20140328";

/// Run one operation; `None` when `operation` is not one of Logs'.
pub async fn dispatch(
    _ctx: &Arc<LogsContext>,
    _operation: &str,
    _input: serde_json::Value,
) -> Option<Result<serde_json::Value, LogsError>> {
    None
}
