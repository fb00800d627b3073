//! Reading members out of a canonical input value (see `protocol::shape`): the codecs already
//! checked the types, so these only pick members, apply AWS's required-member and length
//! rules, and name the parameter the way AWS's messages do (`MetricData.member.1.Value`).

use serde_json::Value;

use super::error::{invalid_value, missing, CloudWatchError, Result};

pub fn str<'a>(input: &'a Value, member: &str) -> Option<&'a str> {
    input.get(member).and_then(Value::as_str)
}

pub fn required_str<'a>(input: &'a Value, member: &str, parameter: &str) -> Result<&'a str> {
    str(input, member).ok_or_else(|| missing(parameter))
}

pub fn int(input: &Value, member: &str) -> Option<i64> {
    input.get(member).and_then(Value::as_i64)
}

pub fn double(input: &Value, member: &str) -> Option<f64> {
    input.get(member).and_then(protocol::shape::as_f64)
}

pub fn bool(input: &Value, member: &str) -> Option<bool> {
    input.get(member).and_then(Value::as_bool)
}

/// A timestamp member in milliseconds since the epoch. The codecs refuse instants outside
/// years 0 to 9999; clamping again here keeps every handler's arithmetic on these values
/// (`div_euclid(period) * period`, `± two weeks`) far from `i64` overflow whatever the caller.
pub fn time_ms(input: &Value, member: &str) -> Option<i64> {
    let seconds = double(input, member)?;
    if seconds.is_nan() {
        return None;
    }
    let seconds = seconds.clamp(
        protocol::shape::MIN_TIMESTAMP_SECONDS,
        protocol::shape::MAX_TIMESTAMP_SECONDS,
    );
    Some((seconds * 1000.0).round() as i64)
}

pub fn list<'a>(input: &'a Value, member: &str) -> &'a [Value] {
    input
        .get(member)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn strings(input: &Value, member: &str) -> Vec<String> {
    list(input, member)
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Check a string member's length against the model's `min`/`max`.
pub fn check_len(value: &str, parameter: &str, min: usize, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(CloudWatchError::InvalidParameterValue(format!(
            "The parameter {parameter} must be between {min} and {max} characters long." // guessed
        )));
    }
    Ok(())
}

/// Check an enum member.
pub fn check_enum(value: &str, parameter: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid_value(value, parameter))
    }
}

/// `Dimensions` (a list of `{Name, Value}`), validated: at most 30, names 1–255 and values
/// 1–1024 characters, no name twice. Sorted by name, as `metricstore::MetricKey` keeps them.
pub fn dimensions(input: &Value, member: &str, parameter: &str) -> Result<Vec<(String, String)>> {
    let items = list(input, member);
    if items.len() > 30 {
        return Err(CloudWatchError::InvalidParameterValue(format!(
            "The collection {parameter} must not have a size greater than 30." // guessed
        )));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{parameter}.member.{}", i + 1);
        let name = required_str(item, "Name", &format!("{at}.Name"))?;
        let value = required_str(item, "Value", &format!("{at}.Value"))?;
        check_len(name, &format!("{at}.Name"), 1, 255)?;
        check_len(value, &format!("{at}.Value"), 1, 1024)?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(CloudWatchError::InvalidParameterValue(format!(
                "No duplicate dimension names are allowed. Found duplicate dimension name {name}." // guessed
            )));
        }
        out.push((name.to_string(), value.to_string()));
    }
    out.sort();
    Ok(out)
}

/// The canonical `Dimensions` list for output.
pub fn dimensions_value(dimensions: &[(String, String)]) -> Value {
    Value::Array(
        dimensions
            .iter()
            .map(|(n, v)| serde_json::json!({"Name": n, "Value": v}))
            .collect(),
    )
}

/// CloudWatch's `StandardUnit` values.
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// An optional `Unit` member, checked against `StandardUnit`.
pub fn unit(input: &Value, parameter: &str) -> Result<Option<String>> {
    match str(input, "Unit") {
        None => Ok(None),
        Some(u) => {
            check_enum(u, parameter, UNITS)?;
            Ok(Some(u.to_string()))
        }
    }
}

/// The five simple statistics.
pub const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

/// Validate an extended statistic (`p0.0`–`p100`). CloudWatch also has trimmed means and the
/// like (`tm99`, `wm99`, `tc99`, `ts99`, `IQM`); Wharf computes percentiles only.
pub fn extended_statistic(name: &str, parameter: &str) -> Result<metricstore::Statistic> {
    match metricstore::Statistic::parse(name) {
        Ok(stat @ metricstore::Statistic::Percentile(_)) => Ok(stat),
        _ => Err(invalid_value(name, parameter)),
    }
}
