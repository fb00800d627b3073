//! Wharf's control plane: the single HTTP endpoint that authenticates every request with SigV4,
//! picks the AWS service from the credential scope, and runs that service's handlers against
//! the store. Controllers (placement, services, …) will live here too.

pub mod acm;
pub mod cloudwatch;
pub mod controllers;
pub mod credentials;
pub mod ec2;
pub mod ecs;
pub mod elbv2;
pub mod logs;
pub mod prometheus;
pub mod server;

pub use controllers::{ControllerSettings, InstanceHealthSettings, ServiceSettings};
pub use credentials::Credentials;
pub use server::{Server, ServerConfig};
