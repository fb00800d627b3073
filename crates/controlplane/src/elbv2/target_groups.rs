//! Target groups: CreateTargetGroup, DescribeTargetGroups, ModifyTargetGroup,
//! DeleteTargetGroup and their attributes, with AWS's health-check defaults (which depend on
//! the group's protocol) and attribute rules.
//!
//! The record (`model::elb::TargetGroupRecord`) is shared with ECS's service scheduler, which
//! registers its tasks in it; every write here is a compare-and-swap on its revision.

use std::collections::BTreeMap;

use model::ec2::{self, Vpc};
use model::elb::{keys, HealthCheckConfig, TargetGroupRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{invalid, Result};
use super::load_balancers::{
    attributes_value, enum_error, require_attributes, set_attributes, AttributeInput,
};
use super::records::{self, validate_name, validate_tags, Tag};
use super::MAX_ATTEMPTS;
use super::{conflict, delete_key, page, parse, put_json, Elbv2Context, Elbv2Error, Topology};

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "TCP", "TLS", "UDP", "TCP_UDP", "GENEVE"];

/// Whether a group of this protocol serves application load balancers.
pub(super) fn is_http(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTPS")
}

/// Health-check members of CreateTargetGroup and ModifyTargetGroup.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct HealthCheckInput {
    health_check_protocol: Option<String>,
    health_check_port: Option<String>,
    health_check_enabled: Option<bool>,
    health_check_path: Option<String>,
    health_check_interval_seconds: Option<i32>,
    health_check_timeout_seconds: Option<i32>,
    healthy_threshold_count: Option<i32>,
    unhealthy_threshold_count: Option<i32>,
    matcher: Option<MatcherInput>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct MatcherInput {
    http_code: Option<String>,
    grpc_code: Option<String>,
}

fn range_check(value: i32, low: i32, high: i32, member: &str) -> Result<()> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have value between {low} and {high}"
        )))
    }
}

/// The highest matcher code a group of `protocol` accepts: 499 for HTTP and HTTPS groups,
/// 599 for the network protocols (the model's `Matcher` documentation).
fn highest_http_code(protocol: &str) -> u16 {
    if is_http(protocol) {
        499
    } else {
        599
    }
}

/// `200`, `200,202`, `200-299`: codes between 200 and `highest`.
fn valid_http_codes(codes: &str, highest: u16) -> bool {
    let code = |s: &str| s.parse::<u16>().is_ok_and(|c| (200..=highest).contains(&c));
    !codes.is_empty()
        && codes.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => code(a) && code(b) && a <= b,
            None => code(part),
        })
}

/// `0`, `0,12`, `0-99`: gRPC status codes between 0 and 99 (the model's `GrpcCode`).
fn valid_grpc_codes(codes: &str) -> bool {
    let code = |s: &str| s.parse::<u8>().is_ok_and(|c| c <= 99);
    !codes.is_empty()
        && codes.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => code(a) && code(b) && a.parse::<u8>().ok() <= b.parse::<u8>().ok(),
            None => code(part),
        })
}

/// The health check of a group of `protocol`, `protocol_version` and `target_type`: `current`
/// (or AWS's defaults for the protocol and version) with the input's members applied, then
/// checked as a whole.
fn health_check(
    protocol: &str,
    protocol_version: Option<&str>,
    target_type: &str,
    current: Option<&HealthCheckConfig>,
    input: &HealthCheckInput,
) -> Result<HealthCheckConfig> {
    let http_group = is_http(protocol);
    let grpc_group = protocol_version == Some("GRPC");
    let mut check = match current {
        Some(current) => current.clone(),
        None if grpc_group => HealthCheckConfig::aws_default_grpc(protocol),
        None => HealthCheckConfig::aws_default(protocol),
    };
    if let Some(p) = &input.health_check_protocol {
        if !matches!(p.as_str(), "HTTP" | "HTTPS" | "TCP") {
            return Err(enum_error(
                p,
                "healthCheckProtocol",
                &["HTTP", "HTTPS", "TCP"],
            ));
        }
        if http_group && p == "TCP" {
            return Err(Elbv2Error::InvalidConfigurationRequest(format!(
                "Health check protocol 'TCP' is not supported for target groups with the protocol '{protocol}'"
            )));
        }
        if current.is_none() && !http_group && p == "HTTP" {
            // An HTTP check on a network group waits 6 s by default; TCP and HTTPS checks keep
            // the network default of 10 s (the model's `HealthCheckTimeoutSeconds`).
            check.timeout_seconds = 6;
        }
        check.protocol = p.clone();
    }
    if let Some(port) = &input.health_check_port {
        if port != "traffic-port" && !port.parse::<i32>().is_ok_and(|p| (1..=65535).contains(&p)) {
            return Err(invalid(format!(
                "Health check port '{port}' must be 'traffic-port' or a port between 1 and 65535" // guessed
            )));
        }
        check.port = port.clone();
    }
    if let Some(enabled) = input.health_check_enabled {
        // "If the target type is instance, ip, or alb, health checks are always enabled and
        // can't be disabled" (the model); a disabled check would leave targets unavailable.
        if !enabled && matches!(target_type, "instance" | "ip" | "alb") {
            return Err(Elbv2Error::InvalidConfigurationRequest(format!(
                "Health checks cannot be disabled for target groups with target type '{target_type}'" // guessed
            )));
        }
        check.enabled = enabled;
    }
    let http_check = matches!(check.protocol.as_str(), "HTTP" | "HTTPS");
    if let Some(path) = &input.health_check_path {
        if !http_check {
            return Err(Elbv2Error::InvalidConfigurationRequest(
                "Health check path is only supported for HTTP and HTTPS health checks".into(), // guessed
            ));
        }
        if !path.starts_with('/') || path.len() > 1024 {
            return Err(invalid(
                "Health check path must begin with '/' and be at most 1024 characters",
            ));
        }
        check.path = Some(path.clone());
    }
    if let Some(v) = input.health_check_interval_seconds {
        range_check(v, 5, 300, "healthCheckIntervalSeconds")?;
        check.interval_seconds = v;
    }
    if let Some(v) = input.health_check_timeout_seconds {
        range_check(v, 2, 120, "healthCheckTimeoutSeconds")?;
        check.timeout_seconds = v;
    }
    if let Some(v) = input.healthy_threshold_count {
        range_check(v, 2, 10, "healthyThresholdCount")?;
        check.healthy_threshold_count = v;
    }
    if let Some(v) = input.unhealthy_threshold_count {
        range_check(v, 2, 10, "unhealthyThresholdCount")?;
        check.unhealthy_threshold_count = v;
    }
    if let Some(matcher) = &input.matcher {
        if let Some(codes) = &matcher.grpc_code {
            if !grpc_group {
                return Err(Elbv2Error::InvalidConfigurationRequest(format!(
                    "A gRPC matcher is only supported for target groups with the protocol version 'GRPC', not '{}'", // guessed
                    protocol_version.unwrap_or("HTTP1")
                )));
            }
            if matcher.http_code.is_some() {
                return Err(invalid(
                    "A matcher can have an HttpCode or a GrpcCode, not both",
                )); // guessed
            }
            if !valid_grpc_codes(codes) {
                return Err(invalid(format!(
                    "Matcher GrpcCode '{codes}' is not valid; use codes between 0 and 99, e.g. '12', '0,12' or '0-99'" // guessed
                )));
            }
            check.matcher_grpc_code = Some(codes.clone());
        }
        if let Some(codes) = &matcher.http_code {
            if grpc_group {
                return Err(Elbv2Error::InvalidConfigurationRequest(
                    "Target groups with the protocol version 'GRPC' take a GrpcCode matcher, not an HttpCode".into(), // guessed
                ));
            }
            if !http_check {
                return Err(Elbv2Error::InvalidConfigurationRequest(
                    "A matcher is only supported for HTTP and HTTPS health checks".into(), // guessed
                ));
            }
            let highest = highest_http_code(protocol);
            if !valid_http_codes(codes, highest) {
                return Err(invalid(format!(
                    "Matcher HttpCode '{codes}' is not valid; use codes between 200 and {highest}, e.g. '200', '200,202' or '200-299'" // guessed
                )));
            }
            check.matcher_http_code = Some(codes.clone());
        }
    }
    if http_check && grpc_group {
        check
            .path
            .get_or_insert_with(|| model::elb::GRPC_HEALTH_CHECK_PATH.to_string());
        check
            .matcher_grpc_code
            .get_or_insert_with(|| "12".to_string());
        check.matcher_http_code = None;
    } else if http_check {
        check.path.get_or_insert_with(|| "/".to_string());
        check
            .matcher_http_code
            .get_or_insert_with(|| if http_group { "200" } else { "200-399" }.to_string());
        check.matcher_grpc_code = None;
    } else {
        check.path = None;
        check.matcher_http_code = None;
        check.matcher_grpc_code = None;
    }
    if check.timeout_seconds >= check.interval_seconds {
        return Err(Elbv2Error::InvalidConfigurationRequest(format!(
            "Health check timeout '{}' must be smaller than the interval '{}'",
            check.timeout_seconds, check.interval_seconds
        )));
    }
    Ok(check)
}

/// AWS's default attributes of a new group.
fn default_attributes(protocol: &str) -> BTreeMap<String, String> {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("deregistration_delay.timeout_seconds", "300"),
        ("stickiness.enabled", "false"),
        (
            "load_balancing.cross_zone.enabled",
            "use_load_balancer_configuration",
        ),
    ];
    if is_http(protocol) {
        pairs.extend([
            ("stickiness.type", "lb_cookie"),
            ("stickiness.lb_cookie.duration_seconds", "86400"),
            ("stickiness.app_cookie.cookie_name", ""),
            ("stickiness.app_cookie.duration_seconds", "86400"),
            ("slow_start.duration_seconds", "0"),
            ("load_balancing.algorithm.type", "round_robin"),
            ("load_balancing.algorithm.anomaly_mitigation", "off"),
        ]);
    } else {
        pairs.extend([
            ("stickiness.type", "source_ip"),
            (
                "deregistration_delay.connection_termination.enabled",
                "false",
            ),
            ("proxy_protocol_v2.enabled", "false"),
            // AWS's default is `true` for instance targets; Wharf's data plane connects to
            // targets from its own address, so the attribute is `false` and stays so
            // (docs/compat.md): Proxy Protocol v2 is how a target learns its client here.
            ("preserve_client_ip.enabled", "false"),
        ]);
    }
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn validate_attribute(protocol: &str, key: &str, value: &str) -> Result<()> {
    if !default_attributes(protocol).contains_key(key) {
        return Err(invalid(format!(
            "Target group attribute key '{key}' is not recognized"
        )));
    }
    let bad = |why: &str| {
        Elbv2Error::InvalidConfigurationRequest(format!(
            "Target group attribute value '{value}' is not valid for key '{key}': {why}" // guessed
        ))
    };
    let number = |low: i64, high: i64| match value.parse::<i64>() {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(bad(&format!("must be between {low} and {high}"))),
    };
    match key {
        "deregistration_delay.timeout_seconds" => number(0, 3600).map(drop),
        "slow_start.duration_seconds" => {
            let n = number(0, 900)?;
            if n != 0 && n < 30 {
                return Err(bad("must be 0 or between 30 and 900"));
            }
            Ok(())
        }
        "stickiness.lb_cookie.duration_seconds" | "stickiness.app_cookie.duration_seconds" => {
            number(1, 604_800).map(drop)
        }
        "stickiness.type" => {
            let allowed: &[&str] = if is_http(protocol) {
                &["lb_cookie", "app_cookie"]
            } else {
                &["source_ip"]
            };
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(bad(&format!("must be one of {}", allowed.join(", "))))
            }
        }
        "load_balancing.algorithm.type" => {
            if matches!(value, "round_robin" | "least_outstanding_requests") {
                Ok(())
            } else {
                Err(bad(
                    "Wharf supports round_robin and least_outstanding_requests",
                ))
            }
        }
        // Anomaly mitigation works only with `weighted_random`, which Wharf does not offer.
        "load_balancing.algorithm.anomaly_mitigation" => match value {
            "off" => Ok(()),
            "on" => Err(Elbv2Error::InvalidConfigurationRequest(
                "Anomaly mitigation is only supported with the weighted_random load balancing algorithm".into(), // guessed
            )),
            _ => Err(bad("must be on or off")),
        },
        "load_balancing.cross_zone.enabled" => match value {
            "true" | "false" | "use_load_balancer_configuration" => Ok(()),
            _ => Err(bad(
                "must be true, false or use_load_balancer_configuration",
            )),
        },
        "stickiness.app_cookie.cookie_name" => {
            // A cookie name is an RFC 6265 token; the load balancer's own names are reserved.
            let token = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
            if value.len() > 256 || !value.bytes().all(token) {
                Err(bad("must be a cookie name of at most 256 characters"))
            } else if value.starts_with("AWSALB") {
                Err(bad(
                    "must not start with AWSALB, AWSALBAPP or AWSALBTG (reserved for the load balancer)",
                ))
            } else {
                Ok(())
            }
        }
        "preserve_client_ip.enabled" => match value {
            "false" => Ok(()),
            "true" => Err(Elbv2Error::InvalidConfigurationRequest(
                "Wharf's load balancer cannot preserve client IP addresses; enable proxy_protocol_v2.enabled to pass them to targets".into(),
            )),
            _ => Err(bad("must be true or false")),
        },
        "proxy_protocol_v2.enabled" if matches!(protocol, "UDP" | "TCP_UDP") && value == "true" => {
            Err(Elbv2Error::InvalidConfigurationRequest(format!(
                "Proxy protocol is not supported for target groups with the protocol '{protocol}'" // guessed
            )))
        }
        k if k.ends_with(".enabled") => match value {
            "true" | "false" => Ok(()),
            _ => Err(bad("must be true or false")),
        },
        _ => Ok(()),
    }
}

/// The wire `TargetGroup` of a record.
pub(super) fn describe_value(record: &TargetGroupRecord, load_balancers: Vec<String>) -> Value {
    let check = &record.health_check;
    let mut value = json!({
        "TargetGroupArn": record.arn,
        "TargetGroupName": record.name,
        "Protocol": record.protocol,
        "Port": record.port,
        "VpcId": record.vpc_id,
        "HealthCheckProtocol": check.protocol,
        "HealthCheckPort": check.port,
        "HealthCheckEnabled": check.enabled,
        "HealthCheckIntervalSeconds": check.interval_seconds,
        "HealthCheckTimeoutSeconds": check.timeout_seconds,
        "HealthyThresholdCount": check.healthy_threshold_count,
        "UnhealthyThresholdCount": check.unhealthy_threshold_count,
        "HealthCheckPath": check.path,
        "LoadBalancerArns": load_balancers,
        "TargetType": record.target_type,
        "ProtocolVersion": record.protocol_version,
        "IpAddressType": record.ip_address_type,
    });
    if let Some(code) = &check.matcher_http_code {
        value["Matcher"] = json!({"HttpCode": code});
    } else if let Some(code) = &check.matcher_grpc_code {
        value["Matcher"] = json!({"GrpcCode": code});
    }
    value
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    name: String,
    protocol: Option<String>,
    protocol_version: Option<String>,
    port: Option<i32>,
    vpc_id: Option<String>,
    target_type: Option<String>,
    tags: Option<Vec<Tag>>,
    ip_address_type: Option<String>,
    #[serde(flatten)]
    health_check: HealthCheckInput,
}

pub async fn create(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: CreateInput = parse(input)?;
    validate_name(&input.name, "Target group")?;
    let target_type = input.target_type.as_deref().unwrap_or("instance");
    match target_type {
        "instance" | "ip" => {}
        "lambda" | "alb" => {
            return Err(invalid(format!(
            "Wharf does not support target groups of type '{target_type}'; use 'instance' or 'ip'"
        )))
        }
        other => {
            return Err(enum_error(
                other,
                "targetType",
                &["instance", "ip", "lambda", "alb"],
            ))
        }
    }
    let protocol = input
        .protocol
        .clone()
        .ok_or_else(|| invalid("A protocol must be specified"))?;
    if !PROTOCOLS.contains(&protocol.as_str()) {
        return Err(enum_error(&protocol, "protocol", PROTOCOLS));
    }
    if protocol == "GENEVE" {
        return Err(invalid(
            "Wharf does not support GENEVE target groups (gateway load balancers)",
        ));
    }
    let port = input
        .port
        .ok_or_else(|| invalid("A port must be specified"))?;
    range_check(port, 1, 65535, "port")?;
    let vpc_id = input
        .vpc_id
        .clone()
        .ok_or_else(|| invalid("A VPC ID must be specified"))?;
    if ctx.get_json::<Vpc>(&ec2::vpc_key(&vpc_id)).await?.is_none() {
        return Err(invalid(format!("The VPC ID '{vpc_id}' is not found")));
    }
    let protocol_version = match (&input.protocol_version, is_http(&protocol)) {
        (None, true) => Some("HTTP1".to_string()),
        (None, false) => None,
        (Some(v), true) if matches!(v.as_str(), "HTTP1" | "HTTP2" | "GRPC") => Some(v.clone()),
        (Some(v), _) => {
            return Err(invalid(format!(
                "Protocol version '{v}' is not supported for target groups with the protocol '{protocol}'" // guessed
            )));
        }
    };
    let ip_address_type = input.ip_address_type.as_deref().unwrap_or("ipv4");
    if ip_address_type != "ipv4" {
        return Err(invalid(format!(
            "Wharf supports only the 'ipv4' IP address type, not '{ip_address_type}'"
        )));
    }
    let check = health_check(
        &protocol,
        protocol_version.as_deref(),
        target_type,
        None,
        &input.health_check,
    )?;
    let tags = validate_tags(input.tags.as_deref().unwrap_or_default())?;
    let key = keys::target_group(&input.name);
    for _ in 0..MAX_ATTEMPTS {
        if let Some((existing, _)) = ctx.get_json::<TargetGroupRecord>(&key).await? {
            // CreateTargetGroup is idempotent: the same settings answer the existing group.
            let same = existing.protocol.as_deref() == Some(protocol.as_str())
                && existing.port == Some(port)
                && existing.vpc_id.as_deref() == Some(vpc_id.as_str())
                && existing.target_type == target_type
                && existing.protocol_version == protocol_version
                && existing.health_check == check;
            if same {
                let topology = Topology::load(ctx).await?;
                let lbs = topology.load_balancers_of(&existing.arn);
                return Ok(json!({"TargetGroups": [describe_value(&existing, lbs)]}));
            }
            return Err(Elbv2Error::DuplicateTargetGroupName(format!(
                "A target group with the same name '{}' exists, but with different settings",
                input.name
            )));
        }
        let id = records::new_id();
        let record = TargetGroupRecord {
            arn: ctx.arn(&format!("targetgroup/{}/{id}", input.name)),
            name: input.name.clone(),
            id,
            protocol: Some(protocol.clone()),
            protocol_version: protocol_version.clone(),
            port: Some(port),
            vpc_id: Some(vpc_id.clone()),
            target_type: target_type.to_string(),
            ip_address_type: Some(ip_address_type.to_string()),
            health_check: check.clone(),
            attributes: default_attributes(&protocol),
            tags: tags.clone(),
            created_at_ms: ctx.now_ms(),
            targets: Vec::new(),
        };
        if ctx
            .commit(&[(key.clone(), 0)], vec![put_json(&key, &record)])
            .await?
        {
            tracing::info!(target_group = %record.arn, "created target group");
            return Ok(json!({"TargetGroups": [describe_value(&record, Vec::new())]}));
        }
    }
    Err(conflict())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    load_balancer_arn: Option<String>,
    target_group_arns: Option<Vec<String>>,
    names: Option<Vec<String>>,
    marker: Option<String>,
    page_size: Option<i32>,
}

pub async fn describe(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: DescribeInput = parse(input)?;
    let arns = input.target_group_arns.unwrap_or_default();
    let names = input.names.unwrap_or_default();
    let given = [
        input.load_balancer_arn.is_some(),
        !arns.is_empty(),
        !names.is_empty(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(invalid(
            "A load balancer ARN, target group ARNs or target group names can be specified, but only one of them", // guessed
        ));
    }
    let topology = Topology::load(ctx).await?;
    let all: Vec<TargetGroupRecord> = ctx
        .range_json::<TargetGroupRecord>(keys::TARGET_GROUP_PREFIX)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    let not_found = |missing: Vec<&String>| {
        Elbv2Error::TargetGroupNotFound(format!(
            "Target groups '[{}]' not found",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    let selected: Vec<TargetGroupRecord> = if let Some(lb) = &input.load_balancer_arn {
        ctx.load_balancer(lb).await?;
        all.into_iter()
            .filter(|g| topology.load_balancers_of(&g.arn).contains(lb))
            .collect()
    } else if !arns.is_empty() {
        for arn in &arns {
            if model::elb::parse_target_group_arn(arn).is_none() {
                return Err(invalid(format!("'{arn}' is not a valid target group ARN")));
            }
        }
        let missing: Vec<&String> = arns
            .iter()
            .filter(|a| !all.iter().any(|g| g.arn == **a))
            .collect();
        if !missing.is_empty() {
            return Err(not_found(missing));
        }
        all.into_iter().filter(|g| arns.contains(&g.arn)).collect()
    } else if !names.is_empty() {
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !all.iter().any(|g| g.name == **n))
            .collect();
        if !missing.is_empty() {
            return Err(not_found(missing));
        }
        all.into_iter()
            .filter(|g| names.contains(&g.name))
            .collect()
    } else {
        all
    };
    let (items, next) = page(
        ctx,
        "DescribeTargetGroups",
        selected,
        |g| g.name.clone(),
        input.marker.as_deref(),
        input.page_size,
    )?;
    let mut out = json!({
        "TargetGroups": items
            .iter()
            .map(|g| describe_value(g, topology.load_balancers_of(&g.arn)))
            .collect::<Vec<_>>()
    });
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyInput {
    target_group_arn: String,
    #[serde(flatten)]
    health_check: HealthCheckInput,
}

pub async fn modify(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ModifyInput = parse(input)?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut record, revision) = ctx.target_group(&input.target_group_arn).await?;
        let protocol = record.protocol.clone().unwrap_or_default();
        record.health_check = health_check(
            &protocol,
            record.protocol_version.as_deref(),
            &record.target_type,
            Some(&record.health_check),
            &input.health_check,
        )?;
        record.prune(ctx.now_ms());
        let key = keys::target_group(&record.name);
        if ctx
            .commit(&[(key.clone(), revision)], vec![put_json(&key, &record)])
            .await?
        {
            let lbs = Topology::load(ctx).await?.load_balancers_of(&record.arn);
            return Ok(json!({"TargetGroups": [describe_value(&record, lbs)]}));
        }
    }
    Err(conflict())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArnInput {
    target_group_arn: String,
}

pub async fn delete_target_group(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ArnInput = parse(input)?;
    for _ in 0..MAX_ATTEMPTS {
        // Deleting a group that does not exist succeeds (the model lists no not-found error).
        let (record, revision) = match ctx.target_group(&input.target_group_arn).await {
            Ok(found) => found,
            Err(Elbv2Error::TargetGroupNotFound(_)) => return Ok(json!({})),
            Err(e) => return Err(e),
        };
        if Topology::load(ctx).await?.in_use(&record.arn) {
            return Err(Elbv2Error::ResourceInUse(format!(
                "Target group '{}' is currently in use by a listener or a rule",
                record.arn
            )));
        }
        let key = keys::target_group(&record.name);
        let ops = vec![
            delete_key(&key),
            delete_key(&keys::target_health(&record.id)),
        ];
        if ctx.commit(&[(key, revision)], ops).await? {
            tracing::info!(target_group = %record.arn, "deleted target group");
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

pub use delete_target_group as delete;

pub async fn describe_attributes(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ArnInput = parse(input)?;
    let (record, _) = ctx.target_group(&input.target_group_arn).await?;
    Ok(attributes_value(&record.attributes))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyAttributesInput {
    target_group_arn: String,
    attributes: Vec<AttributeInput>,
}

pub async fn modify_attributes(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ModifyAttributesInput = parse(input)?;
    require_attributes(&input.attributes)?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut record, revision) = ctx.target_group(&input.target_group_arn).await?;
        let protocol = record.protocol.clone().unwrap_or_default();
        set_attributes(&input.attributes, &mut record.attributes, |key, value| {
            validate_attribute(&protocol, key, value)
        })?;
        let a = &record.attributes;
        if a.get("stickiness.enabled").map(String::as_str) == Some("true")
            && a.get("stickiness.type").map(String::as_str) == Some("app_cookie")
            && a.get("stickiness.app_cookie.cookie_name")
                .is_none_or(|n| n.is_empty())
        {
            return Err(Elbv2Error::InvalidConfigurationRequest(
                "The 'stickiness.app_cookie.cookie_name' attribute must be specified for application-based stickiness".into(), // guessed
            ));
        }
        if a.get("load_balancing.algorithm.type").map(String::as_str)
            == Some("least_outstanding_requests")
            && a.get("slow_start.duration_seconds")
                .is_some_and(|v| v != "0")
        {
            return Err(Elbv2Error::InvalidConfigurationRequest(
                "Slow start mode is not supported with the least outstanding requests algorithm"
                    .into(), // guessed
            ));
        }
        record.prune(ctx.now_ms());
        let key = keys::target_group(&record.name);
        if ctx
            .commit(&[(key.clone(), revision)], vec![put_json(&key, &record)])
            .await?
        {
            return Ok(attributes_value(&record.attributes));
        }
    }
    Err(conflict())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_check_defaults_depend_on_the_protocol() {
        let http = health_check("HTTP", None, "ip", None, &HealthCheckInput::default()).unwrap();
        assert_eq!(
            (
                http.protocol.as_str(),
                http.timeout_seconds,
                http.healthy_threshold_count
            ),
            ("HTTP", 5, 5)
        );
        assert_eq!(http.path.as_deref(), Some("/"));
        assert_eq!(http.matcher_http_code.as_deref(), Some("200"));
        let tcp = health_check("TCP", None, "ip", None, &HealthCheckInput::default()).unwrap();
        assert_eq!((tcp.protocol.as_str(), tcp.timeout_seconds), ("TCP", 10));
        assert_eq!(tcp.path, None);
        let too_slow = HealthCheckInput {
            health_check_timeout_seconds: Some(30),
            ..Default::default()
        };
        assert!(matches!(
            health_check("HTTP", None, "ip", None, &too_slow),
            Err(Elbv2Error::InvalidConfigurationRequest(_))
        ));
    }

    #[test]
    fn matchers_and_attributes_are_validated() {
        assert!(valid_http_codes("200", 499));
        assert!(valid_http_codes("200,202", 499));
        assert!(valid_http_codes("200-299", 499));
        assert!(!valid_http_codes("100", 499));
        assert!(!valid_http_codes("abc", 499));
        assert!(validate_attribute("HTTP", "slow_start.duration_seconds", "30").is_ok());
        assert!(validate_attribute("HTTP", "slow_start.duration_seconds", "10").is_err());
        assert!(
            validate_attribute("HTTP", "deregistration_delay.timeout_seconds", "3601").is_err()
        );
        assert!(validate_attribute("TCP", "stickiness.type", "source_ip").is_ok());
        assert!(validate_attribute("HTTP", "stickiness.type", "source_ip").is_err());
        assert!(validate_attribute("HTTP", "bogus", "1").is_err());
    }

    #[test]
    fn grpc_groups_call_a_method_and_match_grpc_codes() {
        let grpc = Some("GRPC");
        let check = health_check("HTTP", grpc, "ip", None, &HealthCheckInput::default()).unwrap();
        assert_eq!(check.path.as_deref(), Some("/AWS.ALB/healthcheck"));
        assert_eq!(check.matcher_grpc_code.as_deref(), Some("12"));
        assert_eq!(check.matcher_http_code, None);
        let matcher = |http: Option<&str>, grpc: Option<&str>| HealthCheckInput {
            matcher: Some(MatcherInput {
                http_code: http.map(str::to_string),
                grpc_code: grpc.map(str::to_string),
            }),
            ..HealthCheckInput::default()
        };
        let zero = health_check("HTTPS", grpc, "ip", None, &matcher(None, Some("0-99"))).unwrap();
        assert_eq!(zero.matcher_grpc_code.as_deref(), Some("0-99"));
        assert_eq!(describe_matcher(&zero), json!({"GrpcCode": "0-99"}));
        for bad in ["100", "5-2", "", "x"] {
            assert!(health_check("HTTP", grpc, "ip", None, &matcher(None, Some(bad))).is_err());
        }
        // An HttpCode on a gRPC group, a GrpcCode on any other.
        assert!(health_check("HTTP", grpc, "ip", None, &matcher(Some("200"), None)).is_err());
        for version in [None, Some("HTTP1"), Some("HTTP2")] {
            assert!(health_check("HTTP", version, "ip", None, &matcher(None, Some("0"))).is_err());
        }
        let http2 = health_check(
            "HTTP",
            Some("HTTP2"),
            "ip",
            None,
            &HealthCheckInput::default(),
        );
        assert_eq!(http2.unwrap().matcher_http_code.as_deref(), Some("200"));
    }

    fn describe_matcher(check: &HealthCheckConfig) -> Value {
        let record = TargetGroupRecord {
            arn: String::new(),
            name: String::new(),
            id: String::new(),
            protocol: Some("HTTP".into()),
            protocol_version: Some("GRPC".into()),
            port: Some(50051),
            vpc_id: None,
            target_type: "ip".into(),
            ip_address_type: None,
            health_check: check.clone(),
            attributes: BTreeMap::new(),
            tags: Vec::new(),
            created_at_ms: 0,
            targets: Vec::new(),
        };
        describe_value(&record, Vec::new())["Matcher"].clone()
    }

    #[test]
    fn network_groups_check_by_their_own_rules() {
        let check = |protocol: &str| HealthCheckInput {
            health_check_protocol: Some(protocol.into()),
            ..Default::default()
        };
        // Defaults by check protocol on a network group: 6 s for HTTP only, 10 s otherwise.
        let http = health_check("TCP", None, "ip", None, &check("HTTP")).unwrap();
        assert_eq!(http.timeout_seconds, 6);
        let https = health_check("TLS", None, "ip", None, &check("HTTPS")).unwrap();
        assert_eq!(https.timeout_seconds, 10);
        assert_eq!(https.matcher_http_code.as_deref(), Some("200-399"));
        // Matcher codes: up to 599 for network groups, up to 499 for HTTP(S) groups.
        let matcher = |protocol: &str, codes: &str| HealthCheckInput {
            health_check_protocol: Some(protocol.into()),
            matcher: Some(MatcherInput {
                http_code: Some(codes.into()),
                grpc_code: None,
            }),
            ..Default::default()
        };
        let net = health_check("TCP", None, "ip", None, &matcher("HTTP", "200-599")).unwrap();
        assert_eq!(net.matcher_http_code.as_deref(), Some("200-599"));
        assert!(health_check("UDP", None, "ip", None, &matcher("HTTP", "600")).is_err());
        assert!(matches!(
            health_check("HTTP", None, "ip", None, &matcher("HTTP", "200-599")),
            Err(Elbv2Error::Validation(_))
        ));
        assert!(health_check("HTTPS", None, "ip", None, &matcher("HTTPS", "200-499")).is_ok());
    }

    #[test]
    fn health_checks_stay_enabled_for_instance_and_ip_groups() {
        let off = HealthCheckInput {
            health_check_enabled: Some(false),
            ..Default::default()
        };
        for target_type in ["instance", "ip"] {
            assert!(matches!(
                health_check("HTTP", None, target_type, None, &off),
                Err(Elbv2Error::InvalidConfigurationRequest(_))
            ));
        }
        let on = HealthCheckInput {
            health_check_enabled: Some(true),
            ..Default::default()
        };
        assert!(
            health_check("TCP", None, "instance", None, &on)
                .unwrap()
                .enabled
        );
    }
}
