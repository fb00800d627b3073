//! The CloudWatch error family and its one mapping to the wire: each variant is an error shape
//! of the model (`__type` in JSON and CBOR) with its legacy Query code (`x-amzn-query-error`,
//! and `<Code>` in Query responses) and HTTP status, all taken from the model's `error` traits.

use protocol::AwsError;
use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidParameterCombination(String),
    #[error("{0}")]
    InvalidNextToken(String),
    /// `ResourceNotFound` (alarms: SetAlarmState, DeleteAlarms).
    #[error("{0}")]
    ResourceNotFound(String),
    /// `ResourceNotFoundException` (tagging).
    #[error("{0}")]
    ResourceNotFoundException(String),
    /// `InvalidFormatFault` (SetAlarmState's StateReasonData).
    #[error("{0}")]
    InvalidFormat(String),
    /// `LimitExceededFault` (PutMetricAlarm).
    #[error("{0}")]
    LimitExceeded(String),
    /// The body does not fit the operation's input shape.
    #[error("{0}")]
    Serialization(String),
    /// The request names no operation Wharf serves.
    #[error("{0}")]
    UnknownOperation(String),
    /// A body larger than the service accepts.
    #[error("{0}")]
    RequestTooLarge(String),
    /// Too many concurrent writers on one alarm; the client may retry.
    #[error("{0}")]
    Conflict(String),
    #[error("store failure: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// An error ready for any of the three protocols.
#[derive(Debug, Clone)]
pub struct WireError {
    /// `__type`, the code and the message (JSON, CBOR).
    pub error: AwsError,
    /// The legacy Query code (`x-amzn-query-error`, Query `<Code>`).
    pub query_code: String,
}

impl CloudWatchError {
    pub fn to_wire(&self) -> WireError {
        let message = self.to_string();
        // (shape, legacy code, status), as the model's error traits say.
        let (shape, code, status) = match self {
            CloudWatchError::InvalidParameterValue(_) => (
                "InvalidParameterValueException",
                "InvalidParameterValue",
                400,
            ),
            CloudWatchError::MissingParameter(_) => {
                ("MissingRequiredParameterException", "MissingParameter", 400)
            }
            CloudWatchError::InvalidParameterCombination(_) => (
                "InvalidParameterCombinationException",
                "InvalidParameterCombination",
                400,
            ),
            CloudWatchError::InvalidNextToken(_) => ("InvalidNextToken", "InvalidNextToken", 400),
            CloudWatchError::ResourceNotFound(_) => ("ResourceNotFound", "ResourceNotFound", 404),
            CloudWatchError::ResourceNotFoundException(_) => (
                "ResourceNotFoundException",
                "ResourceNotFoundException",
                404,
            ),
            CloudWatchError::InvalidFormat(_) => ("InvalidFormatFault", "InvalidFormat", 400),
            CloudWatchError::LimitExceeded(_) => ("LimitExceededFault", "LimitExceeded", 400),
            CloudWatchError::Serialization(_) => {
                ("SerializationException", "SerializationException", 400)
            }
            CloudWatchError::UnknownOperation(_) => {
                ("UnknownOperationException", "InvalidAction", 400)
            }
            CloudWatchError::RequestTooLarge(_) => (
                "RequestEntityTooLargeException",
                "RequestEntityTooLarge",
                413,
            ),
            CloudWatchError::Conflict(_) => (
                "ConcurrentModificationException",
                "ConcurrentModificationException",
                429,
            ),
            CloudWatchError::Store(_) | CloudWatchError::Internal(_) => {
                ("InternalServiceFault", "InternalServiceError", 500)
            }
        };
        let error = if status >= 500 {
            AwsError::receiver(shape, message)
        } else {
            AwsError::sender(shape, message).with_status(status)
        };
        WireError {
            error,
            query_code: code.to_string(),
        }
    }
}

pub type Result<T, E = CloudWatchError> = std::result::Result<T, E>;

/// `InvalidParameterValue` in AWS's most common CloudWatch form.
pub fn invalid_value(value: impl std::fmt::Display, parameter: &str) -> CloudWatchError {
    CloudWatchError::InvalidParameterValue(format!(
        "The value {value} for parameter {parameter} is invalid."
    ))
}

/// `MissingParameter`: "The parameter X is required."
pub fn missing(parameter: &str) -> CloudWatchError {
    CloudWatchError::MissingParameter(format!("The parameter {parameter} is required."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_model() {
        let wire = invalid_value("x", "Unit").to_wire();
        assert_eq!(wire.error.code, "InvalidParameterValueException");
        assert_eq!(wire.query_code, "InvalidParameterValue");
        assert_eq!(wire.error.status, 400);
        let wire = CloudWatchError::ResourceNotFound("gone".into()).to_wire();
        assert_eq!(
            (wire.error.status, wire.query_code.as_str()),
            (404, "ResourceNotFound")
        );
        let wire = missing("Namespace").to_wire();
        assert_eq!(wire.query_code, "MissingParameter");
        assert_eq!(wire.error.message, "The parameter Namespace is required.");
        let wire = CloudWatchError::Internal("boom".into()).to_wire();
        assert_eq!(
            (wire.error.status, wire.query_code.as_str()),
            (500, "InternalServiceError")
        );
    }
}
