//! The EC2 error family and its one mapping to the wire: each variant is one of EC2's error
//! codes (EC2 has no error shapes in its model; the codes are documented in the EC2 API
//! reference's "Error codes" page) with its HTTP status.

use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("The vpc ID '{0}' does not exist")]
    VpcNotFound(String),
    #[error("The subnet ID '{0}' does not exist")]
    SubnetNotFound(String),
    /// The message differs for ids and for names in the default VPC.
    #[error("{0}")]
    GroupNotFound(String),
    #[error("The networkInterface ID '{0}' does not exist")]
    NetworkInterfaceNotFound(String),
    #[error("The security group rule ID '{0}' does not exist")] // guessed
    SecurityGroupRuleNotFound(String),
    #[error("Invalid id: \"{0}\"")]
    VpcIdMalformed(String),
    #[error("Invalid id: \"{0}\"")]
    SubnetIdMalformed(String),
    #[error("Invalid id: \"{0}\" (expecting \"sg-...\")")]
    GroupIdMalformed(String),
    #[error("Invalid id: \"{0}\" (expecting \"eni-...\")")]
    NetworkInterfaceIdMalformed(String),
    /// A resource id of a type Wharf does not know (CreateTags and friends).
    #[error("The ID '{0}' is not valid")]
    InvalidId(String),
    #[error("{0}")]
    GroupDuplicate(String),
    #[error("{0}")]
    PermissionDuplicate(String),
    #[error("{0}")]
    PermissionNotFound(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidParameterCombination(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    SubnetConflict(String),
    #[error("{0}")]
    SubnetRange(String),
    #[error("{0}")]
    VpcRange(String),
    #[error("{0}")]
    DependencyViolation(String),
    /// The default security group.
    #[error("{0}")]
    CannotDelete(String),
    /// No VpcId given and there is no default VPC.
    #[error("No default VPC for this user")]
    VpcIdNotSpecified,
    #[error("{0}")]
    TagLimitExceeded(String),
    #[error("{0}")]
    InvalidNextToken(String),
    #[error("The action {0} is not valid for this web service.")]
    InvalidAction(String),
    #[error("Request would have succeeded, but DryRun flag is set.")]
    DryRunOperation,
    /// Too many concurrent writers on one record: the SDKs retry this code.
    #[error("Request limit exceeded.")]
    Conflict,
    #[error("store failure: {0}")]
    Store(#[from] StoreError),
}

impl Ec2Error {
    /// (HTTP status, EC2 error code).
    pub fn code(&self) -> (u16, &'static str) {
        match self {
            Ec2Error::VpcNotFound(_) => (400, "InvalidVpcID.NotFound"),
            Ec2Error::SubnetNotFound(_) => (400, "InvalidSubnetID.NotFound"),
            Ec2Error::GroupNotFound(_) => (400, "InvalidGroup.NotFound"),
            Ec2Error::NetworkInterfaceNotFound(_) => (400, "InvalidNetworkInterfaceID.NotFound"),
            Ec2Error::SecurityGroupRuleNotFound(_) => (400, "InvalidSecurityGroupRuleId.NotFound"),
            Ec2Error::VpcIdMalformed(_) => (400, "InvalidVpcID.Malformed"),
            Ec2Error::SubnetIdMalformed(_) => (400, "InvalidSubnetID.Malformed"),
            Ec2Error::GroupIdMalformed(_) => (400, "InvalidGroupId.Malformed"),
            Ec2Error::NetworkInterfaceIdMalformed(_) => {
                (400, "InvalidNetworkInterfaceID.Malformed")
            }
            Ec2Error::InvalidId(_) => (400, "InvalidID"),
            Ec2Error::GroupDuplicate(_) => (400, "InvalidGroup.Duplicate"),
            Ec2Error::PermissionDuplicate(_) => (400, "InvalidPermission.Duplicate"),
            Ec2Error::PermissionNotFound(_) => (400, "InvalidPermission.NotFound"),
            Ec2Error::InvalidParameterValue(_) => (400, "InvalidParameterValue"),
            Ec2Error::InvalidParameterCombination(_) => (400, "InvalidParameterCombination"),
            Ec2Error::MissingParameter(_) => (400, "MissingParameter"),
            Ec2Error::SubnetConflict(_) => (400, "InvalidSubnet.Conflict"),
            Ec2Error::SubnetRange(_) => (400, "InvalidSubnet.Range"),
            Ec2Error::VpcRange(_) => (400, "InvalidVpc.Range"),
            Ec2Error::DependencyViolation(_) => (400, "DependencyViolation"),
            Ec2Error::CannotDelete(_) => (400, "CannotDelete"),
            Ec2Error::VpcIdNotSpecified => (400, "VPCIdNotSpecified"),
            Ec2Error::TagLimitExceeded(_) => (400, "TagLimitExceeded"),
            Ec2Error::InvalidNextToken(_) => (400, "InvalidPaginationToken"),
            Ec2Error::InvalidAction(_) => (400, "InvalidAction"),
            Ec2Error::DryRunOperation => (412, "DryRunOperation"),
            Ec2Error::Conflict => (503, "RequestLimitExceeded"),
            Ec2Error::Store(_) => (500, "InternalError"),
        }
    }

    /// The message on the wire; the store's own text stays in the server's log.
    pub fn message(&self) -> String {
        match self {
            Ec2Error::Store(_) => "An internal error has occurred".to_string(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = Ec2Error> = std::result::Result<T, E>;

/// `InvalidParameterValue`.
pub fn invalid(message: impl Into<String>) -> Ec2Error {
    Ec2Error::InvalidParameterValue(message.into())
}

/// `MissingParameter` in EC2's words.
pub fn missing(parameter: &str) -> Ec2Error {
    Ec2Error::MissingParameter(format!(
        "The request must contain the parameter {parameter}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let e = Ec2Error::VpcNotFound("vpc-1".into());
        assert_eq!(e.code(), (400, "InvalidVpcID.NotFound"));
        assert_eq!(e.message(), "The vpc ID 'vpc-1' does not exist");
        assert_eq!(Ec2Error::DryRunOperation.code().0, 412);
        let e = Ec2Error::Store(StoreError::Closed);
        assert_eq!(e.code(), (500, "InternalError"));
        assert!(!e.message().contains("shutting"));
        assert_eq!(
            missing("CidrBlock").message(),
            "The request must contain the parameter CidrBlock"
        );
    }
}
