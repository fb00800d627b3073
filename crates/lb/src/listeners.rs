//! Listener reconciliation: every listener of every load balancer in the routing table is
//! bound on `address:port` (HTTP and HTTPS → the ALB path, TCP and TLS → the NLB path, UDP
//! → its datagram path, TCP_UDP → both on one port; on HTTPS and TLS listeners the TLS
//! handshake comes first); listeners that left the table are closed (their connections shut
//! down gracefully); unchanged ones are left alone with their connections. A load balancer is
//! active when all its listeners are bound, failed otherwise (address in use, certificates
//! that cannot be used, or a protocol this node does not serve).
//!
//! Whether a connection starts with a TLS handshake is looked up in the routing table when it
//! is accepted, so a listener changed from HTTP to HTTPS (or given new certificates) keeps
//! its socket and applies to new connections.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use model::elb::LoadBalancerFailure;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http_proxy::{serve_connection, HttpShared};
use crate::table::{Routes, RoutingTable};
use crate::tcp_proxy::serve_flow;
use crate::tls::ClientStream;
use crate::udp_proxy::serve_datagrams;
use crate::workers::Workers;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    Http,
    Tcp,
    Udp,
}

impl ListenerKind {
    /// The sockets a listener of `protocol` needs (none: not served here).
    fn for_protocol(protocol: &str) -> &'static [ListenerKind] {
        match protocol {
            "HTTP" | "HTTPS" => &[ListenerKind::Http],
            "TCP" | "TLS" => &[ListenerKind::Tcp],
            "UDP" => &[ListenerKind::Udp],
            "TCP_UDP" => &[ListenerKind::Tcp, ListenerKind::Udp],
            _ => &[],
        }
    }
}

/// Which load balancers this node serves, for `ReportTargetHealth`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadBalancerStates {
    pub active: Vec<String>,
    pub failed: Vec<LoadBalancerFailure>,
}

/// What listeners need to serve connections.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    pub routes: Arc<Routes>,
    pub http: Arc<HttpShared>,
    pub tracker: TaskTracker,
    pub workers: Arc<Workers>,
    pub shutdown: CancellationToken,
    /// How long a UDP flow lives without a datagram.
    pub udp_idle_timeout: Duration,
}

/// The bound listeners, owned by the routes loop.
#[derive(Debug, Default)]
pub struct Listeners {
    bound: HashMap<(SocketAddr, ListenerKind), CancellationToken>,
    has_failures: bool,
}

impl Listeners {
    /// Whether some listener could not be bound (worth retrying later).
    pub fn has_failures(&self) -> bool {
        self.has_failures
    }

    pub fn reconcile(
        &mut self,
        table: &RoutingTable,
        context: &ListenerContext,
    ) -> LoadBalancerStates {
        let mut states = LoadBalancerStates::default();
        let mut wanted = HashMap::new();
        let mut failures: BTreeMap<String, String> = BTreeMap::new();
        for lb in &table.load_balancers {
            if let Some(reason) = table.tls_failures.get(&lb.arn) {
                failures.insert(lb.arn.clone(), reason.clone());
            }
            for (port, protocol) in &lb.listeners {
                let address = SocketAddr::new(lb.address, *port);
                let kinds = ListenerKind::for_protocol(protocol);
                if kinds.is_empty() {
                    failures.entry(lb.arn.clone()).or_insert_with(|| {
                        format!("{protocol} listeners are not supported by this data plane")
                    });
                }
                for kind in kinds {
                    wanted.insert((address, *kind), lb.arn.clone());
                }
            }
        }
        self.bound.retain(|key, token| {
            let keep = wanted.contains_key(key);
            if !keep {
                tracing::info!(address = %key.0, "closing listener");
                token.cancel();
            }
            keep
        });
        for (key, arn) in &wanted {
            if self.bound.contains_key(key) {
                continue;
            }
            let (address, kind) = *key;
            let token = context.shutdown.child_token();
            let bound = match kind {
                ListenerKind::Udp => bind_udp(address).map(|socket| {
                    context.tracker.spawn(serve_datagrams(
                        socket,
                        address,
                        context.routes.clone(),
                        context.udp_idle_timeout,
                        token.clone(),
                    ));
                }),
                ListenerKind::Http | ListenerKind::Tcp => bind(address).map(|listener| {
                    context.tracker.spawn(accept_loop(
                        listener,
                        kind,
                        address,
                        context.clone(),
                        token.clone(),
                    ));
                }),
            };
            match bound {
                Ok(()) => {
                    tracing::info!(load_balancer = %arn, %address, ?kind, "listener bound");
                    self.bound.insert(*key, token);
                }
                Err(error) => {
                    tracing::warn!(load_balancer = %arn, %address, %error, "cannot bind listener");
                    failures
                        .entry(arn.clone())
                        .or_insert_with(|| format!("cannot listen on {address}: {error}"));
                }
            }
        }
        self.has_failures = !failures.is_empty();
        for lb in &table.load_balancers {
            match failures.remove(&lb.arn) {
                Some(reason) => states.failed.push(LoadBalancerFailure {
                    arn: lb.arn.clone(),
                    reason,
                }),
                None => states.active.push(lb.arn.clone()),
            }
        }
        states
    }

    /// Closes every listener.
    pub fn close_all(&mut self) {
        for (_, token) in self.bound.drain() {
            token.cancel();
        }
    }
}

/// The client side of a new connection: TLS terminated first when the listener on `local`
/// is an HTTPS or TLS one.
async fn accept_tls(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<ClientStream> {
    match tls {
        Some(config) => crate::tls::accept(stream, config).await,
        None => Ok(ClientStream::Plain(stream)),
    }
}

/// Binds with `SO_REUSEADDR`, so a listener can be bound again right after it was closed.
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// A UDP listener's socket, registered with the node's reactor.
fn bind_udp(address: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(address)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

async fn accept_loop(
    listener: TcpListener,
    kind: ListenerKind,
    local: SocketAddr,
    context: ListenerContext,
    token: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                // Re-registered with the worker's reactor (see `crate::workers`).
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(%remote, %error, "cannot hand a connection to a worker");
                        continue;
                    }
                };
                let (http, routes, token) =
                    (context.http.clone(), context.routes.clone(), token.clone());
                context.workers.spawn(async move {
                    let stream = match TcpStream::from_std(stream) {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::debug!(%remote, %error, "cannot register a connection");
                            return;
                        }
                    };
                    // The listener's certificates and its load balancer's counters, looked up
                    // once per connection.
                    let (tls, metrics) = match routes.current().listeners.get(&local) {
                        Some(listener) => (
                            listener.tls.clone(),
                            Some(listener.load_balancer.metrics.clone()),
                        ),
                        None => (None, None),
                    };
                    let stream = match accept_tls(stream, tls).await {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::debug!(%remote, %error, "TLS handshake failed");
                            if let Some(metrics) = &metrics {
                                metrics.connections.tls_negotiation_error();
                            }
                            return;
                        }
                    };
                    match kind {
                        ListenerKind::Http => {
                            let _open = metrics.as_deref().map(|m| m.connections.open());
                            serve_connection(stream, remote, local, http, token).await
                        }
                        ListenerKind::Tcp | ListenerKind::Udp => {
                            serve_flow(stream, remote, local, routes, token).await
                        }
                    }
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(%local, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
