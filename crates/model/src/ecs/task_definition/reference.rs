//! How callers name a task definition: a bare `family` (the latest ACTIVE revision), a
//! `family:revision`, or a full ARN `arn:aws:ecs:<region>:<account>:task-definition/<family>:<revision>`
//! (the ARN form without a revision is accepted too and means the family).

use crate::arn::Arn;
use crate::validation::Problem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDefinitionReference {
    /// Only the family: describe and run resolve it to the latest ACTIVE revision.
    Family(String),
    /// One revision of a family.
    Revision { family: String, revision: i32 },
}

impl TaskDefinitionReference {
    pub fn family(&self) -> &str {
        match self {
            TaskDefinitionReference::Family(family) => family,
            TaskDefinitionReference::Revision { family, .. } => family,
        }
    }

    pub fn revision(&self) -> Option<i32> {
        match self {
            TaskDefinitionReference::Family(_) => None,
            TaskDefinitionReference::Revision { revision, .. } => Some(*revision),
        }
    }
}

/// Parse a task definition reference. Malformed input is a `ClientException`, which is how
/// ECS answers a reference it cannot resolve.
pub fn parse_reference(text: &str) -> Result<TaskDefinitionReference, Problem> {
    let family_revision = if text.starts_with("arn:") {
        let arn = Arn::parse(text)
            .filter(|arn| arn.service == "ecs")
            .ok_or_else(|| Problem::client("Invalid task definition ARN."))?;
        match arn.resource_type() {
            ("task-definition", rest) if !rest.is_empty() => rest.to_string(),
            _ => return Err(Problem::client("Invalid task definition ARN.")),
        }
    } else {
        text.to_string()
    };
    match family_revision.split_once(':') {
        None => Ok(TaskDefinitionReference::Family(family_revision)),
        Some((family, revision)) => {
            // ECS answers `web:latest` and other non-numbers with this message.
            let revision: i32 = revision.parse().ok().filter(|r| *r > 0).ok_or_else(|| {
                Problem::client(format!("Invalid revision number. Number: {revision}"))
            })?;
            Ok(TaskDefinitionReference::Revision {
                family: family.to_string(),
                revision,
            })
        }
    }
}
