//! The NLB data path for datagrams (UDP and TCP_UDP listeners): a flow is a client address and
//! port. A flow's first datagram picks its target as a TCP flow does
//! ([`crate::tcp_proxy::choose_target`]), but by a hash of the flow (the client's address and
//! port and the listener's) rather than in turn, as AWS does: a client socket's flows keep
//! their target while the targets stay the same, even across idle timeouts. Every datagram of
//! the flow then goes to that target from a socket of the flow's own, and what the target sends
//! back to that socket goes to the client from the listener's address. A flow nothing moved on
//! for [`UDP_IDLE_TIMEOUT`] (AWS's fixed 120 s for UDP) is forgotten, and its next datagram
//! starts a new flow.
//!
//! Draining works as for TCP flows: a deregistered target gets no new flows, and its flows go
//! on after the delay unless `deregistration_delay.connection_termination.enabled` ends them
//! then. (AWS offers no Proxy Protocol for UDP groups, and the API refuses it.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::clock::monotonic_ms;
use crate::http_proxy::InFlight;
use crate::metrics::LoadBalancerMetrics;
use crate::table::Routes;
use crate::tcp_proxy::{choose_target, FlowTarget, Spread};

/// How long a UDP flow lives without a datagram either way (AWS's, not configurable).
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest datagram relayed (the largest a UDP socket carries).
const MAX_DATAGRAM: usize = 65_535;

/// One flow: its socket to the target and the task relaying the target's answers.
struct Flow {
    upstream: Arc<UdpSocket>,
    /// [`monotonic_ms`] of the last datagram either way.
    last: Arc<AtomicU64>,
    /// Ends the relay task; cancelled by it when the flow is cut at the draining deadline.
    stop: CancellationToken,
    metrics: Arc<LoadBalancerMetrics>,
    _in_flight: InFlight,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop.cancel();
        self.metrics
            .flows
            .udp
            .active_flows
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the datagrams arriving on `socket`, the listener on `local`, until `shutdown`; a
/// flow without a datagram for `idle` ends (checked every second, or every `idle` if shorter).
pub async fn serve_datagrams(
    socket: UdpSocket,
    local: SocketAddr,
    routes: Arc<Routes>,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(idle.min(Duration::from_secs(1)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (length, client) = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sweep.tick() => {
                let now = monotonic_ms(Instant::now());
                let idle = idle.as_millis() as u64;
                flows.retain(|_, flow| {
                    !flow.stop.is_cancelled()
                        && now.saturating_sub(flow.last.load(Ordering::Relaxed)) < idle
                });
                continue;
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%local, %error, "receiving a datagram failed");
                    continue;
                }
            },
        };
        let live = flows
            .get(&client)
            .is_some_and(|flow| !flow.stop.is_cancelled());
        if !live {
            match open_flow(&socket, client, local, &routes).await {
                Some(flow) => {
                    flows.insert(client, flow);
                }
                None => {
                    tracing::debug!(%client, %local, "no target for a new UDP flow, dropping its datagram");
                    flows.remove(&client);
                    continue;
                }
            }
        }
        let Some(flow) = flows.get(&client) else {
            continue;
        };
        flow.last
            .store(monotonic_ms(Instant::now()), Ordering::Relaxed);
        flow.metrics
            .flows
            .udp
            .processed_bytes
            .fetch_add(length as u64, Ordering::Relaxed);
        if let Err(error) = flow.upstream.send(&buf[..length]).await {
            tracing::debug!(%client, %error, "sending a datagram to the target failed");
        }
    }
}

/// A new flow from `client`: its target chosen, a socket connected to it, and the task that
/// relays the target's datagrams back to the client.
async fn open_flow(
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    local: SocketAddr,
    routes: &Routes,
) -> Option<Flow> {
    let (chosen, metrics) = {
        let table = routes.current();
        let entry = table.listeners.get(&local)?;
        (
            choose_target(entry, client, Spread::FlowHash(local))?,
            entry.load_balancer.metrics.clone(),
        )
    };
    let FlowTarget {
        target,
        terminate_at_deadline,
        ..
    } = chosen;
    let bind_to: SocketAddr = if target.address.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let upstream = match UdpSocket::bind(bind_to).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "cannot open a socket for a UDP flow");
            return None;
        }
    };
    if let Err(error) = upstream.connect(target.address).await {
        tracing::debug!(target = %target.address, %error, "cannot reach the target");
        return None;
    }
    metrics.flows.udp.new_flows.fetch_add(1, Ordering::Relaxed);
    metrics
        .flows
        .udp
        .active_flows
        .fetch_add(1, Ordering::Relaxed);
    let flow = Flow {
        upstream: Arc::new(upstream),
        last: Arc::new(AtomicU64::new(monotonic_ms(Instant::now()))),
        stop: CancellationToken::new(),
        metrics: metrics.clone(),
        _in_flight: InFlight::start(&target),
    };
    let (upstream, last, stop) = (flow.upstream.clone(), flow.last.clone(), flow.stop.clone());
    let listener = listener.clone();
    tokio::spawn(async move {
        let cut_at_deadline = async {
            if terminate_at_deadline {
                target.closed.cancelled().await
            } else {
                std::future::pending().await
            }
        };
        tokio::pin!(cut_at_deadline);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut cut_at_deadline => {
                    tracing::debug!(%client, target = %target.address, "ending a UDP flow to a drained target");
                    stop.cancel();
                    return;
                }
                received = upstream.recv(&mut buf) => received,
            };
            match received {
                Ok(length) => {
                    last.store(monotonic_ms(Instant::now()), Ordering::Relaxed);
                    metrics
                        .flows
                        .udp
                        .processed_bytes
                        .fetch_add(length as u64, Ordering::Relaxed);
                    let _ = listener.send_to(&buf[..length], client).await;
                }
                // An ICMP port unreachable from the target: it may listen again later.
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(error) => {
                    tracing::debug!(%client, target = %target.address, %error, "a UDP flow's socket failed");
                    stop.cancel();
                    return;
                }
            }
        }
    });
    Some(flow)
}
