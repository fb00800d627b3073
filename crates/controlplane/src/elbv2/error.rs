//! The ELBv2 error family and its one mapping to the wire. Each variant is an error of the model
//! (or AWS's `ValidationError`, which the model does not list but every operation returns), with
//! the Query `<Code>` and HTTP status from the model's `error` traits: the codes are not the
//! shape names (`TargetGroupNotFound`, not `TargetGroupNotFoundException`).

use protocol::AwsError;
use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Elbv2Error {
    /// `ValidationError`: a parameter fails AWS's constraints.
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    LoadBalancerNotFound(String),
    #[error("{0}")]
    TargetGroupNotFound(String),
    #[error("{0}")]
    ListenerNotFound(String),
    #[error("{0}")]
    RuleNotFound(String),
    #[error("{0}")]
    DuplicateLoadBalancerName(String),
    #[error("{0}")]
    DuplicateTargetGroupName(String),
    #[error("{0}")]
    DuplicateListener(String),
    #[error("{0}")]
    DuplicateTagKeys(String),
    #[error("{0}")]
    InvalidConfigurationRequest(String),
    #[error("{0}")]
    SubnetNotFound(String),
    #[error("{0}")]
    InvalidSecurityGroup(String),
    #[error("{0}")]
    InvalidScheme(String),
    #[error("{0}")]
    InvalidTarget(String),
    #[error("{0}")]
    PriorityInUse(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    OperationNotPermitted(String),
    #[error("{0}")]
    IncompatibleProtocols(String),
    #[error("{0}")]
    UnsupportedProtocol(String),
    #[error("{0}")]
    InvalidLoadBalancerAction(String),
    #[error("{0}")]
    TargetGroupAssociationLimit(String),
    #[error("{0}")]
    TooManyActions(String),
    #[error("{0}")]
    TooManyTags(String),
    #[error("{0}")]
    TooManyTargetGroups(String),
    #[error("{0}")]
    TooManyRules(String),
    #[error("{0}")]
    CertificateNotFound(String),
    #[error("{0}")]
    SslPolicyNotFound(String),
    #[error("{0}")]
    AlpnPolicyNotFound(String),
    #[error("{0}")]
    TooManyCertificates(String),
    #[error("{0}")]
    TooManyTargets(String),
    /// The request names no operation Wharf serves.
    #[error("{0}")]
    InvalidAction(String),
    /// A parameter that does not parse as its member's type.
    #[error("{0}")]
    MalformedInput(String),
    /// A load-balancer protocol body that does not fit its shape.
    #[error("{0}")]
    Serialization(String),
    /// Too many concurrent writers on one record; the client may retry.
    #[error("{0}")]
    PriorRequestNotComplete(String),
    #[error("store failure: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// An error ready for the wire: the JSON `__type` (the load-balancer protocol) and the Query
/// `<Code>` (the ELBv2 API).
#[derive(Debug, Clone)]
pub struct WireError {
    pub error: AwsError,
    pub query_code: &'static str,
}

impl Elbv2Error {
    pub fn to_wire(&self) -> WireError {
        use Elbv2Error as E;
        let message = self.to_string();
        // (shape, Query code, status), as the model's error traits say.
        let (shape, code, status) = match self {
            E::Validation(_) => ("ValidationError", "ValidationError", 400),
            E::LoadBalancerNotFound(_) => {
                ("LoadBalancerNotFoundException", "LoadBalancerNotFound", 400)
            }
            E::TargetGroupNotFound(_) => {
                ("TargetGroupNotFoundException", "TargetGroupNotFound", 400)
            }
            E::ListenerNotFound(_) => ("ListenerNotFoundException", "ListenerNotFound", 400),
            E::CertificateNotFound(_) => {
                ("CertificateNotFoundException", "CertificateNotFound", 400)
            }
            E::SslPolicyNotFound(_) => ("SSLPolicyNotFoundException", "SSLPolicyNotFound", 400),
            E::AlpnPolicyNotFound(_) => {
                ("ALPNPolicyNotSupportedException", "ALPNPolicyNotFound", 400)
            }
            E::TooManyCertificates(_) => {
                ("TooManyCertificatesException", "TooManyCertificates", 400)
            }
            E::RuleNotFound(_) => ("RuleNotFoundException", "RuleNotFound", 400),
            E::DuplicateLoadBalancerName(_) => (
                "DuplicateLoadBalancerNameException",
                "DuplicateLoadBalancerName",
                400,
            ),
            E::DuplicateTargetGroupName(_) => (
                "DuplicateTargetGroupNameException",
                "DuplicateTargetGroupName",
                400,
            ),
            E::DuplicateListener(_) => ("DuplicateListenerException", "DuplicateListener", 400),
            E::DuplicateTagKeys(_) => ("DuplicateTagKeysException", "DuplicateTagKeys", 400),
            E::InvalidConfigurationRequest(_) => (
                "InvalidConfigurationRequestException",
                "InvalidConfigurationRequest",
                400,
            ),
            E::SubnetNotFound(_) => ("SubnetNotFoundException", "SubnetNotFound", 400),
            E::InvalidSecurityGroup(_) => {
                ("InvalidSecurityGroupException", "InvalidSecurityGroup", 400)
            }
            E::InvalidScheme(_) => ("InvalidSchemeException", "InvalidScheme", 400),
            E::InvalidTarget(_) => ("InvalidTargetException", "InvalidTarget", 400),
            E::PriorityInUse(_) => ("PriorityInUseException", "PriorityInUse", 400),
            E::ResourceInUse(_) => ("ResourceInUseException", "ResourceInUse", 400),
            E::OperationNotPermitted(_) => (
                "OperationNotPermittedException",
                "OperationNotPermitted",
                400,
            ),
            E::IncompatibleProtocols(_) => (
                "IncompatibleProtocolsException",
                "IncompatibleProtocols",
                400,
            ),
            E::UnsupportedProtocol(_) => {
                ("UnsupportedProtocolException", "UnsupportedProtocol", 400)
            }
            E::InvalidLoadBalancerAction(_) => (
                "InvalidLoadBalancerActionException",
                "InvalidLoadBalancerAction",
                400,
            ),
            E::TargetGroupAssociationLimit(_) => (
                "TargetGroupAssociationLimitException",
                "TargetGroupAssociationLimit",
                400,
            ),
            E::TooManyActions(_) => ("TooManyActionsException", "TooManyActions", 400),
            E::TooManyTags(_) => ("TooManyTagsException", "TooManyTags", 400),
            E::TooManyTargetGroups(_) => {
                ("TooManyTargetGroupsException", "TooManyTargetGroups", 400)
            }
            E::TooManyRules(_) => ("TooManyRulesException", "TooManyRules", 400),
            E::TooManyTargets(_) => ("TooManyTargetsException", "TooManyTargets", 400),
            E::InvalidAction(_) => ("InvalidAction", "InvalidAction", 400),
            E::MalformedInput(_) => ("MalformedInput", "MalformedInput", 400),
            E::Serialization(_) => ("SerializationException", "SerializationException", 400),
            E::PriorRequestNotComplete(_) => (
                "PriorRequestNotCompleteException",
                "PriorRequestNotComplete",
                429,
            ),
            E::Store(_) | E::Internal(_) => ("InternalFailure", "InternalFailure", 500),
        };
        let error = if status >= 500 {
            AwsError::receiver(shape, message)
        } else {
            AwsError::sender(shape, message).with_status(status)
        };
        WireError {
            error,
            query_code: code,
        }
    }
}

pub type Result<T, E = Elbv2Error> = std::result::Result<T, E>;

/// `ValidationError` with AWS's message.
pub fn invalid(message: impl Into<String>) -> Elbv2Error {
    Elbv2Error::Validation(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_model_not_the_shape_names() {
        let wire = Elbv2Error::TargetGroupNotFound("gone".into()).to_wire();
        assert_eq!(wire.query_code, "TargetGroupNotFound");
        assert_eq!(wire.error.code, "TargetGroupNotFoundException");
        assert_eq!(wire.error.status, 400);
        let wire = Elbv2Error::PriorRequestNotComplete("busy".into()).to_wire();
        assert_eq!(
            (wire.query_code, wire.error.status),
            ("PriorRequestNotComplete", 429)
        );
        let wire = Elbv2Error::Internal("boom".into()).to_wire();
        assert_eq!(wire.error.status, 500);
        assert_eq!(invalid("bad").to_wire().query_code, "ValidationError");
    }
}
