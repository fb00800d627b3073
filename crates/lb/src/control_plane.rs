//! The control-plane client of the load-balancer protocol (`model::elb`): `GetRoutes`,
//! `ReportTargetHealth` and `ReportRequestMetrics` over the agent's SigV4-signed JSON 1.1
//! client, under the signing name `wharf` and the target prefix `model::elb::TARGET_PREFIX`.

use std::time::Duration;

use agent::client::{AgentCredentials, ClientError, ServerClient, Service};
use model::elb::{
    GetRoutesInput, ReportRequestMetricsInput, ReportTargetHealthInput, RouteSnapshot,
    MAX_ROUTES_WAIT_SECONDS,
};

use crate::source::{ControlPlaneError, Reporter, RouteSource};

/// How long a report may take before it counts as failed.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to a long poll's wait so the server has time to answer after waiting.
const LONG_POLL_GRACE: Duration = Duration::from_secs(10);

/// A [`RouteSource`] and [`Reporter`] backed by a Wharf server.
#[derive(Debug, Clone)]
pub struct Client {
    server: ServerClient,
}

impl Client {
    /// `endpoint` is the server URL, e.g. `http://127.0.0.1:4566`.
    pub fn new(
        endpoint: &str,
        credentials: AgentCredentials,
        region: &str,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            server: ServerClient::new(endpoint, credentials, region)?,
        })
    }
}

#[async_trait::async_trait]
impl RouteSource for Client {
    async fn get_routes(
        &self,
        since_revision: i64,
        wait: Duration,
    ) -> Result<RouteSnapshot, ControlPlaneError> {
        let wait_seconds = wait.as_secs().min(MAX_ROUTES_WAIT_SECONDS);
        let input = GetRoutesInput {
            since_revision,
            wait_seconds,
        };
        let timeout = Duration::from_secs(wait_seconds) + LONG_POLL_GRACE;
        Ok(self
            .server
            .call(Service::LoadBalancer, "GetRoutes", &input, timeout)
            .await?)
    }
}

#[async_trait::async_trait]
impl Reporter for Client {
    async fn report_target_health(
        &self,
        input: ReportTargetHealthInput,
    ) -> Result<(), ControlPlaneError> {
        let _: serde_json::Value = self
            .server
            .call(
                Service::LoadBalancer,
                "ReportTargetHealth",
                &input,
                REPORT_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    async fn report_request_metrics(
        &self,
        input: ReportRequestMetricsInput,
    ) -> Result<(), ControlPlaneError> {
        let _: serde_json::Value = self
            .server
            .call(
                Service::LoadBalancer,
                "ReportRequestMetrics",
                &input,
                REPORT_TIMEOUT,
            )
            .await?;
        Ok(())
    }
}
