//! Dynamic host ports for bridge-mode port mappings without a `hostPort`. The agent picks them
//! from its own range (default 49153–65535, ECS's) rather than letting Docker choose, so the
//! range is configurable per agent and the chosen port is known before the container exists.
//!
//! A port is handed out only if this agent has not handed it out already and it can be bound
//! on the host right now (so ports of other processes, and of other agents sharing the engine,
//! are skipped). Each agent starts its search at a random point of the range, which keeps
//! agents sharing one host from racing for the same port.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::Mutex;

use crate::runtime::Protocol;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("no free {protocol} host port left in the dynamic range {first}-{last}")]
    Exhausted {
        protocol: &'static str,
        first: u16,
        last: u16,
    },
}

#[derive(Debug)]
pub struct PortAllocator {
    range: RangeInclusive<u16>,
    state: Mutex<AllocatorState>,
}

#[derive(Debug)]
struct AllocatorState {
    in_use: BTreeSet<(Protocol, u16)>,
    next: u16,
}

impl PortAllocator {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let span = u32::from(*range.end()) - u32::from(*range.start()) + 1;
        let offset = rand::random_range(0..span.max(1));
        let next = (u32::from(*range.start()) + offset) as u16;
        Self {
            range,
            state: Mutex::new(AllocatorState {
                in_use: BTreeSet::new(),
                next,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AllocatorState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A free host port, reserved until [`release`](Self::release).
    pub fn allocate(&self, protocol: Protocol) -> Result<u16, PortError> {
        let (first, last) = (*self.range.start(), *self.range.end());
        let mut state = self.lock();
        let span = u32::from(last) - u32::from(first) + 1;
        let mut candidate = state.next.clamp(first, last);
        for _ in 0..span {
            let port = candidate;
            candidate = if candidate == last {
                first
            } else {
                candidate + 1
            };
            if state.in_use.contains(&(protocol, port)) || !host_port_is_free(protocol, port) {
                continue;
            }
            state.in_use.insert((protocol, port));
            state.next = candidate;
            return Ok(port);
        }
        Err(PortError::Exhausted {
            protocol: protocol.as_str(),
            first,
            last,
        })
    }

    /// Marks a port as used (a re-adopted container's binding).
    pub fn reserve(&self, protocol: Protocol, port: u16) {
        self.lock().in_use.insert((protocol, port));
    }

    pub fn release(&self, protocol: Protocol, port: u16) {
        self.lock().in_use.remove(&(protocol, port));
    }

    pub fn in_use(&self) -> usize {
        self.lock().in_use.len()
    }
}

/// Whether the port can be bound on every interface right now.
fn host_port_is_free(protocol: Protocol, port: u16) -> bool {
    match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
        Protocol::Udp => std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_free_ports_and_skips_busy_ones() {
        let busy = std::net::TcpListener::bind(("0.0.0.0", 0)).expect("binds");
        let busy_port = busy.local_addr().expect("addr").port();
        let allocator = PortAllocator::new(busy_port..=busy_port.saturating_add(3));
        let mut seen = BTreeSet::new();
        while let Ok(port) = allocator.allocate(Protocol::Tcp) {
            assert_ne!(port, busy_port, "a port in use on the host is skipped");
            assert!(seen.insert(port), "never handed out twice");
        }
        assert!(!seen.is_empty());
        let released = *seen.iter().next().expect("one");
        allocator.release(Protocol::Tcp, released);
        assert_eq!(allocator.allocate(Protocol::Tcp), Ok(released));
        // The same number is independent per protocol.
        allocator.reserve(Protocol::Udp, released);
        assert_eq!(allocator.in_use(), seen.len() + 1);
    }

    #[test]
    fn an_exhausted_range_says_so() {
        let busy = std::net::TcpListener::bind(("0.0.0.0", 0)).expect("binds");
        let port = busy.local_addr().expect("addr").port();
        let allocator = PortAllocator::new(port..=port);
        assert_eq!(
            allocator.allocate(Protocol::Tcp),
            Err(PortError::Exhausted {
                protocol: "tcp",
                first: port,
                last: port
            })
        );
    }
}
