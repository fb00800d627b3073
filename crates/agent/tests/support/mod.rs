//! Shared fixtures of the agent's integration tests: tasks and definitions in ECS shapes, and a
//! harness that runs a task engine on a runtime with a recording report sink and a recording
//! CloudWatch Logs sink.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use agent::runner::{EngineConfig, TaskEngine};
use agent::testing::{RecordingLogSink, RecordingSink};
use agent::ContainerRuntime;
use model::agent::{AgentTask, ContainerStateReport, ReportTaskStateInput};
use model::ecs::task::Task;
use model::ecs::task_definition::{ContainerDefinition, ContainerDependency, TaskDefinition};
use store::clock::SystemClock;
use tokio_util::sync::CancellationToken;

pub const CLUSTER: &str = "default";

pub fn instance_arn(name: &str) -> String {
    format!("arn:aws:ecs:us-east-1:000000000000:container-instance/{CLUSTER}/{name}")
}

/// A task ARN with a 32-hex id derived from `n`.
pub fn task_arn(n: u32) -> String {
    format!("arn:aws:ecs:us-east-1:000000000000:task/{CLUSTER}/{n:032x}")
}

pub fn container(name: &str, image: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some(image.into()),
        essential: Some(true),
        ..Default::default()
    }
}

pub fn depends(container: &str, condition: &str) -> ContainerDependency {
    ContainerDependency {
        container_name: container.into(),
        condition: condition.into(),
    }
}

pub fn definition(family: &str, containers: Vec<ContainerDefinition>) -> TaskDefinition {
    TaskDefinition {
        task_definition_arn: Some(format!(
            "arn:aws:ecs:us-east-1:000000000000:task-definition/{family}:1"
        )),
        family: Some(family.into()),
        revision: Some(1),
        network_mode: Some("bridge".into()),
        container_definitions: Some(containers),
        ..Default::default()
    }
}

pub fn agent_task(arn: &str, definition: TaskDefinition) -> AgentTask {
    AgentTask {
        task: Task {
            task_arn: Some(arn.into()),
            cluster_arn: Some(format!(
                "arn:aws:ecs:us-east-1:000000000000:cluster/{CLUSTER}"
            )),
            task_definition_arn: definition.task_definition_arn.clone(),
            desired_status: Some("RUNNING".into()),
            last_status: Some("PROVISIONING".into()),
            ..Default::default()
        },
        task_definition: definition,
        network: None,
    }
}

pub fn stopped(mut task: AgentTask) -> AgentTask {
    task.task.desired_status = Some("STOPPED".into());
    task
}

pub fn container_report<'a>(
    report: &'a ReportTaskStateInput,
    name: &str,
) -> &'a ContainerStateReport {
    report
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in {report:#?}"))
}

/// A task engine over `runtime`, reporting into a [`RecordingSink`] and shipping awslogs
/// containers' output into a [`RecordingLogSink`].
pub struct Harness {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub sink: Arc<RecordingSink>,
    pub logs: Arc<RecordingLogSink>,
    pub engine: TaskEngine,
    pub config: EngineConfig,
}

impl Harness {
    pub fn start(runtime: Arc<dyn ContainerRuntime>, config: EngineConfig) -> Self {
        let sink = Arc::new(RecordingSink::default());
        let logs = Arc::new(RecordingLogSink::default());
        let engine = TaskEngine::start_with_log_sink(
            config.clone(),
            runtime.clone(),
            Arc::new(SystemClock),
            sink.clone(),
            logs.clone(),
            CancellationToken::new(),
        );
        Self {
            runtime,
            sink,
            logs,
            engine,
            config,
        }
    }

    /// Stops this engine (containers keep running) and starts a new one on the same runtime
    /// and sinks, as an agent restart does.
    pub async fn restart(self) -> Self {
        self.engine.shutdown().await;
        let engine = TaskEngine::start_with_log_sink(
            self.config.clone(),
            self.runtime.clone(),
            Arc::new(SystemClock),
            self.sink.clone(),
            self.logs.clone(),
            CancellationToken::new(),
        );
        Self { engine, ..self }
    }

    pub async fn wait_status(
        &self,
        arn: &str,
        status: &str,
        timeout: Duration,
    ) -> ReportTaskStateInput {
        self.sink
            .wait_for(arn, timeout, |r| r.last_status == status)
            .await
    }
}
