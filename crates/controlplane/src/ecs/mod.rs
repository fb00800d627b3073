//! The ECS service (`AmazonEC2ContainerServiceV20141113`, JSON 1.1): the handler context, the
//! operation table, and store helpers shared by the handlers.
//!
//! Every handler has the shape `async fn(&EcsContext, serde_json::Value) -> Result<Value,
//! EcsError>`: it parses its typed input, validates everything before writing, resolves ids,
//! ARNs and timestamps, and writes through one store transaction.

mod account_settings;
pub mod agent_service;
mod attributes;
pub mod awsvpc;
pub mod cluster_state;
mod clusters;
mod container_instances;
pub mod error;
pub mod keys;
mod paging;
mod placement;
pub mod placer;
mod query;
pub mod services;
mod tags;
mod task_definitions;
pub mod tasks;
pub mod usage;

use std::sync::Arc;

use bytes::Bytes;
use model::arn::Scope;
use protocol::pagination::TokenCodec;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use store::clock::Clock;
use store::{Compare, CompareOp, CompareTarget, KeyValue, Op, Revision, Store, Txn};

pub use error::EcsError;

/// The X-Amz-Target prefix of ECS.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// What every ECS handler needs: the store, the clock, the region/account, and the key that
/// signs pagination tokens.
pub struct EcsContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub scope: Scope,
    pub tokens: TokenCodec,
    /// Per-cluster placement state (a cache of the store; see `placer`).
    pub placers: placer::Placers,
    /// Task resource usage from agents (`ReportTaskStats`), published as `AWS/ECS` metrics.
    pub usage: Arc<usage::UsageTracker>,
    /// Addresses awsvpc placements of this server are committing (see `awsvpc`).
    pub ip_claims: awsvpc::IpClaims,
}

impl EcsContext {
    /// A context for a server (or a benchmark) in `region` of `account_id`; `token_key` keys
    /// pagination tokens.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        region: &str,
        account_id: &str,
        token_key: &[u8],
    ) -> EcsContext {
        EcsContext {
            store,
            clock,
            scope: Scope::new(region, account_id),
            tokens: TokenCodec::new(token_key),
            placers: Default::default(),
            usage: Default::default(),
            ip_claims: Default::default(),
        }
    }

    /// Now as ECS timestamps are written on the wire: fractional seconds since the epoch.
    pub fn now(&self) -> f64 {
        (self.clock.now_millis() as f64) / 1000.0
    }

    /// Parse a handler's input into its typed shape. Missing required members are
    /// `InvalidParameterException`s; type mismatches are `SerializationException`s, as the
    /// JSON protocol reports them.
    pub fn parse<T: DeserializeOwned>(&self, input: Value) -> Result<T, EcsError> {
        serde_json::from_value(input).map_err(|error| {
            let text = error.to_string();
            if let Some(rest) = text.strip_prefix("missing field `") {
                let field = rest.split('`').next().unwrap_or("");
                EcsError::InvalidParameter(format!("{field} can not be blank."))
            } else {
                EcsError::Serialization(text)
            }
        })
    }

    /// Read and decode one JSON record with the revision it was last written at.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Revision)>, EcsError> {
        match self.store.get(key).await? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Read and decode every JSON record under a prefix, in key order.
    pub async fn range_json<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, EcsError> {
        let response = self.store.range(prefix, Default::default()).await?;
        response
            .kvs
            .iter()
            .map(|kv| Ok((kv.key.clone(), decode(kv)?)))
            .collect()
    }
}

/// Decode a stored record; a record that no longer decodes is a server-side fault.
pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, EcsError> {
    serde_json::from_slice(&kv.value).map_err(|error| {
        EcsError::Store(store::StoreError::Backend(format!(
            "record {} does not decode: {error}",
            kv.key
        )))
    })
}

/// A compare that holds while `key` is still at `revision` (0: the key does not exist), the
/// guard of every read-modify-write in the handlers.
pub fn unchanged(key: &str, revision: Revision) -> Compare {
    Compare {
        key: key.to_string(),
        target: CompareTarget::ModRevision(revision),
        op: CompareOp::Equal,
    }
}

/// Write `value` at `key` if nobody wrote the key since `revision`; false when the caller must
/// re-read and try again.
pub async fn put_if_unchanged<T: Serialize>(
    ctx: &EcsContext,
    key: &str,
    revision: Revision,
    value: &T,
) -> Result<bool, EcsError> {
    let response = ctx
        .store
        .txn(Txn {
            compares: vec![unchanged(key, revision)],
            success: vec![Op::Put {
                key: key.to_string(),
                value: encode(value),
                lease: None,
            }],
            failure: vec![],
        })
        .await?;
    Ok(response.succeeded)
}

/// Encode a record for the store.
pub fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// Serialize a response shape.
pub fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Run one ECS operation. `None` means the operation is unknown.
pub async fn dispatch(
    ctx: &EcsContext,
    operation: &str,
    input: Value,
) -> Option<Result<Value, EcsError>> {
    let result = match operation {
        "CreateCluster" => clusters::create_cluster(ctx, input).await,
        "DescribeClusters" => clusters::describe_clusters(ctx, input).await,
        "ListClusters" => clusters::list_clusters(ctx, input).await,
        "UpdateCluster" => clusters::update_cluster(ctx, input).await,
        "UpdateClusterSettings" => clusters::update_cluster_settings(ctx, input).await,
        "DeleteCluster" => clusters::delete_cluster(ctx, input).await,
        "RegisterTaskDefinition" => task_definitions::register_task_definition(ctx, input).await,
        "DescribeTaskDefinition" => task_definitions::describe_task_definition(ctx, input).await,
        "ListTaskDefinitions" => task_definitions::list_task_definitions(ctx, input).await,
        "ListTaskDefinitionFamilies" => {
            task_definitions::list_task_definition_families(ctx, input).await
        }
        "DeregisterTaskDefinition" => {
            task_definitions::deregister_task_definition(ctx, input).await
        }
        "DeleteTaskDefinitions" => task_definitions::delete_task_definitions(ctx, input).await,
        "RegisterContainerInstance" => {
            container_instances::register_container_instance(ctx, input).await
        }
        "DescribeContainerInstances" => {
            container_instances::describe_container_instances(ctx, input).await
        }
        "ListContainerInstances" => container_instances::list_container_instances(ctx, input).await,
        "DeregisterContainerInstance" => {
            container_instances::deregister_container_instance(ctx, input).await
        }
        "UpdateContainerInstancesState" => {
            container_instances::update_container_instances_state(ctx, input).await
        }
        "RunTask" => tasks::run_task(ctx, input).await,
        "StartTask" => tasks::start_task(ctx, input).await,
        "StopTask" => tasks::stop_task(ctx, input).await,
        "DescribeTasks" => tasks::describe_tasks(ctx, input).await,
        "ListTasks" => tasks::list_tasks(ctx, input).await,
        "CreateService" => services::api::create_service(ctx, input).await,
        "UpdateService" => services::api::update_service(ctx, input).await,
        "DeleteService" => services::api::delete_service(ctx, input).await,
        "DescribeServices" => services::api::describe_services(ctx, input).await,
        "ListServices" => services::api::list_services(ctx, input).await,
        "ListServicesByNamespace" => services::api::list_services_by_namespace(ctx, input).await,
        "ListServiceDeployments" => services::history::list_service_deployments(ctx, input).await,
        "DescribeServiceDeployments" => {
            services::history::describe_service_deployments(ctx, input).await
        }
        "DescribeServiceRevisions" => {
            services::history::describe_service_revisions(ctx, input).await
        }
        "StopServiceDeployment" => services::history::stop_service_deployment(ctx, input).await,
        "TagResource" => tags::tag_resource(ctx, input).await,
        "UntagResource" => tags::untag_resource(ctx, input).await,
        "ListTagsForResource" => tags::list_tags_for_resource(ctx, input).await,
        "PutAttributes" => attributes::put_attributes(ctx, input).await,
        "DeleteAttributes" => attributes::delete_attributes(ctx, input).await,
        "ListAttributes" => attributes::list_attributes(ctx, input).await,
        "PutAccountSetting" => account_settings::put_account_setting(ctx, input).await,
        "PutAccountSettingDefault" => {
            account_settings::put_account_setting_default(ctx, input).await
        }
        "DeleteAccountSetting" => account_settings::delete_account_setting(ctx, input).await,
        "ListAccountSettings" => account_settings::list_account_settings(ctx, input).await,
        _ => return None,
    };
    Some(result)
}
