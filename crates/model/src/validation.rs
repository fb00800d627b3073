//! The validation error shared by ECS resource checks: AWS reports the first problem as a
//! `ClientException` or `InvalidParameterException`, so each problem carries which one.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// Reported as `ClientException`.
    Client,
    /// Reported as `InvalidParameterException`.
    InvalidParameter,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

impl Problem {
    pub fn client(message: impl Into<String>) -> Self {
        Self {
            kind: ProblemKind::Client,
            message: message.into(),
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self {
            kind: ProblemKind::InvalidParameter,
            message: message.into(),
        }
    }
}

/// Every problem found in one input, in the order they were found. AWS returns only the
/// first, so `first()` is what goes on the wire; the rest help tests and operators.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<&Problem> {
        self.0.first()
    }

    /// `Ok(())` when nothing was found, else the list.
    pub fn into_result(self) -> Result<(), Problems> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}
