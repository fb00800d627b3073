//! `wharf lb`: the ALB/NLB data plane. It fetches route snapshots (`model::elb::RouteSnapshot`)
//! from the control plane, binds each load balancer's listeners on its address, proxies HTTP
//! (ALB) and TCP (NLB) to targets, runs the target groups' health checks, drains deregistered
//! targets, and reports target health and request metrics back.
//!
//! - [`node`]: [`LoadBalancerNode::start`], the owner of every task;
//! - [`source`]: the [`RouteSource`] and [`Reporter`] seams, and [`MemoryControlPlane`];
//! - [`control_plane`]: the [`control_plane::Client`] speaking the protocol to a Wharf server;
//! - [`table`]: the compiled routing table, swapped whole, and per-target runtime state;
//! - [`matching`] and [`balancer`]: rule conditions, group and target choice;
//! - [`http_proxy`], [`tcp_proxy`] and [`udp_proxy`]: the ALB and NLB data paths ([`http1`] serves HTTP/1.x
//!   clients, [`framing`] relays their bodies, [`proxy_protocol`] writes the headers NLB
//!   flows can start with); [`listeners`] binds them; [`upstream`] pools keep-alive
//!   connections to targets (and shares an HTTP/2 one per target of HTTP2 and GRPC groups);
//!   [`tls`] terminates HTTPS and TLS listeners' TLS and speaks TLS to HTTPS and TLS groups'
//!   targets;
//! - [`workers`]: the threads client connections run on;
//! - [`health`]: health checks; [`metrics`]: request metrics.
//!
//! Architecture invariant: the data plane never writes desired state; it serves the last
//! snapshot it received (even while the control plane is unreachable) and reports only what
//! it observes.

pub mod balancer;
pub mod clock;
pub mod control_plane;
pub mod framing;
pub mod health;
pub mod http1;
pub mod http_proxy;
pub mod listeners;
pub mod matching;
pub mod metrics;
pub mod node;
pub mod proxy_protocol;
pub mod source;
pub mod table;
pub mod tcp_proxy;
pub mod tls;
pub mod udp_proxy;
pub mod upstream;
pub mod workers;

pub use node::{LoadBalancerConfig, LoadBalancerHandle, LoadBalancerNode};
pub use source::{ControlPlaneError, MemoryControlPlane, Reporter, RouteSource};
