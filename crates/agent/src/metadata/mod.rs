//! The ECS task metadata endpoint, version 4 (and version 3 on the same documents): every
//! container the agent creates gets `ECS_CONTAINER_METADATA_URI_V4` (and
//! `ECS_CONTAINER_METADATA_URI`) pointing at an HTTP server of the agent, which answers, in
//! AWS's shapes ([`documents`]):
//!
//! - `${URI}`: the container's metadata; `${URI}/task`: its task's;
//! - `${URI}/stats`: the container's Docker stats; `${URI}/task/stats`: DockerId → stats of
//!   every container of the task.
//!
//! ```text
//!   owner ──publish snapshot / register token──> MetadataRegistry <──read── HTTP handlers
//!                                                                             │
//!   container ──GET http://<gateway>:<port>/v4/<token>/task──> listener ──────┘──> runtime
//! ```
//!
//! Where containers reach it: on their network's gateway (the host's side of it) — the
//! Docker `bridge` network's gateway for bridge mode, the subnet's gateway for awsvpc, and
//! 127.0.0.1 for host mode. Listeners are bound lazily, one per gateway address, on one port
//! per agent (the configured one, else the first one the OS picks, reused for the others when
//! free); never on the unspecified address.
//!
//! The URI ends in a token: a random id stored on the container as a label
//! ([`labels::METADATA_TOKEN`]) with the address it points at
//! ([`labels::METADATA_ENDPOINT`]), so a restarted agent that re-adopts the container serves the
//! same URI again: the owner registers the token, and the listener is bound on that address,
//! whenever it inspects the container.
//!
//! Structured shutdown: listeners run on the server's own `TaskTracker` and end on its
//! cancellation token; [`MetadataServer::shutdown`] cancels and waits for them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use model::agent::TaskNetwork;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::labels;
use crate::runtime::{ContainerRuntime, ContainerSpec, NetworkMode};

pub mod documents;
pub mod registry;
mod routes;

pub use registry::{ContainerSnapshot, MetadataRegistry, TaskSnapshot};

/// The environment variable of the v4 endpoint.
pub const URI_V4_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// The environment variable of the v3 endpoint (same server, same documents).
pub const URI_V3_ENV: &str = "ECS_CONTAINER_METADATA_URI";
/// Docker's default bridge network.
pub const DEFAULT_BRIDGE_NETWORK: &str = "bridge";

/// How the endpoint is served.
#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// The cluster as the agent registered with it (the documents' `Cluster`).
    pub cluster: String,
    pub availability_zone: String,
    /// The port every listener tries first. 0: the first listener takes one from the OS and
    /// the others try that one.
    pub port: u16,
    /// The Docker network bridge-mode containers are on.
    pub bridge_network: String,
}

impl MetadataConfig {
    pub fn new(cluster: &str, availability_zone: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            availability_zone: availability_zone.to_string(),
            port: 0,
            bridge_network: DEFAULT_BRIDGE_NETWORK.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("the task metadata endpoint is shut down")]
    ShutDown,
    #[error("the task metadata endpoint never listens on the unspecified address {0}")]
    Unspecified(IpAddr),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find the gateway of network {network}: {message}")]
    Gateway { network: String, message: String },
}

#[derive(Debug, Default)]
struct Listeners {
    bound: BTreeSet<SocketAddr>,
    /// The port new listeners try first (the configured one, or the first the OS picked).
    preferred: Option<u16>,
}

pub(crate) struct Inner {
    config: MetadataConfig,
    runtime: Arc<dyn ContainerRuntime>,
    registry: MetadataRegistry,
    listeners: Mutex<Listeners>,
    bridge_gateway: OnceCell<IpAddr>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// The task metadata endpoint of one agent. Cheap to clone; clones share the listeners and
/// the registry.
#[derive(Clone)]
pub struct MetadataServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MetadataServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataServer")
            .field("config", &self.inner.config)
            .field("addresses", &self.addresses())
            .finish_non_exhaustive()
    }
}

impl MetadataServer {
    /// A server with no listener yet; they are bound as containers need them, and all end
    /// when `cancel` fires (then [`shutdown`](Self::shutdown) waits for them).
    pub fn new(
        config: MetadataConfig,
        runtime: Arc<dyn ContainerRuntime>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                runtime,
                registry: MetadataRegistry::default(),
                listeners: Mutex::new(Listeners::default()),
                bridge_gateway: OnceCell::new(),
                cancel,
                tracker: TaskTracker::new(),
            }),
        }
    }

    pub fn config(&self) -> &MetadataConfig {
        &self.inner.config
    }

    /// What the owners published and registered.
    pub fn registry(&self) -> &MetadataRegistry {
        &self.inner.registry
    }

    fn listeners(&self) -> MutexGuard<'_, Listeners> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every address listened on.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners().bound.iter().copied().collect()
    }

    /// A new random token (128 bits, hex).
    pub fn new_token() -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    /// The v4 URI of the container with `token` on a network whose gateway is `gateway`,
    /// listening there first if need be: `http://<gateway>:<port>/v4/<token>`.
    pub fn uri_for(&self, gateway: IpAddr, token: &str) -> Result<String, MetadataError> {
        let address = self.listen_on(gateway)?;
        Ok(format!("http://{address}/v4/{token}"))
    }

    /// The address listened on for `ip`, binding it now if there is none yet: on the
    /// preferred port, else on one the OS picks.
    pub fn listen_on(&self, ip: IpAddr) -> Result<SocketAddr, MetadataError> {
        if ip.is_unspecified() {
            return Err(MetadataError::Unspecified(ip));
        }
        let mut listeners = self.listeners();
        if self.inner.cancel.is_cancelled() {
            return Err(MetadataError::ShutDown);
        }
        if let Some(address) = listeners.bound.iter().find(|a| a.ip() == ip) {
            return Ok(*address);
        }
        let preferred = listeners.preferred.unwrap_or(self.inner.config.port);
        let listener = match bind(SocketAddr::new(ip, preferred)) {
            Ok(listener) => listener,
            Err(error) if preferred != 0 => {
                tracing::debug!(ip = %ip, port = preferred, error = %error, "preferred metadata port taken; letting the OS pick one");
                bind(SocketAddr::new(ip, 0))?
            }
            Err(error) => return Err(error),
        };
        let address = self.serve(listener)?;
        listeners.preferred.get_or_insert(address.port());
        listeners.bound.insert(address);
        Ok(address)
    }

    /// Listens on exactly `address` (a re-adopted container's endpoint) unless it already
    /// does.
    pub fn listen_at(&self, address: SocketAddr) -> Result<(), MetadataError> {
        if address.ip().is_unspecified() {
            return Err(MetadataError::Unspecified(address.ip()));
        }
        let mut listeners = self.listeners();
        if self.inner.cancel.is_cancelled() {
            return Err(MetadataError::ShutDown);
        }
        if listeners.bound.contains(&address) {
            return Ok(());
        }
        let listener = bind(address)?;
        let address = self.serve(listener)?;
        listeners.preferred.get_or_insert(address.port());
        listeners.bound.insert(address);
        Ok(())
    }

    /// Serves on a bound listener until cancelled.
    fn serve(&self, listener: std::net::TcpListener) -> Result<SocketAddr, MetadataError> {
        let address = listener
            .local_addr()
            .map_err(|source| MetadataError::Bind {
                address: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                source,
            })?;
        let bind_error = |source| MetadataError::Bind { address, source };
        listener.set_nonblocking(true).map_err(bind_error)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
        let router = routes::router(self.inner.clone());
        let cancel = self.inner.cancel.clone();
        tracing::info!(address = %address, "task metadata endpoint listening");
        self.inner.tracker.spawn(
            async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(cancel.cancelled_owned())
                    .await;
                if let Err(error) = served {
                    tracing::warn!(error = %error, "task metadata listener failed");
                }
            }
            .instrument(tracing::info_span!("task_metadata", address = %address)),
        );
        Ok(address)
    }

    /// The gateway of the bridge network, asked of the engine once (again after a failure).
    pub async fn bridge_gateway(&self) -> Result<IpAddr, MetadataError> {
        let network = &self.inner.config.bridge_network;
        let gateway = |message: String| MetadataError::Gateway {
            network: network.clone(),
            message,
        };
        self.inner
            .bridge_gateway
            .get_or_try_init(|| async {
                match self.inner.runtime.network_gateway(network).await {
                    Ok(Some(ip)) => Ok(ip),
                    Ok(None) => Err(gateway("the engine reports none".to_string())),
                    Err(error) => Err(gateway(error.to_string())),
                }
            })
            .await
            .copied()
    }

    /// Called by an owner for every container it inspects: registers the container's token
    /// and listens on the address its URI points at (after an agent restart, nothing else
    /// would).
    pub(crate) fn observed(
        &self,
        task_arn: &str,
        container_name: &str,
        container_labels: &BTreeMap<String, String>,
    ) {
        let Some(token) = container_labels.get(labels::METADATA_TOKEN) else {
            return;
        };
        self.inner
            .registry
            .register_token(token, task_arn, container_name);
        let Some(address) = container_labels
            .get(labels::METADATA_ENDPOINT)
            .and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            return;
        };
        if let Err(error) = self.listen_at(address) {
            tracing::warn!(task_arn, container = container_name, error = %error, "cannot serve a re-adopted container's metadata endpoint");
        }
    }

    /// Publishes what an owner knows about its task.
    pub(crate) fn publish(&self, snapshot: TaskSnapshot) {
        self.inner.registry.publish(snapshot);
    }

    /// Forgets a task that was cleaned up.
    pub(crate) fn forget_task(&self, task_arn: &str) {
        self.inner.registry.forget_task(task_arn);
    }

    /// Stops every listener and waits for them (requests in flight finish).
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Where a container of this spec reaches the host: `awsvpc` tasks at their subnet's
    /// gateway, bridge mode at the bridge network's, host mode on loopback. `None` for
    /// containers without a network.
    async fn gateway_for(
        &self,
        spec: &ContainerSpec,
        network: Option<&TaskNetwork>,
    ) -> Result<Option<IpAddr>, MetadataError> {
        if spec.network_disabled {
            return Ok(None);
        }
        if let Some(network) = network {
            return network.gateway_ipv4_address.parse().map(Some).map_err(|_| {
                MetadataError::Gateway {
                    network: network.subnet_id.clone(),
                    message: format!("{:?} is not an IP address", network.gateway_ipv4_address),
                }
            });
        }
        match spec.network_mode {
            NetworkMode::Bridge => self.bridge_gateway().await.map(Some),
            NetworkMode::Host => Ok(Some(IpAddr::V4(Ipv4Addr::LOCALHOST))),
            _ => Ok(None),
        }
    }

    /// Gives a container spec its metadata endpoint: a new token in its labels with the
    /// address, and both URIs in its environment (replacing same-named entries of the task
    /// definition, as the ECS agent's own variables do).
    pub async fn attach(
        &self,
        spec: &mut ContainerSpec,
        network: Option<&TaskNetwork>,
    ) -> Result<(), MetadataError> {
        let Some(gateway) = self.gateway_for(spec, network).await? else {
            return Ok(());
        };
        let token = Self::new_token();
        let address = self.listen_on(gateway)?;
        let v4 = format!("http://{address}/v4/{token}");
        let v3 = format!("http://{address}/v3/{token}");
        spec.env.retain(|entry| {
            let name = entry.split('=').next().unwrap_or("");
            name != URI_V4_ENV && name != URI_V3_ENV
        });
        spec.env.push(format!("{URI_V4_ENV}={v4}"));
        spec.env.push(format!("{URI_V3_ENV}={v3}"));
        spec.labels
            .insert(labels::METADATA_TOKEN.to_string(), token);
        spec.labels
            .insert(labels::METADATA_ENDPOINT.to_string(), address.to_string());
        Ok(())
    }
}

fn bind(address: SocketAddr) -> Result<std::net::TcpListener, MetadataError> {
    std::net::TcpListener::bind(address).map_err(|source| MetadataError::Bind { address, source })
}

/// The runner's hook, where a container is about to be created: attaches the endpoint when
/// the engine has one. A failure is logged and the container is created without it: a task
/// must not fail to start because the host cannot listen on a gateway (a remote engine, for
/// example).
pub(crate) async fn attach_to_spec(
    server: Option<&MetadataServer>,
    mut spec: ContainerSpec,
    network: Option<&TaskNetwork>,
) -> ContainerSpec {
    if let Some(server) = server {
        if let Err(error) = server.attach(&mut spec, network).await {
            tracing::warn!(container = %spec.name, error = %error, "container created without a task metadata endpoint");
        }
    }
    spec
}

#[cfg(test)]
mod tests;
