//! The cluster query language: the expressions of `memberOf` placement constraints and of
//! `ListContainerInstances --filter`.
//!
//! [`Expression::parse`] turns text into an AST (recursive descent in `parser`), checking
//! everything that can be checked without a cluster: operators valid for their subject,
//! timestamps, integers, booleans, regular expressions. [`Expression::matches`] evaluates it
//! against anything that implements [`InstanceFacts`], so the scheduler (which adds the tasks of
//! the plan being built) and a future `ListContainerInstances` filter share one evaluator.
//!
//! Semantics that AWS documents are followed; where it is silent the choice is written here:
//! - a subject that is absent (an attribute not set, no `ec2InstanceId`) fails every operator
//!   except `!exists`. AWS's own example reads `attribute:stack != prod` as "instances with the
//!   attribute stack unless its value is prod", so `!=` needs the attribute too;
//! - an attribute present without a value compares as "no value": `==`, `in`, `=~` and the
//!   ordering operators fail, `!=`, `!in`, `!~` hold;
//! - `task:group` is a set (the groups of the tasks on the instance): `==`, `in`, `=~` hold if any
//!   task matches, `!=`, `!in`, `!~` are their exact negations (so anti-affinity reads naturally),
//!   `exists` means "has any task";
//! - `=~` is a Java-style regular expression matched against the whole value
//!   (`String.matches`), so `t2.*` matches `t2.micro` and `micro` does not.
//!
//! This module does not know about resources or strategies.

pub mod compare;
mod parser;

use std::fmt;

pub use compare::parse_timestamp;
pub use parser::ExpressionError;

use compare::Comparable;

/// Longest expression AWS accepts (`PlacementConstraint.expression`, "maximum length of 2000").
pub const MAX_EXPRESSION_LENGTH: usize = 2000;

/// What an expression is evaluated against: one container instance, possibly with tasks added
/// by the plan being built.
pub trait InstanceFacts {
    fn attribute(&self, name: &str) -> Option<Option<&str>>;
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> Option<&str>;
    fn ec2_instance_id(&self) -> Option<&str>;
    /// Seconds since the Unix epoch.
    fn registered_at(&self) -> i64;
    fn running_tasks_count(&self) -> u32;
    /// Whether any task on the instance has a group satisfying `predicate`.
    fn any_task_group(&self, predicate: &mut dyn FnMut(&str) -> bool) -> bool;
}

impl InstanceFacts for crate::ContainerInstance {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        crate::ContainerInstance::attribute(self, name)
    }
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.agent_version.as_deref()
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.ec2_instance_id.as_deref()
    }
    fn registered_at(&self) -> i64 {
        self.registered_at
    }
    fn running_tasks_count(&self) -> u32 {
        self.running_tasks_count
    }
    fn any_task_group(&self, predicate: &mut dyn FnMut(&str) -> bool) -> bool {
        self.tasks.iter().any(|task| predicate(&task.group))
    }
}

/// A parsed cluster query.
#[derive(Debug, Clone)]
pub enum Expression {
    And(Box<Expression>, Box<Expression>),
    Or(Box<Expression>, Box<Expression>),
    Not(Box<Expression>),
    Condition(Condition),
}

/// `subject operator [argument]`.
#[derive(Debug, Clone)]
pub struct Condition {
    pub subject: Subject,
    pub operator: Operator,
    pub argument: Argument,
}

/// The field a condition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `attribute:NAME`, built-in (`ecs.availability-zone`, …) or custom.
    Attribute(String),
    AgentConnected,
    AgentVersion,
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    /// `task:group`.
    TaskGroup,
}

impl Subject {
    /// Whether the subject changes as tasks are placed (and so cannot be evaluated once per
    /// request and cached).
    pub fn depends_on_tasks(&self) -> bool {
        matches!(self, Subject::RunningTasksCount | Subject::TaskGroup)
    }

    fn valid_operators(&self) -> &'static [Operator] {
        use Operator::*;
        match self {
            // AWS lists no operators for these two; everything that makes sense is allowed.
            Subject::Attribute(_) => &[
                Equals,
                NotEquals,
                GreaterThan,
                GreaterThanEqual,
                LessThan,
                LessThanEqual,
                Exists,
                NotExists,
                In,
                NotIn,
                Matches,
                NotMatches,
            ],
            Subject::TaskGroup => &[
                Equals, NotEquals, Exists, NotExists, In, NotIn, Matches, NotMatches,
            ],
            // The lists below are AWS's "Valid operators" for each subject.
            Subject::AgentConnected | Subject::Ec2InstanceId => {
                &[Equals, NotEquals, In, NotIn, Matches, NotMatches]
            }
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => &[
                Equals,
                NotEquals,
                GreaterThan,
                GreaterThanEqual,
                LessThan,
                LessThanEqual,
            ],
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Attribute(name) => write!(f, "attribute:{name}"),
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
            Subject::TaskGroup => f.write_str("task:group"),
        }
    }
}

/// The comparison operators, each with its symbol and word spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

impl Operator {
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::Equals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::GreaterThanEqual => ">=",
            Operator::LessThan => "<",
            Operator::LessThanEqual => "<=",
            Operator::Exists => "exists",
            Operator::NotExists => "!exists",
            Operator::In => "in",
            Operator::NotIn => "!in",
            Operator::Matches => "=~",
            Operator::NotMatches => "!~",
        }
    }

    /// The positive operator this one negates, if it is a negation.
    fn negated(self) -> Option<Operator> {
        match self {
            Operator::NotEquals => Some(Operator::Equals),
            Operator::NotExists => Some(Operator::Exists),
            Operator::NotIn => Some(Operator::In),
            Operator::NotMatches => Some(Operator::Matches),
            _ => None,
        }
    }
}

/// A condition's argument, typed for its subject when the expression is parsed.
#[derive(Debug, Clone)]
pub enum Argument {
    /// `exists` / `!exists`.
    None,
    /// `==`, `!=` and the ordering operators on strings, versions and numbers.
    Value(Comparable),
    /// `in` / `!in`.
    List(Vec<String>),
    /// `=~` / `!~`, anchored at both ends.
    Pattern(regex::Regex),
    /// `registeredAt`, in seconds since the Unix epoch.
    Timestamp(i64),
    /// `runningTasksCount`.
    Count(u64),
    /// `agentConnected == true`.
    Bool(bool),
    /// `agentConnected in [true, false]`.
    Bools(Vec<bool>),
}

impl Expression {
    /// Parses and checks an expression, with AWS's limits.
    pub fn parse(text: &str) -> Result<Expression, ExpressionError> {
        parser::parse(text)
    }

    /// Whether evaluating the expression needs the tasks on the instance (`task:group`,
    /// `runningTasksCount`), which change as a plan places tasks.
    pub fn depends_on_tasks(&self) -> bool {
        match self {
            Expression::And(a, b) | Expression::Or(a, b) => {
                a.depends_on_tasks() || b.depends_on_tasks()
            }
            Expression::Not(e) => e.depends_on_tasks(),
            Expression::Condition(c) => c.subject.depends_on_tasks(),
        }
    }

    /// How the expression's value can change as tasks are added to an instance (and nothing
    /// else changes). The scheduler uses it to stop re-checking instances that can never pass
    /// again, such as those refused by the anti-affinity `not(task:group == database)`.
    pub fn as_tasks_are_added(&self) -> Trend {
        match self {
            Expression::And(a, b) | Expression::Or(a, b) => {
                a.as_tasks_are_added().combine(b.as_tasks_are_added())
            }
            Expression::Not(e) => e.as_tasks_are_added().negate(),
            Expression::Condition(c) => c.as_tasks_are_added(),
        }
    }

    /// Evaluates the expression for one container instance.
    pub fn matches(&self, instance: &dyn InstanceFacts) -> bool {
        match self {
            Expression::And(a, b) => a.matches(instance) && b.matches(instance),
            Expression::Or(a, b) => a.matches(instance) || b.matches(instance),
            Expression::Not(e) => !e.matches(instance),
            Expression::Condition(c) => c.matches(instance),
        }
    }
}

/// How a boolean changes as tasks are added to a container instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    /// It does not read the tasks.
    Constant,
    /// It can turn from false to true, never back (`task:group == x`, `runningTasksCount > 2`).
    Rising,
    /// It can turn from true to false, never back (`task:group != x`, `runningTasksCount < 3`):
    /// once false, it stays false.
    Falling,
    /// Either way (`runningTasksCount == 2`, or a mix).
    Either,
}

impl Trend {
    /// `and` and `or` are monotone in both operands, so they keep a shared direction.
    fn combine(self, other: Trend) -> Trend {
        match (self, other) {
            (Trend::Constant, t) | (t, Trend::Constant) => t,
            (a, b) if a == b => a,
            _ => Trend::Either,
        }
    }

    fn negate(self) -> Trend {
        match self {
            Trend::Rising => Trend::Falling,
            Trend::Falling => Trend::Rising,
            t => t,
        }
    }
}

impl Condition {
    fn as_tasks_are_added(&self) -> Trend {
        use Operator::*;
        match (&self.subject, self.operator) {
            (Subject::TaskGroup, Equals | In | Matches | Exists) => Trend::Rising,
            (Subject::TaskGroup, _) => Trend::Falling,
            (Subject::RunningTasksCount, GreaterThan | GreaterThanEqual) => Trend::Rising,
            (Subject::RunningTasksCount, LessThan | LessThanEqual) => Trend::Falling,
            (Subject::RunningTasksCount, _) => Trend::Either,
            _ => Trend::Constant,
        }
    }

    fn matches(&self, instance: &dyn InstanceFacts) -> bool {
        if let Some(positive) = self.operator.negated() {
            // Negations need the subject to exist (see the module docs), except on the
            // multi-valued `task:group` where they are exact complements.
            let exists = match &self.subject {
                Subject::TaskGroup => true,
                Subject::Attribute(name) => instance.attribute(name).is_some(),
                Subject::Ec2InstanceId => instance.ec2_instance_id().is_some(),
                Subject::AgentVersion => instance.agent_version().is_some(),
                _ => true,
            };
            if positive == Operator::Exists {
                return !self.positive(Operator::Exists, instance);
            }
            return exists && !self.positive(positive, instance);
        }
        self.positive(self.operator, instance)
    }

    /// Evaluates a non-negated operator.
    fn positive(&self, operator: Operator, instance: &dyn InstanceFacts) -> bool {
        match &self.subject {
            Subject::Attribute(name) => match instance.attribute(name) {
                None => false,
                Some(None) => operator == Operator::Exists,
                Some(Some(value)) => operator == Operator::Exists || self.test_str(operator, value),
            },
            Subject::TaskGroup => {
                if operator == Operator::Exists {
                    instance.any_task_group(&mut |_| true)
                } else {
                    instance.any_task_group(&mut |group| self.test_str(operator, group))
                }
            }
            Subject::Ec2InstanceId => instance
                .ec2_instance_id()
                .is_some_and(|id| self.test_str(operator, id)),
            Subject::AgentVersion => instance
                .agent_version()
                .is_some_and(|v| self.test_str(operator, v)),
            Subject::AgentConnected => {
                let connected = instance.agent_connected();
                match &self.argument {
                    Argument::Bool(b) => connected == *b,
                    Argument::Bools(list) => list.contains(&connected),
                    Argument::Pattern(p) => p.is_match(if connected { "true" } else { "false" }),
                    _ => false,
                }
            }
            Subject::RegisteredAt => match self.argument {
                Argument::Timestamp(t) => {
                    ordering_holds(operator, instance.registered_at().cmp(&t))
                }
                _ => false,
            },
            Subject::RunningTasksCount => match self.argument {
                Argument::Count(n) => {
                    ordering_holds(operator, u64::from(instance.running_tasks_count()).cmp(&n))
                }
                _ => false,
            },
        }
    }

    fn test_str(&self, operator: Operator, value: &str) -> bool {
        match (&self.argument, operator) {
            (Argument::Value(arg), Operator::Equals) => value == arg.text,
            (Argument::Value(arg), _) => ordering_holds(operator, arg.compare_from(value)),
            (Argument::List(list), _) => list.iter().any(|item| item == value),
            (Argument::Pattern(pattern), _) => pattern.is_match(value),
            _ => false,
        }
    }
}

fn ordering_holds(operator: Operator, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match operator {
        Operator::Equals => ordering == Equal,
        Operator::GreaterThan => ordering == Greater,
        Operator::GreaterThanEqual => ordering != Less,
        Operator::LessThan => ordering == Less,
        Operator::LessThanEqual => ordering != Greater,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
