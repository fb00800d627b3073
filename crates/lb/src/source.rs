//! The data plane's two seams to the control plane: where route snapshots come from
//! ([`RouteSource`]) and where health and metrics go ([`Reporter`]). The control-plane client
//! ([`crate::control_plane::Client`]) implements both over the network; [`MemoryControlPlane`]
//! implements both in memory for tests and benchmarks, and can play "the control plane is down".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use model::elb::{ReportRequestMetricsInput, ReportTargetHealthInput, RouteSnapshot};
use tokio::sync::{watch, Notify};

/// Why a call to the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(transparent)]
    Client(#[from] agent::client::ClientError),
    #[error("the control plane is unavailable: {0}")]
    Unavailable(String),
}

/// Where route snapshots come from.
#[async_trait::async_trait]
pub trait RouteSource: Send + Sync {
    /// `GetRoutes`: the whole snapshot, at once when it changed after `since_revision`
    /// (or when that is 0), else after at most `wait` (then possibly unchanged).
    async fn get_routes(
        &self,
        since_revision: i64,
        wait: Duration,
    ) -> Result<RouteSnapshot, ControlPlaneError>;
}

/// Where target health and request metrics go.
#[async_trait::async_trait]
pub trait Reporter: Send + Sync {
    async fn report_target_health(
        &self,
        input: ReportTargetHealthInput,
    ) -> Result<(), ControlPlaneError>;

    async fn report_request_metrics(
        &self,
        input: ReportRequestMetricsInput,
    ) -> Result<(), ControlPlaneError>;
}

/// An in-memory control plane: publish snapshots with [`MemoryControlPlane::publish`], read
/// what the node reported, and switch it "down" to see the node keep its last snapshot.
#[derive(Debug)]
pub struct MemoryControlPlane {
    snapshot: watch::Sender<RouteSnapshot>,
    down: AtomicBool,
    health_reports: Mutex<Vec<ReportTargetHealthInput>>,
    metric_reports: Mutex<Vec<ReportRequestMetricsInput>>,
    reported: Notify,
}

impl Default for MemoryControlPlane {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryControlPlane {
    pub fn new() -> Self {
        Self {
            snapshot: watch::Sender::new(RouteSnapshot::default()),
            down: AtomicBool::new(false),
            health_reports: Mutex::new(Vec::new()),
            metric_reports: Mutex::new(Vec::new()),
            reported: Notify::new(),
        }
    }

    /// Serves `snapshot` from now on, with the next revision and the current clock.
    pub fn publish(&self, mut snapshot: RouteSnapshot) -> i64 {
        let mut revision = 0;
        self.snapshot.send_modify(|current| {
            snapshot.revision = current.revision + 1;
            snapshot.now_ms = crate::clock::epoch_ms();
            revision = snapshot.revision;
            *current = snapshot;
        });
        revision
    }

    /// While down, every call fails with [`ControlPlaneError::Unavailable`].
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn health_reports(&self) -> Vec<ReportTargetHealthInput> {
        self.health_reports.lock().expect("poisoned").clone()
    }

    pub fn metric_reports(&self) -> Vec<ReportRequestMetricsInput> {
        self.metric_reports.lock().expect("poisoned").clone()
    }

    /// Waits until a report (of either kind) arrives, or `timeout` passes.
    pub async fn wait_for_report(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.reported.notified()).await;
    }

    fn check_up(&self) -> Result<(), ControlPlaneError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ControlPlaneError::Unavailable(
                "connection refused (simulated)".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RouteSource for MemoryControlPlane {
    async fn get_routes(
        &self,
        since_revision: i64,
        wait: Duration,
    ) -> Result<RouteSnapshot, ControlPlaneError> {
        self.check_up()?;
        let mut changes = self.snapshot.subscribe();
        let _ = tokio::time::timeout(
            wait,
            changes.wait_for(|s| since_revision == 0 || s.revision > since_revision),
        )
        .await;
        self.check_up()?;
        let snapshot = changes.borrow().clone();
        Ok(snapshot)
    }
}

#[async_trait::async_trait]
impl Reporter for MemoryControlPlane {
    async fn report_target_health(
        &self,
        input: ReportTargetHealthInput,
    ) -> Result<(), ControlPlaneError> {
        self.check_up()?;
        self.health_reports.lock().expect("poisoned").push(input);
        self.reported.notify_waiters();
        Ok(())
    }

    async fn report_request_metrics(
        &self,
        input: ReportRequestMetricsInput,
    ) -> Result<(), ControlPlaneError> {
        self.check_up()?;
        self.metric_reports.lock().expect("poisoned").push(input);
        self.reported.notify_waiters();
        Ok(())
    }
}
