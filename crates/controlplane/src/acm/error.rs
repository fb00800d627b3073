//! The ACM error family and its mapping to AWS's wire codes: the one place where an ACM failure
//! becomes an `__type` and an HTTP status.

use protocol::AwsError;
use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AcmError {
    /// Shape constraints ("N validation errors detected: …") and what ImportCertificate finds
    /// wrong with a certificate, key or chain: AWS answers all of these `ValidationException`.
    #[error("{0}")]
    Validation(String),
    /// An ARN that matches the shape's pattern but names no ACM certificate.
    #[error("{0}")]
    InvalidArn(String),
    #[error("{0}")]
    ResourceNotFound(String),
    /// DeleteCertificate of a certificate a load balancer listener uses.
    #[error("{0}")]
    ResourceInUse(String),
    /// A tag ACM refuses by its content (the reserved `aws:` prefix).
    #[error("{0}")]
    InvalidTag(String),
    /// A certificate would end up with more tags than ACM allows.
    #[error("{0}")]
    TooManyTags(String),
    /// ListCertificates arguments that are well formed but unusable (a NextToken this server
    /// did not issue for the same listing).
    #[error("{0}")]
    InvalidArgs(String),
    /// Every compare-and-swap attempt lost to another writer of the same certificate.
    #[error("{0}")]
    Conflict(String),
    /// The body did not match the operation's input shape (a number where a string belongs,
    /// a blob that is not base64…).
    #[error("{0}")]
    Serialization(String),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// A stored record that does not decode; a bug or a damaged store, never the client's fault.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, AcmError>;

impl AcmError {
    /// The wire form of this error, with the shape names of the ACM model.
    pub fn to_aws(&self) -> AwsError {
        let message = self.to_string();
        match self {
            AcmError::Validation(_) => AwsError::sender("ValidationException", message),
            AcmError::InvalidArn(_) => AwsError::sender("InvalidArnException", message),
            AcmError::ResourceNotFound(_) => AwsError::sender("ResourceNotFoundException", message),
            AcmError::ResourceInUse(_) => AwsError::sender("ResourceInUseException", message),
            AcmError::InvalidTag(_) => AwsError::sender("InvalidTagException", message),
            AcmError::TooManyTags(_) => AwsError::sender("TooManyTagsException", message),
            AcmError::InvalidArgs(_) => AwsError::sender("InvalidArgsException", message),
            AcmError::Conflict(_) => AwsError::sender("ConflictException", message),
            AcmError::Serialization(_) => AwsError::sender("SerializationException", message),
            // The store's own words may name keys; the client gets AWS's generic failure.
            AcmError::Store(_) | AcmError::Internal(_) => AwsError::receiver(
                "InternalFailure",
                "The request processing has failed because of an unknown error.",
            ),
        }
    }
}

/// Shape-constraint violations collected while reading an input, reported the way AWS's
/// request validation does: "N validation error(s) detected: A; B".
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    /// `Value <value> at '<field>' failed to satisfy constraint: <constraint>`; `value` is
    /// already quoted (or `null`), or empty for members AWS does not echo (blobs, keys).
    pub fn constraint(&mut self, value: &str, field: &str, constraint: &str) {
        let value = if value.is_empty() {
            String::new()
        } else {
            format!(" {value}")
        };
        self.0.push(format!(
            "Value{value} at '{field}' failed to satisfy constraint: {constraint}"
        ));
    }

    pub fn null(&mut self, field: &str) {
        self.constraint("null", field, "Member must not be null");
    }

    pub fn into_result(self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(AcmError::Validation(format!(
                "1 validation error detected: {}",
                self.0[0]
            ))),
            n => Err(AcmError::Validation(format!(
                "{n} validation errors detected: {}",
                self.0.join("; ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_like_aws_request_validation() {
        let mut p = Problems::default();
        assert!(std::mem::take(&mut p).into_result().is_ok());
        p.null("certificateArn");
        let one = p.into_result().unwrap_err().to_string();
        assert_eq!(
            one,
            "1 validation error detected: Value null at 'certificateArn' failed to satisfy constraint: Member must not be null"
        );
        let mut p = Problems::default();
        p.constraint(
            "'0'",
            "maxItems",
            "Member must have value greater than or equal to 1",
        );
        p.constraint(
            "",
            "privateKey",
            "Member must have length less than or equal to 5120",
        );
        let two = p.into_result().unwrap_err().to_string();
        assert!(
            two.starts_with("2 validation errors detected: Value '0' at 'maxItems'"),
            "{two}"
        );
        assert!(two.contains("; Value at 'privateKey' failed"), "{two}");
    }

    #[test]
    fn store_failures_do_not_leak_details() {
        let wire = AcmError::Internal("record acm/certificate/x does not decode".into()).to_aws();
        assert_eq!(wire.code, "InternalFailure");
        assert_eq!(wire.status, 500);
        assert!(!wire.message.contains("acm/certificate"));
    }
}
