//! The NLB data path: each accepted connection (a flow) goes to one target of the listener's
//! forward action, chosen like HTTP requests are (weighted group, then round robin over the
//! healthy targets, failing open when none is), and bytes are copied both ways until both
//! sides close or nothing moves for the load balancer's idle timeout (350 s, AWS's for TCP
//! flows). A flow to a draining target is closed when its deadline passes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::framing::tunnel;
use crate::http_proxy::InFlight;
use crate::table::{Action, Routes};

/// Proxies one flow accepted on `local`.
pub async fn serve_flow(
    mut client: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    routes: Arc<Routes>,
    shutdown: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let (target, metrics, idle) = {
        let table = routes.current();
        let Some(listener) = table.listeners.get(&local) else {
            return;
        };
        let metrics = listener.load_balancer.metrics.clone();
        let idle = listener.idle_timeout;
        let target = listener
            .rules
            .iter()
            .find_map(|rule| match &rule.action {
                Action::Forward(forward) => forward.choose_group(None),
                _ => None,
            })
            .and_then(|weighted| weighted.group.choose_target(None))
            .map(|target| target.runtime.clone());
        (target, metrics, idle)
    };
    let Some(target) = target else {
        tracing::debug!(%remote, %local, "no target for a new flow, closing it");
        return;
    };
    let flows = &metrics.flows;
    flows.new_flows.fetch_add(1, Ordering::Relaxed);
    flows.active_flows.fetch_add(1, Ordering::Relaxed);
    let in_flight = InFlight::start(&target);
    let connect = tokio::time::timeout(
        crate::upstream::CONNECT_TIMEOUT,
        TcpStream::connect(target.address),
    );
    let upstream = tokio::select! {
        connected = connect => connected,
        _ = target.closed.cancelled() => Ok(Err(std::io::ErrorKind::ConnectionAborted.into())),
        _ = shutdown.cancelled() => Ok(Err(std::io::ErrorKind::ConnectionAborted.into())),
    };
    match upstream {
        Ok(Ok(mut upstream)) => {
            let _ = upstream.set_nodelay(true);
            // `ProcessedBytes` counts bytes as they pass: long-lived flows show in every
            // metrics period, and flows cut by draining or shutdown count what they carried.
            let count = |read: usize| {
                flows
                    .processed_bytes
                    .fetch_add(read as u64, Ordering::Relaxed);
            };
            tokio::select! {
                _ = tunnel(&mut client, &mut upstream, idle, &count) => {}
                _ = target.closed.cancelled() => {
                    tracing::debug!(%remote, target = %target.address, "closing a flow to a drained target");
                }
                _ = shutdown.cancelled() => {}
            }
        }
        Ok(Err(error)) => {
            tracing::debug!(%remote, target = %target.address, %error, "cannot connect to the target");
        }
        Err(_) => {
            tracing::debug!(%remote, target = %target.address, "connecting to the target timed out");
        }
    }
    drop(in_flight);
    flows.active_flows.fetch_sub(1, Ordering::Relaxed);
}
