//! Custom attributes (`PutAttributes`): name/value pairs on a target such as a container
//! instance, used by placement constraints.

use crate::validation::Problem;

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

/// AWS: up to 128 letters, numbers, hyphens, underscores, slashes, back slashes, or periods for
/// names; values may also contain spaces and a few more characters, up to 128.
pub fn validate_attribute(attribute: &Attribute) -> Result<(), Problem> {
    let name_ok = !attribute.name.is_empty()
        && attribute.name.len() <= 128
        && attribute
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/\\.@".contains(c));
    if !name_ok {
        return Err(Problem::invalid_parameter(format!(
            "Attribute name {} is invalid. Up to 128 letters (uppercase and lowercase), numbers, hyphens, underscores, forward slashes, back slashes, or periods are allowed.",
            attribute.name
        )));
    }
    if let Some(value) = &attribute.value {
        let value_ok = !value.is_empty()
            && value.len() <= 128
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/\\.@:() ".contains(c));
        if !value_ok {
            return Err(Problem::invalid_parameter(format!(
                "Attribute value {value} is invalid. Up to 128 letters (uppercase and lowercase), numbers, hyphens, underscores, periods, at signs (@), forward slashes, back slashes, colons, or spaces are allowed."
            )));
        }
    }
    if let Some(target_type) = &attribute.target_type {
        if target_type != "container-instance" {
            return Err(Problem::invalid_parameter(
                "targetType must be container-instance.",
            ));
        }
    }
    Ok(())
}
