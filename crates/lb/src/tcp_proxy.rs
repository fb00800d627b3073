//! The NLB data path: each accepted connection (a flow) goes to one target of the listener's
//! forward action, chosen like HTTP requests are (weighted group, then round robin over the
//! healthy targets, failing open when none is; with `source_ip` stickiness, the target the
//! client's address hashes to; UDP flows by a hash of the flow, see [`Spread`]), and bytes are
//! copied both ways until both sides close or nothing moves for the load balancer's idle
//! timeout (350 s, AWS's for TCP flows). A reset by either side is passed on to the other as a
//! reset; a flow without a reachable target is reset by the load balancer.
//!
//! With the group's `proxy_protocol_v2.enabled`, the target first reads a Proxy Protocol v2
//! header naming the client and the listener. A TLS group's flows are encrypted again to the
//! target (after that header), offering it the ALPN protocol the client settled on. A flow to
//! a deregistered target goes on after the deregistration delay until it ends, as AWS's do by
//! default; with `deregistration_delay.connection_termination.enabled` it is closed when the
//! delay ends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::framing::{tunnel, TunnelEnd};
use crate::http_proxy::InFlight;
use crate::table::{Action, ListenerTable, Routes, TargetRuntime, TargetStickiness};
use crate::tls::{ClientStream, TargetStream};

/// Where a new flow goes, and how.
pub(crate) struct FlowTarget {
    pub target: Arc<TargetRuntime>,
    /// The flow starts with a Proxy Protocol v2 header.
    pub proxy_protocol: bool,
    /// The flow is closed when the target's deregistration delay ends.
    pub terminate_at_deadline: bool,
}

/// How a flow without stickiness picks its target.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spread {
    /// TCP and TLS: AWS hashes the flow with the client's initial sequence number, which is
    /// random, so each connection lands anywhere; round robin spreads them as evenly.
    RoundRobin,
    /// UDP: AWS hashes the protocol, the client's address and port and the listener's
    /// address and port, so a client socket's flows keep their target, also once a flow
    /// idled out and the next datagram starts a new one. The listener's address is here.
    FlowHash(SocketAddr),
}

/// The target of a new flow from `remote` to `listener`: the first forward action's weighted
/// group, then the healthy target the client's address hashes to under `source_ip`
/// stickiness, else as `spread` says.
pub(crate) fn choose_target(
    listener: &ListenerTable,
    remote: SocketAddr,
    spread: Spread,
) -> Option<FlowTarget> {
    let weighted = listener.rules.iter().find_map(|rule| match &rule.action {
        Action::Forward(forward) => forward.choose_group(None),
        _ => None,
    })?;
    let group = &weighted.group;
    let target = match group.stickiness {
        TargetStickiness::SourceIp => group.choose_target_for_source(remote.ip()),
        _ => match spread {
            Spread::RoundRobin => group.choose_target(None),
            // 17: UDP's protocol number.
            Spread::FlowHash(local) => group.choose_target_by_hash((17u8, remote, local)),
        },
    }?;
    Some(FlowTarget {
        target: target.runtime.clone(),
        proxy_protocol: group.proxy_protocol_v2,
        terminate_at_deadline: group.connection_termination,
    })
}

/// Makes closing `stream` send a reset (`SO_LINGER` 0) and counts it in `counter`.
fn reset(stream: &tokio::net::TcpStream, counter: &std::sync::atomic::AtomicU64) {
    if stream.set_zero_linger().is_ok() {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Proxies one flow accepted on `local`.
pub async fn serve_flow(
    mut client: ClientStream,
    remote: SocketAddr,
    local: SocketAddr,
    routes: Arc<Routes>,
    shutdown: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let (chosen, metrics, idle) = {
        let table = routes.current();
        let Some(listener) = table.listeners.get(&local) else {
            return;
        };
        let metrics = listener.load_balancer.metrics.clone();
        (
            choose_target(listener, remote, Spread::RoundRobin),
            metrics,
            listener.idle_timeout,
        )
    };
    let Some(FlowTarget {
        target,
        proxy_protocol,
        terminate_at_deadline,
    }) = chosen
    else {
        tracing::debug!(%remote, %local, "no target for a new flow, resetting it");
        reset(client.tcp(), &metrics.flows.elb_resets);
        return;
    };
    let header = proxy_protocol.then(|| crate::proxy_protocol::flow_header(remote, local));
    // Without connection termination the deadline closes nothing: the flow's own end, the
    // idle timeout or the listener's shutdown do.
    let cut_at_deadline = async {
        if terminate_at_deadline {
            target.closed.cancelled().await
        } else {
            std::future::pending().await
        }
    };
    let flows = if matches!(client, ClientStream::Tls(_)) {
        &metrics.flows.tls
    } else {
        &metrics.flows.tcp
    };
    flows.new_flows.fetch_add(1, Ordering::Relaxed);
    flows.active_flows.fetch_add(1, Ordering::Relaxed);
    let in_flight = InFlight::start(&target);
    // A TLS group's target gets the client's ALPN choice, so both ends speak one protocol.
    let alpn = client.alpn_protocol().map(<[u8]>::to_vec);
    let connect = async {
        let mut upstream =
            crate::upstream::open(target.address)
                .await
                .map_err(|error| match error {
                    // (Its kind kept: no free local port counts as a port allocation error.)
                    crate::upstream::UpstreamError::Connect { source, .. } => source,
                    other => std::io::Error::other(other),
                })?;
        // The Proxy Protocol header goes first, in the clear, as AWS's does.
        if let Some(header) = header {
            upstream.write_all(&header).await?;
        }
        if !target.tls {
            return Ok(TargetStream::Plain(upstream));
        }
        let upstream = crate::tls::connect_to_target(upstream, alpn.as_deref()).await?;
        Ok::<_, std::io::Error>(TargetStream::Tls(Box::new(upstream)))
    };
    let upstream = tokio::select! {
        connected = connect => connected,
        _ = target.closed.cancelled() => Err(std::io::ErrorKind::ConnectionAborted.into()),
        _ = shutdown.cancelled() => Err(std::io::ErrorKind::ConnectionAborted.into()),
    };
    match upstream {
        Ok(mut upstream) => {
            // `ProcessedBytes` counts bytes as they pass: long-lived flows show in every
            // metrics period, and flows cut by draining or shutdown count what they carried.
            let count = |read: usize| {
                flows
                    .processed_bytes
                    .fetch_add(read as u64, Ordering::Relaxed);
            };
            tokio::select! {
                end = tunnel(&mut client, &mut upstream, idle, &count) => match end {
                    // A reset is passed on to the other side, as AWS's are.
                    TunnelEnd::ResetByA => reset(upstream.tcp(), &metrics.flows.client_resets),
                    TunnelEnd::ResetByB => reset(client.tcp(), &metrics.flows.target_resets),
                    TunnelEnd::Closed | TunnelEnd::Failed => {}
                },
                _ = cut_at_deadline => {
                    tracing::debug!(%remote, target = %target.address, "closing a flow to a drained target");
                }
                _ = shutdown.cancelled() => {}
            }
        }
        Err(error) => {
            tracing::debug!(%remote, target = %target.address, %error, "cannot reach the target, resetting the flow");
            if error.kind() == std::io::ErrorKind::AddrNotAvailable {
                metrics
                    .flows
                    .port_allocation_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            reset(client.tcp(), &metrics.flows.elb_resets);
        }
    }
    drop(in_flight);
    flows.active_flows.fetch_sub(1, Ordering::Relaxed);
}
