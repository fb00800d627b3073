//! A small in-process stand-in for the Wharf server, speaking exactly what the agent uses:
//! ECS `CreateCluster` and `RegisterContainerInstance`, the agent protocol's `Heartbeat`,
//! `PollTasks` (a real long poll on a revision), `ReportTaskState` and `ReportTaskStats`, and
//! CloudWatch Logs' `CreateLogGroup`, `CreateLogStream` and `PutLogEvents` (recorded only). Every request's SigV4
//! signature is checked with the server's own verifier (`protocol::sigv4`), and the signing
//! service must match the target.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use model::agent::{AgentTask, PollTasksInput, PollTasksOutput, ReportTaskStateInput};
use model::ecs::task::task_status_rank;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const ACCESS_KEY_ID: &str = "AKIAWHARFAGENTTEST01";
pub const SECRET: &str = "test-secret-access-key-0123456789abcdefgh";
pub const REGION: &str = "us-east-1";

#[derive(Debug, Default)]
struct Inner {
    revision: i64,
    tasks: BTreeMap<String, AgentTask>,
    reports: Vec<ReportTaskStateInput>,
    /// (operation, input) in arrival order.
    calls: Vec<(String, serde_json::Value)>,
    next_instance: u32,
    /// Fail this many ReportTaskState calls with a 500 first.
    failing_reports: u32,
    refuse_registration: bool,
    /// Answer re-registrations under a previous ARN as unknown instances.
    forget_instances: bool,
}

#[derive(Debug)]
pub struct ServerState {
    inner: Mutex<Inner>,
    revision: watch::Sender<i64>,
}

impl ServerState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self, inner: &mut Inner) {
        inner.revision += 1;
        self.revision.send_replace(inner.revision);
    }
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start() -> Self {
        let state = Arc::new(ServerState {
            inner: Mutex::new(Inner {
                revision: 1,
                ..Default::default()
            }),
            revision: watch::channel(1).0,
        });
        let app = axum::Router::new()
            .route("/", axum::routing::post(handle))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        let shutdown = cancel.clone();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        });
        Self {
            addr,
            state,
            cancel,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.handle.await;
    }

    /// Places a task on the instance (desired RUNNING).
    pub fn add_task(&self, task: AgentTask) {
        let mut inner = self.state.lock();
        inner
            .tasks
            .insert(task.task.task_arn.clone().expect("arn"), task);
        self.state.bump(&mut inner);
    }

    /// StopTask: desired STOPPED.
    pub fn stop_task(&self, task_arn: &str) {
        let mut inner = self.state.lock();
        if let Some(task) = inner.tasks.get_mut(task_arn) {
            task.task.desired_status = Some("STOPPED".into());
            task.task.stop_code = Some("UserInitiated".into());
        }
        self.state.bump(&mut inner);
    }

    pub fn fail_next_reports(&self, count: u32) {
        self.state.lock().failing_reports = count;
    }

    /// From now on, instances registered before are unknown (as after a state reset).
    pub fn forget_instances(&self) {
        self.state.lock().forget_instances = true;
    }

    pub fn refuse_registration(&self) {
        self.state.lock().refuse_registration = true;
    }

    pub fn calls(&self, operation: &str) -> Vec<serde_json::Value> {
        self.state
            .lock()
            .calls
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, input)| input.clone())
            .collect()
    }

    pub fn operations(&self) -> Vec<String> {
        self.state
            .lock()
            .calls
            .iter()
            .map(|(op, _)| op.clone())
            .collect()
    }

    pub fn reports(&self, task_arn: &str) -> Vec<ReportTaskStateInput> {
        self.state
            .lock()
            .reports
            .iter()
            .filter(|r| r.task_arn == task_arn)
            .cloned()
            .collect()
    }

    /// The task as the server now sees it.
    pub fn task(&self, task_arn: &str) -> Option<AgentTask> {
        self.state.lock().tasks.get(task_arn).cloned()
    }

    /// Waits until `condition` holds, polling the recorded state.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&Self) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !condition(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; calls: {:?}",
                self.operations()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        serde_json::json!({"__type": code, "message": message}),
    )
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = protocol::request::Request {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.clone(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let identity = match protocol::sigv4::verify(&request, now, &|key| {
        (key == ACCESS_KEY_ID).then(|| SECRET.to_string())
    }) {
        Ok(identity) => identity,
        Err(e) => {
            return error(
                StatusCode::FORBIDDEN,
                "InvalidSignatureException",
                &e.to_string(),
            )
        }
    };
    if request.header("content-type") != Some("application/x-amz-json-1.1") {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "content type",
        );
    }
    let target = request.header("x-amz-target").unwrap_or("").to_string();
    let (prefix, operation) = target.split_once('.').unwrap_or(("", ""));
    let expected_service = match prefix {
        "AmazonEC2ContainerServiceV20141113" => "ecs",
        p if p == model::agent::TARGET_PREFIX => model::agent::SIGNING_NAME,
        "Logs_20140328" => "logs",
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                &target,
            )
        }
    };
    if identity.service != expected_service || identity.region != REGION {
        return error(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            "wrong scope",
        );
    }
    let input: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &e.to_string(),
            )
        }
    };
    state
        .lock()
        .calls
        .push((operation.to_string(), input.clone()));
    match operation {
        "CreateCluster" => json_response(
            StatusCode::OK,
            serde_json::json!({"cluster": {"clusterName": input["clusterName"], "status": "ACTIVE"}}),
        ),
        "RegisterContainerInstance" => {
            let mut inner = state.lock();
            if inner.refuse_registration {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ClientException",
                    "registration refused",
                );
            }
            if inner.forget_instances && input["containerInstanceArn"].is_string() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterException",
                    "The container instance was not found in cluster default.",
                );
            }
            let arn = match input["containerInstanceArn"].as_str() {
                Some(arn) => arn.to_string(),
                None => {
                    inner.next_instance += 1;
                    format!(
                        "arn:aws:ecs:us-east-1:000000000000:container-instance/default/{:032x}",
                        inner.next_instance
                    )
                }
            };
            json_response(
                StatusCode::OK,
                serde_json::json!({"containerInstance": {
                    "containerInstanceArn": arn,
                    "status": "ACTIVE",
                    "agentConnected": true,
                }}),
            )
        }
        "Heartbeat" => json_response(StatusCode::OK, serde_json::json!({})),
        "PollTasks" => {
            let input: PollTasksInput = match serde_json::from_value(input) {
                Ok(input) => input,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "SerializationException",
                        &e.to_string(),
                    )
                }
            };
            let mut revisions = state.revision.subscribe();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(input.wait_seconds);
            // Answer at once when something changed after sinceRevision; else at the deadline.
            let mut waited_out = false;
            loop {
                let answer = {
                    let inner = state.lock();
                    let changed =
                        input.since_revision == 0 || input.since_revision < inner.revision;
                    (changed || waited_out).then(|| PollTasksOutput {
                        revision: inner.revision,
                        tasks: inner
                            .tasks
                            .values()
                            .filter(|t| {
                                !(t.task.desired_status.as_deref() == Some("STOPPED")
                                    && t.task.last_status.as_deref() == Some("STOPPED"))
                            })
                            .cloned()
                            .collect(),
                    })
                };
                if let Some(answer) = answer {
                    return json_response(
                        StatusCode::OK,
                        serde_json::to_value(answer).expect("serializes"),
                    );
                }
                waited_out = tokio::time::timeout_at(deadline, revisions.changed())
                    .await
                    .is_err();
            }
        }
        "ReportTaskState" => {
            let report: ReportTaskStateInput = match serde_json::from_value(input) {
                Ok(report) => report,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "SerializationException",
                        &e.to_string(),
                    )
                }
            };
            let mut inner = state.lock();
            if inner.failing_reports > 0 {
                inner.failing_reports -= 1;
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServerException",
                    "try again",
                );
            }
            inner.reports.push(report.clone());
            let mut changed = false;
            if let Some(task) = inner.tasks.get_mut(&report.task_arn) {
                let current = task.task.last_status.clone().unwrap_or_default();
                // Forward only, as the control plane does.
                if task_status_rank(&report.last_status) > task_status_rank(&current) {
                    task.task.last_status = Some(report.last_status.clone());
                    changed = true;
                }
                if report.last_status == "STOPPED"
                    && task.task.desired_status.as_deref() != Some("STOPPED")
                {
                    task.task.desired_status = Some("STOPPED".into());
                    task.task.stop_code = report.stop_code.clone();
                    changed = true;
                }
            }
            if changed {
                state.bump(&mut inner);
            }
            json_response(StatusCode::OK, serde_json::json!({}))
        }
        "ReportTaskStats" | "CreateLogGroup" | "CreateLogStream" | "PutLogEvents" => {
            json_response(StatusCode::OK, serde_json::json!({}))
        }
        other => error(StatusCode::BAD_REQUEST, "UnknownOperationException", other),
    }
}
