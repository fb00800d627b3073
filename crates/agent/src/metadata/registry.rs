//! The metadata endpoint's read-only view of the agent's tasks: task owners publish a
//! [`TaskSnapshot`] whenever they loop, and register each container's token when they inspect
//! it; the HTTP handlers only read. Locks are held for map operations only, never across an
//! await, so a slow request never holds up an owner.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use model::agent::AgentTask;
use model::ecs::task::NetworkBinding;

use crate::runner::dependencies::ContainerPhase;
use crate::runner::TaskStatus;
use crate::runtime::HealthState;

/// One container as its owner knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSnapshot {
    /// The name in the task definition.
    pub name: String,
    /// The engine id, once created.
    pub runtime_id: Option<String>,
    pub phase: ContainerPhase,
    pub exit_code: Option<i64>,
    pub has_health_check: bool,
    pub health: Option<HealthState>,
    /// Published ports (bridge mode) or the container's own (host mode).
    pub bindings: Vec<NetworkBinding>,
}

/// One task as its owner knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSnapshot {
    /// The server's desired state with the definition.
    pub task: AgentTask,
    pub status: TaskStatus,
    /// Seconds since the epoch.
    pub pull_started_at: Option<f64>,
    pub pull_stopped_at: Option<f64>,
    pub execution_stopped_at: Option<f64>,
    /// In definition order.
    pub containers: Vec<ContainerSnapshot>,
}

impl TaskSnapshot {
    pub fn task_arn(&self) -> &str {
        self.task.task.task_arn.as_deref().unwrap_or("")
    }

    pub fn container(&self, name: &str) -> Option<&ContainerSnapshot> {
        self.containers.iter().find(|c| c.name == name)
    }
}

/// Which container a token names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContainerRef {
    task_arn: String,
    container_name: String,
}

#[derive(Debug, Default)]
struct State {
    tokens: BTreeMap<String, ContainerRef>,
    tasks: BTreeMap<String, Arc<TaskSnapshot>>,
}

/// Token → container, task ARN → latest snapshot.
#[derive(Debug, Default)]
pub struct MetadataRegistry {
    state: Mutex<State>,
}

impl MetadataRegistry {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `token` name the container `container_name` of `task_arn`.
    pub fn register_token(&self, token: &str, task_arn: &str, container_name: &str) {
        let entry = ContainerRef {
            task_arn: task_arn.to_string(),
            container_name: container_name.to_string(),
        };
        let mut state = self.lock();
        if state.tokens.get(token) != Some(&entry) {
            tracing::debug!(
                task_arn,
                container = container_name,
                "metadata token registered"
            );
            state.tokens.insert(token.to_string(), entry);
        }
    }

    /// Replaces what is known about the snapshot's task.
    pub fn publish(&self, snapshot: TaskSnapshot) {
        let task_arn = snapshot.task_arn().to_string();
        let mut state = self.lock();
        if state.tasks.get(&task_arn).map(|s| s.as_ref()) != Some(&snapshot) {
            state.tasks.insert(task_arn, Arc::new(snapshot));
        }
    }

    /// Forgets a cleaned-up task and its tokens.
    pub fn forget_task(&self, task_arn: &str) {
        let mut state = self.lock();
        state.tasks.remove(task_arn);
        state.tokens.retain(|_, c| c.task_arn != task_arn);
    }

    /// The task and container name a token names, when both are known.
    pub fn resolve(&self, token: &str) -> Option<(Arc<TaskSnapshot>, String)> {
        let state = self.lock();
        let entry = state.tokens.get(token)?;
        let task = state.tasks.get(&entry.task_arn)?.clone();
        Some((task, entry.container_name.clone()))
    }

    pub fn task(&self, task_arn: &str) -> Option<Arc<TaskSnapshot>> {
        self.lock().tasks.get(task_arn).cloned()
    }

    /// How many tokens are registered.
    pub fn tokens(&self) -> usize {
        self.lock().tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ecs::task::Task;
    use model::ecs::task_definition::TaskDefinition;

    fn snapshot(task_arn: &str) -> TaskSnapshot {
        TaskSnapshot {
            task: AgentTask {
                task: Task {
                    task_arn: Some(task_arn.into()),
                    ..Default::default()
                },
                task_definition: TaskDefinition::default(),
                network: None,
            },
            status: TaskStatus::Running,
            pull_started_at: None,
            pull_stopped_at: None,
            execution_stopped_at: None,
            containers: Vec::new(),
        }
    }

    #[test]
    fn tokens_resolve_once_the_task_is_published_and_go_with_it() {
        let registry = MetadataRegistry::default();
        registry.register_token("t1", "arn:task/a", "web");
        assert!(registry.resolve("t1").is_none(), "no snapshot yet");
        registry.publish(snapshot("arn:task/a"));
        let (task, name) = registry.resolve("t1").expect("resolves");
        assert_eq!((task.task_arn(), name.as_str()), ("arn:task/a", "web"));
        assert!(registry.resolve("other").is_none());
        registry.forget_task("arn:task/a");
        assert!(registry.resolve("t1").is_none());
        assert_eq!(registry.tokens(), 0);
    }
}
