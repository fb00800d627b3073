//! A placement request: what RunTask, StartTask and the service scheduler ask of the scheduler,
//! and the validation AWS applies to placement constraints and strategies.
//!
//! Constraints and strategies come in as typed values; `from_wire` turns the API's
//! `{type, expression}` / `{type, field}` strings into them with AWS's errors, so the control
//! plane validates a request before anything is written. Expressions stay text here and are
//! parsed (and cached) by the scheduler, which also reports their errors.
//!
//! Combination rules, as AWS documents them: the task definition's `placementConstraints` (only
//! `memberOf` is allowed there) and the request's all apply, at most 10 together; strategies
//! apply in order, at most 5.

use crate::query::{Expression, ExpressionError};
use crate::snapshot::HostPort;

/// "You can specify up to 10 constraints per task (including constraints in the task definition
/// and those specified at runtime)."
pub const MAX_CONSTRAINTS: usize = 10;
/// "You can specify a maximum of five strategy rules per task."
pub const MAX_STRATEGIES: usize = 5;

/// What one task needs from a container instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TaskRequirements {
    /// CPU units: the task-level `cpu`, or the sum of the containers' `cpu`.
    pub cpu: u32,
    /// MiB: the task-level `memory`, or per container `memoryReservation` else `memory`, summed.
    pub memory: u32,
    /// Static host ports of the port mappings (host port 0, dynamic, needs nothing).
    pub host_ports: Vec<HostPort>,
    /// GPUs (`resourceRequirements` of type `GPU`, summed over containers).
    pub gpu: u32,
}

/// A placement constraint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PlacementConstraint {
    /// Each task of the group on a different container instance.
    DistinctInstance,
    /// Only container instances satisfying a cluster query language expression.
    MemberOf(String),
}

impl PlacementConstraint {
    /// Reads the API's `{type, expression}`. `position` is the constraint's 1-based position in
    /// its list, for AWS's "at 'placementConstraints.N.member.type'" validation message.
    pub fn from_wire(
        r#type: Option<&str>,
        expression: Option<&str>,
        position: usize,
    ) -> Result<Self, RequestError> {
        match r#type {
            Some("distinctInstance") => match expression {
                // Terraform sends "" for an unset expression, and AWS refuses that too.
                Some(_) => Err(RequestError::DistinctInstanceExpression),
                None => Ok(PlacementConstraint::DistinctInstance),
            },
            Some("memberOf") => match expression {
                Some(e) if !e.trim().is_empty() => Ok(PlacementConstraint::MemberOf(e.to_owned())),
                _ => Err(RequestError::MemberOfWithoutExpression),
            },
            other => Err(RequestError::UnknownConstraintType {
                value: other.unwrap_or_default().to_owned(),
                position,
            }),
        }
    }

    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            PlacementConstraint::DistinctInstance => "distinctInstance",
            PlacementConstraint::MemberOf(_) => "memberOf",
        }
    }
}

/// What `spread` balances over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpreadField {
    /// `instanceId` (or `host`, which AWS treats the same).
    InstanceId,
    /// `attribute:NAME`, e.g. `attribute:ecs.availability-zone`.
    Attribute(String),
}

/// The resource `binpack` packs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinpackField {
    Cpu,
    Memory,
}

/// A placement strategy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PlacementStrategy {
    /// Uniformly among the container instances still tied.
    Random,
    /// Fewest tasks of the request's group first, counted per value of the field.
    Spread(SpreadField),
    /// Least remaining of the resource first (that still fits the task).
    Binpack(BinpackField),
}

impl PlacementStrategy {
    /// Reads the API's `{type, field}`. `position` is 1-based, as in AWS's messages.
    pub fn from_wire(
        r#type: Option<&str>,
        field: Option<&str>,
        position: usize,
    ) -> Result<Self, RequestError> {
        match r#type {
            // AWS: "For the random placement strategy, this field is not used."
            Some("random") => Ok(PlacementStrategy::Random),
            Some("binpack") => match field.map(str::to_ascii_lowercase).as_deref() {
                // Tools send `MEMORY` as often as `memory`, and AWS accepts both.
                Some("cpu") => Ok(PlacementStrategy::Binpack(BinpackField::Cpu)),
                Some("memory") => Ok(PlacementStrategy::Binpack(BinpackField::Memory)),
                _ => Err(RequestError::InvalidBinpackField {
                    field: field.unwrap_or_default().to_owned(),
                }),
            },
            Some("spread") => match field {
                None => Err(RequestError::MissingSpreadField),
                Some(f)
                    if f.eq_ignore_ascii_case("instanceId") || f.eq_ignore_ascii_case("host") =>
                {
                    Ok(PlacementStrategy::Spread(SpreadField::InstanceId))
                }
                Some(f) => match f.strip_prefix("attribute:") {
                    Some(name) if !name.is_empty() => Ok(PlacementStrategy::Spread(
                        SpreadField::Attribute(name.to_owned()),
                    )),
                    _ => Err(RequestError::InvalidSpreadField {
                        field: f.to_owned(),
                    }),
                },
            },
            other => Err(RequestError::UnknownStrategyType {
                value: other.unwrap_or_default().to_owned(),
                position,
            }),
        }
    }

    /// RunTask's default when no strategy is given: tasks are placed randomly.
    pub fn run_task_default() -> Vec<PlacementStrategy> {
        vec![PlacementStrategy::Random]
    }

    /// The service scheduler's default: balance across Availability Zones, then favour the
    /// container instances with the fewest tasks of the service.
    pub fn service_default() -> Vec<PlacementStrategy> {
        vec![
            PlacementStrategy::Spread(SpreadField::Attribute("ecs.availability-zone".to_owned())),
            PlacementStrategy::Spread(SpreadField::InstanceId),
        ]
    }
}

/// Place `count` identical tasks of one task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRequest {
    pub requirements: TaskRequirements,
    /// The task group: `service:NAME` for a service, RunTask's `group` (default `family:NAME`).
    /// `spread` and `distinctInstance` count the tasks of this group.
    pub group: String,
    /// The task definition family.
    pub family: String,
    /// The task definition's `placementConstraints` (only `memberOf` is valid there).
    pub task_definition_constraints: Vec<PlacementConstraint>,
    /// The request's (RunTask/StartTask/CreateService) `placementConstraints`.
    pub constraints: Vec<PlacementConstraint>,
    /// In order; empty means "use the caller's default" and is planned as [`Random`].
    ///
    /// [`Random`]: PlacementStrategy::Random
    pub strategies: Vec<PlacementStrategy>,
    pub count: u32,
    /// The only source of randomness.
    pub seed: u64,
}

impl PlacementRequest {
    /// A request for `count` tasks of `family` in RunTask's default group `family:FAMILY`, with
    /// no constraints and RunTask's default strategy.
    pub fn new(family: &str, requirements: TaskRequirements, count: u32, seed: u64) -> Self {
        PlacementRequest {
            requirements,
            group: format!("family:{family}"),
            family: family.to_owned(),
            task_definition_constraints: Vec::new(),
            constraints: Vec::new(),
            strategies: PlacementStrategy::run_task_default(),
            count,
            seed,
        }
    }

    /// Checks the limits and combination rules and parses every expression, returning the
    /// first problem as AWS would report it.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.check_shape()?;
        for constraint in self.all_constraints() {
            if let PlacementConstraint::MemberOf(expression) = constraint {
                Expression::parse(expression)?;
            }
        }
        Ok(())
    }

    /// Everything but expression syntax (which the scheduler checks as it compiles them).
    pub(crate) fn check_shape(&self) -> Result<(), RequestError> {
        if self
            .task_definition_constraints
            .contains(&PlacementConstraint::DistinctInstance)
        {
            return Err(RequestError::DistinctInstanceInTaskDefinition);
        }
        let count = self.task_definition_constraints.len() + self.constraints.len();
        if count > MAX_CONSTRAINTS {
            return Err(RequestError::TooManyConstraints { count });
        }
        if self.strategies.len() > MAX_STRATEGIES {
            return Err(RequestError::TooManyStrategies {
                count: self.strategies.len(),
            });
        }
        Ok(())
    }

    /// The task definition's constraints, then the request's: all of them must hold.
    pub fn all_constraints(&self) -> impl Iterator<Item = &PlacementConstraint> {
        self.task_definition_constraints
            .iter()
            .chain(self.constraints.iter())
    }
}

/// Why a placement request is refused before anything is planned.
///
/// Messages are the text of the AWS error (see [`RequestError::error_code`]); the ones AWS is
/// known to send are marked "verified", the rest follow AWS's style and are ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Verified (InvalidParameterException, as returned to Terraform for `expression = ""`).
    #[error("distinctInstance expression should not be specified.")]
    DistinctInstanceExpression,
    #[error("memberOf expression should be specified.")]
    MemberOfWithoutExpression,
    /// The generic AWS enum-validation message (ValidationException shape, InvalidParameter
    /// code here since ECS maps it so).
    #[error("1 validation error detected: Value '{value}' at 'placementConstraints.{position}.member.type' failed to satisfy constraint: Member must satisfy enum value set: [distinctInstance, memberOf]")]
    UnknownConstraintType { value: String, position: usize },
    #[error("1 validation error detected: Value '{value}' at 'placementStrategy.{position}.member.type' failed to satisfy constraint: Member must satisfy enum value set: [random, spread, binpack]")]
    UnknownStrategyType { value: String, position: usize },
    #[error("Invalid binpack field '{field}'. Valid fields are cpu and memory.")]
    InvalidBinpackField { field: String },
    #[error("spread field should be specified.")]
    MissingSpreadField,
    #[error(
        "Invalid spread field '{field}'. Valid fields are instanceId, host or attribute:<name>."
    )]
    InvalidSpreadField { field: String },
    /// Seen through CloudFormation ("constraint.type 'distinctInstance' is not supported.", a
    /// ClientException from RegisterTaskDefinition).
    #[error("constraint.type 'distinctInstance' is not supported.")]
    DistinctInstanceInTaskDefinition,
    #[error("You can specify up to {MAX_CONSTRAINTS} constraints per task (including constraints in the task definition and those specified at runtime); {count} were given.")]
    TooManyConstraints { count: usize },
    #[error("You can specify a maximum of {MAX_STRATEGIES} strategy rules per task; {count} were given.")]
    TooManyStrategies { count: usize },
    #[error(transparent)]
    Expression(#[from] ExpressionError),
}

impl RequestError {
    /// The AWS error code the control plane answers with.
    pub fn error_code(&self) -> &'static str {
        match self {
            RequestError::DistinctInstanceInTaskDefinition => "ClientException",
            _ => "InvalidParameterException",
        }
    }
}
