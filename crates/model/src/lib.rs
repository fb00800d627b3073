//! Wharf's resource types in ECS vocabulary (clusters, task definitions, tasks, services,
//! tags, attributes, account settings), their ARNs and ids, and the validation AWS applies to them.
//!
//! Architecture invariant: this crate does no I/O, never reads the clock and never draws
//! random numbers. Callers pass ids and timestamps in, so everything here is deterministic.

pub mod agent;
pub mod arn;
pub mod ec2;
pub mod ecs;
pub mod elb;
pub mod validation;
