//! ECS account settings (`PutAccountSetting`, `ListAccountSettings`, …): names, allowed values
//! and AWS's defaults.

use crate::validation::Problem;

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub principal_arn: Option<String>,
    /// `user` when set explicitly, `aws_managed` for AWS's defaults.
    #[serde(rename = "type")]
    pub setting_type: Option<String>,
}

/// Every setting name ECS knows, with the value an account has before anyone sets it.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("serviceLongArnFormat", "enabled"),
    ("taskLongArnFormat", "enabled"),
    ("containerInstanceLongArnFormat", "enabled"),
    ("awsvpcTrunking", "disabled"),
    ("containerInsights", "disabled"),
    ("dualStackIPv6", "disabled"),
    ("fargateFIPSMode", "disabled"),
    ("tagResourceAuthorization", "on"),
    ("fargateTaskRetirementWaitPeriod", "7"),
    ("guardDutyActivate", "off"),
    ("defaultLogDriverMode", "non-blocking"),
];

pub fn default_value(name: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Check a name/value pair as PutAccountSetting(Default) does.
pub fn validate_setting(name: &str, value: &str) -> Result<(), Problem> {
    if default_value(name).is_none() {
        return Err(Problem::invalid_parameter(format!(
            "Invalid setting name '{name}'. Valid names are: {}.",
            DEFAULTS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let allowed: &[&str] = match name {
        "containerInsights" => &["enabled", "disabled", "enhanced"],
        "tagResourceAuthorization" | "guardDutyActivate" => &["on", "off"],
        "fargateTaskRetirementWaitPeriod" => &["0", "7", "14"],
        "defaultLogDriverMode" => &["blocking", "non-blocking"],
        _ => &["enabled", "disabled"],
    };
    if !allowed.contains(&value) {
        return Err(Problem::invalid_parameter(format!(
            "Invalid value '{value}' for setting '{name}'. Valid values are: {}.",
            allowed.join(", ")
        )));
    }
    Ok(())
}
