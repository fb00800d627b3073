//! Wharf's placement engine: given a snapshot of a cluster's container instances and a request
//! for tasks, decide which instance runs each task, or say, in AWS's words, why none can.
//!
//! Architecture invariant: the scheduler does no I/O, never reads the clock and never touches a
//! global random generator; randomness comes from the seed in the request (and the tie-break
//! seed of a [`Scheduler`]), so the same inputs always give the same plan.
//!
//! - [`snapshot`]: the input, container instances in ECS vocabulary.
//! - [`request`]: a [`PlacementRequest`] (task size, group, constraints, strategies, count, seed)
//!   and AWS's validation of constraints and strategies.
//! - [`query`]: the cluster query language of `memberOf` (parser and evaluator).
//! - [`Scheduler`]: plans requests against a working copy of the cluster that remembers what it
//!   placed, using per-request caches and selection indices so a request costs about
//!   O(tasks × log instances), not O(instances).
//! - [`mod@plan`]: the output, placements and per-instance rejections, with RunTask `failures[]` and
//!   service-event text.
//!
//! Messages that go on the wire (validation errors, failure reasons, service events) are written
//! as AWS writes them, capitalised and with a period, unlike the lowercase style of Wharf's
//! internal errors: there the wire wins. Which of them are verified against AWS and which are
//! ours is listed in [`mod@plan`], [`request::RequestError`] and [`query::ExpressionError`].
//!
//! How strategies combine: lexicographically, in the given order (each strategy only breaks the
//! ties left by the ones before it), with a seeded pseudo-random order of instances as the last
//! tie-breaker. `spread` counts the tasks of the request's group (a service's tasks for a
//! service, the task group for RunTask), including those the same plan placed.

mod cluster;
mod index;
pub mod plan;
pub mod query;
mod random;
pub mod request;
mod scan;
mod scheduler;
pub mod snapshot;

pub use plan::{Failure, InstanceRejection, Placement, Plan, RejectionReason, Unplaced};
pub use query::{Expression, ExpressionError, InstanceFacts};
pub use request::{
    BinpackField, PlacementConstraint, PlacementRequest, PlacementStrategy, RequestError,
    SpreadField, TaskRequirements,
};
pub use scheduler::Scheduler;
pub use snapshot::{
    ContainerInstance, ContainerInstanceStatus, HostPort, Protocol, Resources, Snapshot,
    TaskOnInstance,
};

/// Plans one request against a snapshot: the pure-function form of [`Scheduler::place`], with
/// the request's seed also ordering ties.
pub fn plan(snapshot: &Snapshot, request: &PlacementRequest) -> Result<Plan, RequestError> {
    Scheduler::new(snapshot.clone(), request.seed).place(request)
}
