//! Wharf's container-instance agent: it registers a host with the control plane, watches the
//! tasks the server places on it, runs them on Docker with ECS's semantics, and reports what it
//! observes.
//!
//! - [`agent`]: [`Agent::run`] and [`AgentConfig`]: identity, registration, heartbeat, the
//!   PollTasks watch;
//! - [`runner`]: the [`TaskEngine`](runner::TaskEngine) with one owner loop per task;
//! - [`runtime`]: the [`ContainerRuntime`] seam, with [`DockerRuntime`] and [`FakeRuntime`];
//! - [`client`] and [`reporter`]: the signed JSON 1.1 client and report delivery;
//! - [`stats`]: the resource usage sampler (`ReportTaskStats`);
//! - [`logs`]: the awslogs driver: containers' output shipped to CloudWatch Logs;
//! - [`labels`]: the container labels that make restarts a recovery;
//! - [`network`]: awsvpc tasks' networks: subnet bridges, the pause container, security groups.
//!
//! Architecture invariant: the agent only reports observed state; desired state comes from
//! the server alone. It acts only on containers labelled with its own container instance ARN.

pub mod agent;
pub mod backoff;
pub mod client;
pub mod host;
pub mod identity;
pub mod labels;
pub mod logs;
pub mod metadata;
pub mod network;
pub mod reporter;
pub mod runner;
pub mod runtime;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;

pub use agent::{Agent, AgentConfig, AgentError, CapacityType};
pub use client::AgentCredentials;
pub use runtime::docker::DockerRuntime;
pub use runtime::fake::FakeRuntime;
pub use runtime::ContainerRuntime;
