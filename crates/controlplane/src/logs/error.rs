//! The CloudWatch Logs error family and its mapping to AWS's wire codes: the one place where a
//! Logs failure becomes an `__type` and an HTTP status.

use protocol::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// Shape constraints and semantic rules AWS reports as `InvalidParameterException`.
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceAlreadyExists(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    TooManyTags(String),
    /// Refused because of the resource's state (deletion protection).
    #[error("{0}")]
    Validation(String),
    /// The body did not match the operation's input shape (a string where a number belongs…).
    #[error("{0}")]
    Serialization(String),
    /// The log store failed; the client may retry.
    #[error("{0}")]
    Unavailable(String),
}

impl LogsError {
    pub fn group_not_found() -> LogsError {
        LogsError::ResourceNotFound("The specified log group does not exist.".to_string())
    }

    pub fn stream_not_found() -> LogsError {
        LogsError::ResourceNotFound("The specified log stream does not exist.".to_string())
    }

    /// The wire form of this error, with the shape names of the Logs model.
    pub fn to_aws(&self) -> AwsError {
        let message = self.to_string();
        match self {
            LogsError::InvalidParameter(_) => {
                AwsError::sender("InvalidParameterException", message)
            }
            LogsError::ResourceNotFound(_) => {
                AwsError::sender("ResourceNotFoundException", message)
            }
            LogsError::ResourceAlreadyExists(_) => {
                AwsError::sender("ResourceAlreadyExistsException", message)
            }
            LogsError::LimitExceeded(_) => AwsError::sender("LimitExceededException", message),
            LogsError::TooManyTags(_) => AwsError::sender("TooManyTagsException", message),
            LogsError::Validation(_) => AwsError::sender("ValidationException", message),
            LogsError::Serialization(_) => AwsError::sender("SerializationException", message),
            LogsError::Unavailable(_) => {
                AwsError::receiver("ServiceUnavailableException", message).with_status(503)
            }
        }
    }
}

impl From<rusqlite::Error> for LogsError {
    fn from(error: rusqlite::Error) -> Self {
        tracing::error!(%error, "log store failure");
        LogsError::Unavailable("The log store could not complete the request.".to_string())
    }
}

/// Shape-constraint violations collected while reading an input, reported the way AWS's
/// request validation does: "N validation error(s) detected: A; B".
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    /// `Value <v> at '<field>' failed to satisfy constraint: <constraint>`.
    pub fn constraint(&mut self, value: &str, field: &str, constraint: &str) {
        self.0.push(format!(
            "Value {value} at '{field}' failed to satisfy constraint: {constraint}"
        ));
    }

    pub fn null(&mut self, field: &str) {
        self.constraint("null", field, "Member must not be null");
    }

    pub fn into_result(self) -> Result<(), LogsError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(LogsError::InvalidParameter(format!(
                "1 validation error detected: {}",
                self.0[0]
            ))),
            n => Err(LogsError::InvalidParameter(format!(
                "{n} validation errors detected: {}",
                self.0.join("; ")
            ))),
        }
    }
}
