//! One read of a cluster: its tasks, container instances, sessions and custom attributes.
//! Placement, describes, the agent service and the controllers start from it. RunTask's placer
//! keeps one cached (see `placer`); other callers read it fresh.
//!
//! The ranges are separate reads, not one snapshot. Tasks are read first: instance records are
//! never deleted, so every task's instance is in the later instance read. `revision` is that
//! first read's revision, so a watch started from it misses nothing the ranges may not show.

use std::collections::{BTreeMap, HashMap, HashSet};

use model::ecs::attribute::Attribute;
use model::ecs::container_instance::ContainerInstance;
use model::ecs::task::Task;
use serde::{Deserialize, Serialize};
use store::Revision;

use super::{decode, keys, EcsContext, EcsError};

/// A container instance as stored: the wire shape plus what only the control plane tracks.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    #[serde(flatten)]
    pub instance: ContainerInstance,
    /// The instance's id (the last part of its ARN).
    pub wharf_id: String,
    /// When the instance-health controller first saw the agent's session gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wharf_disconnected_at: Option<f64>,
    /// The host address its agent reported (`privateIp` of the identity document): where load
    /// balancers reach its tasks' published host ports (instance targets). Absent for agents
    /// that did not report one, which are reached on 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wharf_private_ip: Option<String>,
}

/// The attribute a container instance carries when it is Wharf's Fargate capacity rather than
/// an EC2 container instance (sent by agents started with the Fargate role, value `FARGATE`).
/// Such instances are hidden from the API and take only Fargate tasks.
pub const CAPACITY_TYPE_ATTRIBUTE: &str = "wharf.capacity-type";

impl InstanceRecord {
    /// Whether this instance is Fargate capacity (see `CAPACITY_TYPE_ATTRIBUTE`).
    pub fn is_fargate_capacity(&self) -> bool {
        is_fargate_capacity(&self.instance)
    }
}

/// Whether a container instance is Fargate capacity.
pub fn is_fargate_capacity(instance: &ContainerInstance) -> bool {
    instance
        .attributes
        .iter()
        .flatten()
        .any(|a| a.name == CAPACITY_TYPE_ATTRIBUTE && a.value.as_deref() == Some("FARGATE"))
}

pub struct StoredInstance {
    pub record: InstanceRecord,
    pub mod_revision: Revision,
}

pub struct StoredTask {
    pub id: String,
    pub task: Task,
    pub mod_revision: Revision,
}

pub struct ClusterState {
    pub cluster: String,
    pub instances: Vec<StoredInstance>,
    pub tasks: Vec<StoredTask>,
    /// Instance ids whose agent session is live.
    pub connected: HashSet<String>,
    /// Custom attributes (PutAttributes) by instance id.
    pub custom_attributes: BTreeMap<String, Vec<Attribute>>,
    /// The revision of the first read (tasks); see the module comment.
    pub revision: Revision,
    /// Indexes into `tasks` by container instance ARN.
    tasks_by_instance: HashMap<String, Vec<usize>>,
}

impl ClusterState {
    pub async fn load(ctx: &EcsContext, cluster: &str) -> Result<ClusterState, EcsError> {
        let tasks = ctx
            .store
            .range(&keys::task_cluster_prefix(cluster), Default::default())
            .await?;
        let tasks_revision = tasks.revision;
        let instances = ctx
            .store
            .range(
                &keys::container_instance_cluster_prefix(cluster),
                Default::default(),
            )
            .await?;
        let sessions = ctx
            .store
            .range(
                &keys::agent_session_cluster_prefix(cluster),
                Default::default(),
            )
            .await?;
        let attributes = ctx
            .store
            .range(&keys::attribute_cluster_prefix(cluster), Default::default())
            .await?;
        let session_prefix = keys::agent_session_cluster_prefix(cluster);
        let mut custom_attributes: BTreeMap<String, Vec<Attribute>> = BTreeMap::new();
        let attribute_prefix = keys::attribute_cluster_prefix(cluster);
        for kv in &attributes.kvs {
            let rest = &kv.key[attribute_prefix.len()..];
            let id = rest.split('/').next().unwrap_or("").to_string();
            custom_attributes.entry(id).or_default().push(decode(kv)?);
        }
        let task_prefix = keys::task_cluster_prefix(cluster);
        let tasks: Vec<StoredTask> = tasks
            .kvs
            .iter()
            .map(|kv| {
                Ok(StoredTask {
                    id: kv.key[task_prefix.len()..].to_string(),
                    task: decode(kv)?,
                    mod_revision: kv.mod_revision,
                })
            })
            .collect::<Result<_, EcsError>>()?;
        let mut tasks_by_instance: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, stored) in tasks.iter().enumerate() {
            if let Some(arn) = &stored.task.container_instance_arn {
                tasks_by_instance
                    .entry(arn.clone())
                    .or_default()
                    .push(index);
            }
        }
        Ok(ClusterState {
            cluster: cluster.to_string(),
            revision: tasks_revision,
            instances: instances
                .kvs
                .iter()
                .map(|kv| {
                    Ok(StoredInstance {
                        record: decode(kv)?,
                        mod_revision: kv.mod_revision,
                    })
                })
                .collect::<Result<_, EcsError>>()?,
            tasks,
            tasks_by_instance,
            connected: sessions
                .kvs
                .iter()
                .map(|kv| kv.key[session_prefix.len()..].to_string())
                .collect(),
            custom_attributes,
        })
    }

    /// The state a freshly registered instance needs to be rendered: its session only.
    pub async fn single(
        ctx: &EcsContext,
        cluster: &str,
        instance_id: &str,
    ) -> Result<ClusterState, EcsError> {
        let session = ctx
            .store
            .get(&keys::agent_session(cluster, instance_id))
            .await?;
        Ok(ClusterState {
            cluster: cluster.to_string(),
            instances: Vec::new(),
            tasks: Vec::new(),
            connected: session.iter().map(|_| instance_id.to_string()).collect(),
            custom_attributes: BTreeMap::new(),
            revision: 0,
            tasks_by_instance: HashMap::new(),
        })
    }

    /// Find an instance by id or ARN.
    pub fn instance(&self, id_or_arn: &str) -> Option<&StoredInstance> {
        let id = id_or_arn.rsplit('/').next().unwrap_or(id_or_arn);
        self.instances.iter().find(|i| i.record.wharf_id == id)
    }

    /// Tasks placed on an instance (by ARN).
    pub fn tasks_on<'a>(
        &'a self,
        instance_arn: &'a str,
    ) -> impl Iterator<Item = &'a StoredTask> + 'a {
        self.tasks_by_instance
            .get(instance_arn)
            .into_iter()
            .flatten()
            .map(|&index| &self.tasks[index])
    }

    /// The wire form of an instance: observed connectivity, task counts and every attribute.
    pub fn render_instance(&self, stored: &StoredInstance) -> ContainerInstance {
        let mut instance = stored.record.instance.clone();
        let arn = instance.container_instance_arn.clone().unwrap_or_default();
        instance.agent_connected = Some(self.connected.contains(&stored.record.wharf_id));
        let (mut running, mut pending) = (0, 0);
        for task in self.tasks_on(&arn) {
            match task.task.last_status.as_deref() {
                Some("RUNNING") => running += 1,
                Some("PROVISIONING" | "PENDING" | "ACTIVATING") => pending += 1,
                _ => {}
            }
        }
        instance.running_tasks_count = Some(running);
        instance.pending_tasks_count = Some(pending);
        let mut attributes = instance.attributes.take().unwrap_or_default();
        if let Some(custom) = self.custom_attributes.get(&stored.record.wharf_id) {
            for attribute in custom {
                attributes.retain(|a| a.name != attribute.name);
                attributes.push(Attribute {
                    name: attribute.name.clone(),
                    value: attribute.value.clone(),
                    target_type: None,
                    target_id: None,
                });
            }
        }
        instance.attributes = Some(attributes);
        instance
    }
}
