//! The ELBv2 records this module stores (load balancers, listeners, rules; target groups are
//! `model::elb::TargetGroupRecord`, shared with ECS), the wire types of actions and rule
//! conditions (stored exactly as DescribeRules answers them, AWS's defaults filled in), and the
//! ARN and name rules of ELBv2 resources.

use std::collections::BTreeMap;

use model::elb::LoadBalancerKind;
use serde::{Deserialize, Serialize};

use super::error::{invalid, Result};

/// A load balancer as stored under `model::elb::keys::load_balancer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerRecord {
    pub arn: String,
    pub name: String,
    /// The last segment of the ARN (16 hex digits).
    pub id: String,
    pub kind: LoadBalancerKind,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    pub vpc_id: String,
    /// `(zone name, subnet id)`, one per subnet.
    pub availability_zones: Vec<(String, String)>,
    pub security_groups: Vec<String>,
    pub ip_address_type: String,
    /// The IPv4 address the data plane binds (also the `DNSName`).
    pub address: String,
    /// `provisioning`, `active` or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    pub created_at_ms: i64,
}

impl LoadBalancerRecord {
    /// `app` or `net`, the type segment of ARNs and metric dimensions.
    pub fn type_segment(&self) -> &'static str {
        type_segment(self.kind)
    }

    /// The CloudWatch `LoadBalancer` dimension, `app/<name>/<id>`.
    pub fn dimension(&self) -> String {
        format!("{}/{}/{}", self.type_segment(), self.name, self.id)
    }
}

pub fn type_segment(kind: LoadBalancerKind) -> &'static str {
    match kind {
        LoadBalancerKind::Application => "app",
        LoadBalancerKind::Network => "net",
    }
}

pub fn type_name(kind: LoadBalancerKind) -> &'static str {
    match kind {
        LoadBalancerKind::Application => "application",
        LoadBalancerKind::Network => "network",
    }
}

/// A listener as stored under `model::elb::keys::listener`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerRecord {
    pub arn: String,
    pub id: String,
    pub load_balancer_arn: String,
    pub load_balancer_id: String,
    pub port: i32,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
    /// The default certificate (HTTPS and TLS listeners have exactly one).
    #[serde(default)]
    pub certificates: Vec<String>,
    /// The certificates AddListenerCertificates added besides the default, for SNI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_certificates: Vec<String>,
    #[serde(default)]
    pub alpn_policy: Vec<String>,
    pub default_actions: Vec<Action>,
    /// The id of the listener's default rule (DescribeRules lists it with `IsDefault`).
    pub default_rule_id: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Listener attributes set away from their defaults (ModifyListenerAttributes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl ListenerRecord {
    /// The ARN of the default rule: `listener-rule/…/<listener id>/<rule id>` like any rule.
    pub fn default_rule_arn(&self) -> String {
        rule_arn(&self.arn, &self.default_rule_id)
    }
}

/// A (non-default) rule as stored under `model::elb::keys::rule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRecord {
    pub arn: String,
    pub id: String,
    pub listener_arn: String,
    pub listener_id: String,
    pub priority: i32,
    pub conditions: Vec<RuleCondition>,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

// ---- Wire types: actions and conditions, member names as the model's ----

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Action {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_config: Option<RedirectConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_response_config: Option<FixedResponseConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_config: Option<ForwardConfig>,
}

impl Action {
    /// The target groups a forward action sends to (none for other actions).
    pub fn target_group_arns(&self) -> Vec<&str> {
        let mut arns: Vec<&str> = self
            .forward_config
            .iter()
            .flat_map(|f| f.target_groups.iter().flatten())
            .filter_map(|t| t.target_group_arn.as_deref())
            .collect();
        if let Some(arn) = &self.target_group_arn {
            if !arns.contains(&arn.as_str()) {
                arns.push(arn);
            }
        }
        arns
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ForwardConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_groups: Option<Vec<TargetGroupTuple>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_stickiness_config: Option<StickinessConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetGroupTuple {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StickinessConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RedirectConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default)]
    pub status_code: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FixedResponseConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_body: Option<String>,
    #[serde(default)]
    pub status_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleCondition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header_config: Option<ValuesConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_pattern_config: Option<ValuesConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_config: Option<HttpHeaderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_string_config: Option<QueryStringConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_request_method_config: Option<ValuesConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip_config: Option<ValuesConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValuesConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpHeaderConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryStringConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<KeyValuePair>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyValuePair {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A `Tag` of the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

// ---- ARNs and names ----

/// 16 random hex digits, the id segment of every ELBv2 ARN.
pub fn new_id() -> String {
    use rand::Rng as _;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// `<listener arn with :listener/ replaced by :listener-rule/>/<rule id>`.
pub fn rule_arn(listener_arn: &str, rule_id: &str) -> String {
    format!(
        "{}/{rule_id}",
        listener_arn.replacen(":listener/", ":listener-rule/", 1)
    )
}

/// The segments after `:<resource>/` of an ELBv2 ARN, when it is one.
fn segments<'a>(arn: &'a str, resource: &str) -> Option<Vec<&'a str>> {
    if !arn.starts_with("arn:aws:elasticloadbalancing:") {
        return None;
    }
    let rest = arn.split_once(&format!(":{resource}/"))?.1;
    let parts: Vec<&str> = rest.split('/').collect();
    parts.iter().all(|p| !p.is_empty()).then_some(parts)
}

/// `loadbalancer/<app|net>/<name>/<id>` → `(name, id)`.
pub fn parse_load_balancer_arn(arn: &str) -> Option<(&str, &str)> {
    match segments(arn, "loadbalancer")?.as_slice() {
        [kind, name, id] if matches!(*kind, "app" | "net") => Some((name, id)),
        _ => None,
    }
}

/// `listener/<app|net>/<lb name>/<lb id>/<listener id>` → `(lb name, lb id, listener id)`.
pub fn parse_listener_arn(arn: &str) -> Option<(&str, &str, &str)> {
    match segments(arn, "listener")?.as_slice() {
        [kind, name, lb, id] if matches!(*kind, "app" | "net") => Some((name, lb, id)),
        _ => None,
    }
}

/// `listener-rule/<app|net>/<lb name>/<lb id>/<listener id>/<rule id>` →
/// `(lb name, lb id, listener id, rule id)`.
pub fn parse_rule_arn(arn: &str) -> Option<(&str, &str, &str, &str)> {
    match segments(arn, "listener-rule")?.as_slice() {
        [kind, name, lb, listener, id] if matches!(*kind, "app" | "net") => {
            Some((name, lb, listener, id))
        }
        _ => None,
    }
}

/// AWS's name rule for load balancers and target groups: 1–32 alphanumerics or hyphens, not
/// starting or ending with a hyphen. `what`: "Load balancer" or "Target group".
pub fn validate_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(format!("{what} name cannot be empty")));
    }
    if name.len() > 32 {
        return Err(invalid(format!(
            "{what} name '{name}' cannot be longer than '32' characters"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid(format!(
            "{what} name '{name}' can only contain characters that are alphanumeric characters or hyphens(-)"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid(format!(
            "{what} name '{name}' cannot begin or end with '-' character"
        )));
    }
    Ok(())
}

/// Tags of a create call or AddTags: at most 50, no duplicate keys, no `aws:` keys, AWS's
/// lengths (keys 1–128, values 0–256).
pub fn validate_tags(tags: &[Tag]) -> Result<Vec<(String, String)>> {
    // Checked here so that every create call with tags (load balancers, target groups,
    // listeners, rules) enforces the quota, not only the ones that remember to.
    if tags.len() > MAX_TAGS {
        return Err(super::Elbv2Error::TooManyTags(
            "The quota for the number of tags that can be assigned to a resource has been reached"
                .into(),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for tag in tags {
        if tag.key.is_empty() || tag.key.chars().count() > 128 {
            return Err(invalid(format!(
                "Tag key '{}' must be between 1 and 128 characters",
                tag.key
            )));
        }
        if tag.key.starts_with("aws:") {
            return Err(invalid(format!(
                "Tag key '{}' cannot start with the reserved prefix 'aws:'",
                tag.key
            )));
        }
        let value = tag.value.clone().unwrap_or_default();
        if value.chars().count() > 256 {
            return Err(invalid(format!(
                "Tag value of key '{}' cannot be longer than 256 characters",
                tag.key
            )));
        }
        if out.iter().any(|(k, _)| *k == tag.key) {
            return Err(super::Elbv2Error::DuplicateTagKeys(format!(
                "Tag key '{}' is duplicated",
                tag.key
            )));
        }
        out.push((tag.key.clone(), value));
    }
    Ok(out)
}

pub const MAX_TAGS: usize = 50;

/// Merge `new` into `existing` (new values win) within the limit of 50 tags.
pub fn merge_tags(existing: &mut Vec<(String, String)>, new: &[(String, String)]) -> Result<()> {
    for (key, value) in new {
        match existing.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => existing.push((key.clone(), value.clone())),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(super::Elbv2Error::TooManyTags(
            "The quota for the number of tags that can be assigned to a resource has been reached"
                .into(),
        ));
    }
    Ok(())
}

/// Tags as the wire's `Tags` list.
pub fn tags_value(tags: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Array(
        tags.iter()
            .map(|(k, v)| serde_json::json!({"Key": k, "Value": v}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_split_into_their_segments() {
        let lb = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/web/0123456789abcdef";
        assert_eq!(
            parse_load_balancer_arn(lb),
            Some(("web", "0123456789abcdef"))
        );
        let listener = "arn:aws:elasticloadbalancing:us-east-1:1:listener/net/web/aa/bb";
        assert_eq!(parse_listener_arn(listener), Some(("web", "aa", "bb")));
        let rule = rule_arn(listener, "cc");
        assert_eq!(
            rule,
            "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/net/web/aa/bb/cc"
        );
        assert_eq!(parse_rule_arn(&rule), Some(("web", "aa", "bb", "cc")));
        assert_eq!(parse_load_balancer_arn("arn:aws:ecs:x"), None);
        assert_eq!(parse_listener_arn(lb), None);
        assert_eq!(new_id().len(), 16);
    }

    #[test]
    fn names_follow_aws_rules() {
        assert!(validate_name("web-1", "Load balancer").is_ok());
        assert!(validate_name("-web", "Load balancer").is_err());
        assert!(validate_name("web_1", "Load balancer").is_err());
        assert!(validate_name(&"a".repeat(33), "Target group").is_err());
    }

    #[test]
    fn tags_refuse_duplicates_and_reserved_keys() {
        let tag = |k: &str| Tag {
            key: k.into(),
            value: Some("v".into()),
        };
        assert!(validate_tags(&[tag("a"), tag("a")]).is_err());
        assert!(validate_tags(&[tag("aws:x")]).is_err());
        let many: Vec<Tag> = (0..=MAX_TAGS).map(|i| tag(&format!("k{i}"))).collect();
        assert!(matches!(
            validate_tags(&many),
            Err(super::super::Elbv2Error::TooManyTags(_))
        ));
        assert!(validate_tags(&many[..MAX_TAGS]).is_ok());
        let mut existing = vec![("a".to_string(), "1".to_string())];
        merge_tags(
            &mut existing,
            &[("a".into(), "2".into()), ("b".into(), "3".into())],
        )
        .unwrap();
        assert_eq!(existing.len(), 2);
        assert_eq!(existing[0].1, "2");
    }
}
