//! CloudWatch (`monitoring`): metrics and alarms, served in all three protocols a client may use
//! (JSON 1.0 with `x-amzn-query-mode`, RPC v2 CBOR, Query/XML).
//!
//! Skeleton: the context and the entry points the server calls. The handlers, the protocol
//! envelopes and the alarm evaluator fill it in.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Response;
use metricstore::MetricStore;
use protocol::Request;
use store::clock::Clock;
use store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Everything CloudWatch's handlers and controllers need.
pub struct CloudWatchContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<MetricStore>,
    pub region: String,
    pub account_id: String,
}

impl CloudWatchContext {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<MetricStore>,
        region: &str,
        account_id: &str,
    ) -> CloudWatchContext {
        CloudWatchContext {
            store,
            clock,
            metrics,
            region: region.to_string(),
            account_id: account_id.to_string(),
        }
    }
}

/// Answer one authenticated `monitoring` request, whichever protocol it came in.
pub async fn serve(_ctx: &Arc<CloudWatchContext>, _request: &Request) -> Response<Body> {
    let mut response = Response::new(Body::from("{}"));
    *response.status_mut() = axum::http::StatusCode::NOT_IMPLEMENTED;
    response
}

/// Start CloudWatch's controllers (the alarm evaluator, metric retention) on `tasks`.
pub fn start_controllers(
    _ctx: Arc<CloudWatchContext>,
    _tasks: &mut JoinSet<()>,
    _cancel: CancellationToken,
) {
}
