//! The protocol-neutral AWS error: a code (the error shape name or legacy code), a message,
//! an HTTP status and who is at fault. Each service maps its own error enum into this.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Sender,
    Receiver,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// e.g. `ClientException`, `UnknownOperationException`.
    pub code: String,
    pub message: String,
    pub status: u16,
    pub fault: Fault,
}

impl AwsError {
    pub fn sender(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: 400,
            fault: Fault::Sender,
        }
    }

    pub fn receiver(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status: 500,
            fault: Fault::Receiver,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}
