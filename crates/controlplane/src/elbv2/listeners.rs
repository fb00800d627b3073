//! Listeners (CreateListener, DescribeListeners, ModifyListener, DeleteListener) and the
//! validation of actions, which listeners' default actions and rules share: exactly one
//! terminal action (forward, redirect or fixed-response), forwards to at most five weighted
//! target groups of the load balancer's VPC whose protocol the listener can carry, each group
//! attached to one load balancer only. Actions are stored normalised as DescribeRules answers
//! them (a single-group forward has both `TargetGroupArn` and `ForwardConfig`; redirects have
//! every component with its `#{…}` default).

use std::collections::BTreeMap;

use model::elb::{
    keys, LoadBalancerKind, ResponseHeaderSettings, TargetGroupRecord,
    NLB_TCP_IDLE_TIMEOUT_SECONDS, RESPONSE_HEADER_ATTRIBUTES,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{invalid, Result};
use super::load_balancers::{
    attributes_value, enum_error, require_attributes, set_attributes, AttributeInput,
};
use super::records::{
    self, validate_tags, Action, ForwardConfig, ListenerRecord, LoadBalancerRecord, RedirectConfig,
    StickinessConfig, Tag, TargetGroupTuple,
};
use super::{
    conflict, delete_key, page, parse, put_json, Elbv2Context, Elbv2Error, Topology, MAX_ATTEMPTS,
};

const APPLICATION_PROTOCOLS: &[&str] = &["HTTP", "HTTPS"];
const NETWORK_PROTOCOLS: &[&str] = &["TCP", "TLS", "UDP", "TCP_UDP"];
const FIXED_RESPONSE_CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];
/// The policy AWS gives HTTPS and TLS listeners created without one (through the API; the
/// console picks a newer one).
const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-2016-08";
/// A TLS listener's ALPN policies.
const ALPN_POLICIES: &[&str] = &[
    "HTTP1Only",
    "HTTP2Only",
    "HTTP2Optional",
    "HTTP2Preferred",
    "None",
];
/// Certificates a listener may have besides its default (ELBv2's quota per load balancer).
const MAX_ADDITIONAL_CERTIFICATES: usize = 25;

/// Whether a listener of `listener` protocol may forward to a group of `group` protocol.
fn compatible(listener: &str, group: &str) -> bool {
    match listener {
        "HTTP" | "HTTPS" => matches!(group, "HTTP" | "HTTPS"),
        "TCP" => matches!(group, "TCP" | "TCP_UDP"),
        "TLS" => matches!(group, "TCP" | "TLS"),
        "UDP" => matches!(group, "UDP" | "TCP_UDP"),
        "TCP_UDP" => group == "TCP_UDP",
        _ => false,
    }
}

/// Validate and normalise the actions of a rule or default rule of a listener of
/// `listener_protocol` on `lb`.
pub(super) async fn validate_actions(
    ctx: &Elbv2Context,
    lb: &LoadBalancerRecord,
    listener_protocol: &str,
    actions: Vec<Action>,
    topology: &Topology,
) -> Result<Vec<Action>> {
    if actions.is_empty() {
        return Err(invalid("At least one action must be specified")); // guessed
    }
    if actions.len() > 1 {
        let terminal = actions
            .iter()
            .filter(|a| matches!(a.kind.as_str(), "forward" | "redirect" | "fixed-response"))
            .count();
        return Err(if terminal > 1 {
            Elbv2Error::InvalidLoadBalancerAction(
                "A rule can have only one terminal action".into(), // guessed
            )
        } else {
            Elbv2Error::InvalidLoadBalancerAction(
                "Wharf supports one action per rule (authenticate actions are not supported)"
                    .into(),
            )
        });
    }
    let mut out = Vec::new();
    for mut action in actions {
        if let Some(order) = action.order {
            if !(1..=50_000).contains(&order) {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{order}' at 'actions.member.order' failed to satisfy constraint: Member must have value between 1 and 50000"
                )));
            }
        }
        match action.kind.as_str() {
            "forward" => {}
            "redirect" | "fixed-response" if lb.kind == LoadBalancerKind::Network => {
                return Err(Elbv2Error::InvalidLoadBalancerAction(format!(
                    "Action type '{}' is not supported for network load balancers; use 'forward'", // guessed
                    action.kind
                )));
            }
            "redirect" => {
                action.redirect_config = Some(redirect(action.redirect_config.take())?);
                action.target_group_arn = None;
                action.forward_config = None;
                action.fixed_response_config = None;
                out.push(action);
                continue;
            }
            "fixed-response" => {
                let config = action
                    .fixed_response_config
                    .take()
                    .ok_or_else(|| invalid("A fixed response config must be specified"))?; // guessed
                let code = config.status_code.as_bytes();
                if code.len() != 3
                    || !matches!(code[0], b'2' | b'4' | b'5')
                    || !code.iter().all(u8::is_ascii_digit)
                {
                    return Err(invalid(format!(
                        "Fixed response status code '{}' must be a 2XX, 4XX or 5XX code",
                        config.status_code
                    )));
                }
                if let Some(t) = &config.content_type {
                    if !FIXED_RESPONSE_CONTENT_TYPES.contains(&t.as_str()) {
                        return Err(enum_error(
                            t,
                            "actions.member.fixedResponseConfig.contentType",
                            FIXED_RESPONSE_CONTENT_TYPES,
                        ));
                    }
                }
                if config.message_body.as_ref().is_some_and(|b| b.len() > 1024) {
                    return Err(invalid(
                        "Fixed response message body cannot be longer than 1024 characters",
                    ));
                }
                action.fixed_response_config = Some(config);
                action.target_group_arn = None;
                action.forward_config = None;
                action.redirect_config = None;
                out.push(action);
                continue;
            }
            "authenticate-oidc" | "authenticate-cognito" | "jwt-validation" => {
                return Err(Elbv2Error::InvalidLoadBalancerAction(format!(
                    "Wharf does not support '{}' actions",
                    action.kind
                )))
            }
            other => {
                return Err(enum_error(
                    other,
                    "actions.member.type",
                    &[
                        "forward",
                        "authenticate-oidc",
                        "authenticate-cognito",
                        "redirect",
                        "fixed-response",
                    ],
                ))
            }
        }
        // forward
        let config = action.forward_config.take().unwrap_or_default();
        let mut tuples: Vec<TargetGroupTuple> = config.target_groups.unwrap_or_default();
        match (&action.target_group_arn, tuples.as_slice()) {
            (Some(arn), []) => tuples.push(TargetGroupTuple {
                target_group_arn: Some(arn.clone()),
                weight: Some(1),
            }),
            (Some(arn), [only]) if only.target_group_arn.as_ref() == Some(arn) => {}
            (Some(_), _) => {
                return Err(invalid(
                    "You cannot specify both a target group ARN and a forward config with other target groups", // guessed
                ));
            }
            (None, []) => {
                return Err(invalid(
                    "A target group ARN must be specified for a forward action", // guessed
                ));
            }
            (None, _) => {}
        }
        if tuples.len() > 5 {
            return Err(Elbv2Error::TooManyTargetGroups(
                "A forward action can have at most 5 target groups".into(), // guessed
            ));
        }
        let mut seen = Vec::new();
        for tuple in &mut tuples {
            let arn = tuple.target_group_arn.clone().ok_or_else(|| {
                invalid("A target group ARN must be specified in each target group tuple")
            })?;
            if seen.contains(&arn) {
                return Err(invalid(format!(
                    "Target group '{arn}' is specified more than once" // guessed
                )));
            }
            seen.push(arn.clone());
            let weight = *tuple.weight.get_or_insert(1);
            if !(0..=999).contains(&weight) {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{weight}' at 'weight' failed to satisfy constraint: Member must have value between 0 and 999"
                )));
            }
            let (group, _) = ctx.target_group(&arn).await?;
            check_group(lb, listener_protocol, &group, topology)?;
        }
        let stickiness = config.target_group_stickiness_config.unwrap_or_default();
        let enabled = stickiness.enabled.unwrap_or(false);
        if enabled {
            match stickiness.duration_seconds {
                Some(d) if (1..=604_800).contains(&d) => {}
                _ => {
                    return Err(invalid(
                        "Target group stickiness duration must be between 1 and 604800 seconds", // guessed
                    ));
                }
            }
        }
        action.target_group_arn = (tuples.len() == 1)
            .then(|| tuples[0].target_group_arn.clone())
            .flatten();
        action.forward_config = Some(ForwardConfig {
            target_groups: Some(tuples),
            target_group_stickiness_config: Some(StickinessConfig {
                enabled: Some(enabled),
                duration_seconds: stickiness.duration_seconds.filter(|_| enabled),
            }),
        });
        action.redirect_config = None;
        action.fixed_response_config = None;
        out.push(action);
    }
    Ok(out)
}

/// Whether `lb`'s listener of `listener_protocol` may forward to `group`.
fn check_group(
    lb: &LoadBalancerRecord,
    listener_protocol: &str,
    group: &TargetGroupRecord,
    topology: &Topology,
) -> Result<()> {
    if group.vpc_id.as_deref() != Some(lb.vpc_id.as_str()) {
        return Err(Elbv2Error::InvalidConfigurationRequest(format!(
            "The target group '{}' is not in the same VPC as the load balancer", // guessed
            group.arn
        )));
    }
    let protocol = group.protocol.as_deref().unwrap_or_default();
    if !compatible(listener_protocol, protocol) {
        return Err(Elbv2Error::IncompatibleProtocols(format!(
            "Listener protocol '{listener_protocol}' is not supported with a target group with the protocol '{protocol}'"
        )));
    }
    if topology
        .load_balancers_of(&group.arn)
        .iter()
        .any(|other| *other != lb.arn)
    {
        return Err(Elbv2Error::TargetGroupAssociationLimit(format!(
            "The following target groups cannot be associated with more than one load balancer: {}",
            group.arn
        )));
    }
    Ok(())
}

/// A redirect with AWS's defaults for the components not given.
fn redirect(config: Option<RedirectConfig>) -> Result<RedirectConfig> {
    let mut config = config.ok_or_else(|| invalid("A redirect config must be specified"))?; // guessed
    if !matches!(config.status_code.as_str(), "HTTP_301" | "HTTP_302") {
        return Err(enum_error(
            &config.status_code,
            "actions.member.redirectConfig.statusCode",
            &["HTTP_301", "HTTP_302"],
        ));
    }
    if let Some(p) = &config.protocol {
        if !matches!(p.as_str(), "HTTP" | "HTTPS" | "#{protocol}") {
            return Err(invalid(format!(
                "Redirect protocol '{p}' must be HTTP, HTTPS or #{{protocol}}" // guessed
            )));
        }
    }
    if config.path.as_ref().is_some_and(|p| !p.starts_with('/')) {
        return Err(invalid("Redirect path must start with '/'")); // guessed
    }
    let defaults = [
        config.protocol.is_none(),
        config.port.is_none(),
        config.host.is_none(),
        config.path.is_none(),
        config.query.is_none(),
    ];
    if defaults.iter().all(|d| *d) {
        return Err(Elbv2Error::InvalidLoadBalancerAction(
            "The redirect configuration is not valid: it redirects to the same location".into(), // guessed
        ));
    }
    config.protocol.get_or_insert_with(|| "#{protocol}".into());
    config.port.get_or_insert_with(|| "#{port}".into());
    config.host.get_or_insert_with(|| "#{host}".into());
    config.path.get_or_insert_with(|| "/#{path}".into());
    config.query.get_or_insert_with(|| "#{query}".into());
    Ok(config)
}

/// The wire `Listener` of a record.
pub(super) fn describe_value(record: &ListenerRecord) -> Value {
    let mut value = json!({
        "ListenerArn": record.arn,
        "LoadBalancerArn": record.load_balancer_arn,
        "Port": record.port,
        "Protocol": record.protocol,
        "DefaultActions": record.default_actions,
    });
    if !record.certificates.is_empty() {
        value["Certificates"] = json!(record
            .certificates
            .iter()
            .map(|c| json!({"CertificateArn": c}))
            .collect::<Vec<_>>());
    }
    if let Some(policy) = &record.ssl_policy {
        value["SslPolicy"] = json!(policy);
    }
    if !record.alpn_policy.is_empty() {
        value["AlpnPolicy"] = json!(record.alpn_policy);
    }
    value
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Certificate {
    certificate_arn: Option<String>,
}

/// The listener members CreateListener and ModifyListener share.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListenerSettings {
    protocol: Option<String>,
    port: Option<i32>,
    ssl_policy: Option<String>,
    certificates: Option<Vec<Certificate>>,
    default_actions: Option<Vec<Action>>,
    alpn_policy: Option<Vec<String>>,
}

/// Apply `settings` to `record` (a new listener starts blank), checking what AWS checks.
async fn apply_settings(
    ctx: &Elbv2Context,
    lb: &LoadBalancerRecord,
    record: &mut ListenerRecord,
    settings: &ListenerSettings,
    topology: &Topology,
) -> Result<()> {
    let allowed = match lb.kind {
        LoadBalancerKind::Application => APPLICATION_PROTOCOLS,
        LoadBalancerKind::Network => NETWORK_PROTOCOLS,
    };
    if let Some(protocol) = &settings.protocol {
        if !allowed.contains(&protocol.as_str()) {
            return Err(invalid(format!(
                "Listener protocol '{protocol}' must be one of '{}'",
                allowed.join(", ")
            )));
        }
        record.protocol = protocol.clone();
    }
    if record.protocol.is_empty() {
        return Err(invalid("A listener protocol must be specified")); // guessed
    }
    if let Some(port) = settings.port {
        if !(1..=65535).contains(&port) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{port}' at 'port' failed to satisfy constraint: Member must have value between 1 and 65535"
            )));
        }
        record.port = port;
    }
    if record.port == 0 {
        return Err(invalid("A listener port must be specified")); // guessed
    }
    if let Some(certificates) = &settings.certificates {
        let arns: Vec<String> = certificates
            .iter()
            .filter_map(|c| c.certificate_arn.clone())
            .collect();
        if arns.len() > 1 {
            return Err(invalid(
                "A listener can have only one default certificate; add others with AddListenerCertificates", // guessed
            ));
        }
        for arn in &arns {
            ctx.certificate(arn).await?;
        }
        // A certificate made the default is no longer one of the others.
        record
            .additional_certificates
            .retain(|arn| !arns.contains(arn));
        record.certificates = arns;
    }
    if let Some(alpn) = &settings.alpn_policy {
        match alpn.as_slice() {
            [] => {}
            [policy] if ALPN_POLICIES.contains(&policy.as_str()) => {}
            _ => {
                return Err(Elbv2Error::AlpnPolicyNotFound(format!(
                    "ALPN policy '{}' not found", // guessed
                    alpn.join(", ")
                )));
            }
        }
        record.alpn_policy = alpn.clone();
    }
    let secure = matches!(record.protocol.as_str(), "HTTPS" | "TLS");
    if secure {
        if record.certificates.is_empty() {
            return Err(invalid(format!(
                "A certificate must be specified for {} listeners", // guessed
                record.protocol
            )));
        }
        let policy = settings
            .ssl_policy
            .clone()
            .or(record.ssl_policy.take())
            .unwrap_or_else(|| DEFAULT_SSL_POLICY.to_string());
        if !model::elb::SSL_POLICIES.contains(&policy.as_str()) {
            return Err(Elbv2Error::SslPolicyNotFound(format!(
                "SSL policy '{policy}' not found" // guessed
            )));
        }
        record.ssl_policy = Some(policy);
    } else {
        record.ssl_policy = None;
        record.certificates.clear();
        record.additional_certificates.clear();
    }
    if record.protocol != "TLS" {
        if settings.alpn_policy.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(invalid(format!(
                "ALPN policy is not supported for {} listeners", // guessed
                record.protocol
            )));
        }
        record.alpn_policy.clear();
    }
    let actions = match &settings.default_actions {
        Some(actions) => actions.clone(),
        // A protocol change re-checks the groups the listener already forwards to.
        None => record.default_actions.clone(),
    };
    record.default_actions = validate_actions(ctx, lb, &record.protocol, actions, topology).await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    load_balancer_arn: String,
    tags: Option<Vec<Tag>>,
    #[serde(flatten)]
    settings: ListenerSettings,
}

pub async fn create(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: CreateInput = parse(input)?;
    if input.settings.default_actions.is_none() {
        return Err(invalid(
            "1 validation error detected: Value null at 'defaultActions' failed to satisfy constraint: Member must not be null",
        ));
    }
    let tags = validate_tags(input.tags.as_deref().unwrap_or_default())?;
    for _ in 0..MAX_ATTEMPTS {
        let (lb, lb_revision) = ctx.load_balancer(&input.load_balancer_arn).await?;
        let topology = Topology::load(ctx).await?;
        let id = records::new_id();
        let arn = ctx.arn(&format!(
            "listener/{}/{}/{}/{id}",
            lb.type_segment(),
            lb.name,
            lb.id
        ));
        let mut record = ListenerRecord {
            arn,
            id: id.clone(),
            load_balancer_arn: lb.arn.clone(),
            load_balancer_id: lb.id.clone(),
            port: 0,
            protocol: String::new(),
            ssl_policy: None,
            certificates: Vec::new(),
            additional_certificates: Vec::new(),
            alpn_policy: Vec::new(),
            default_actions: Vec::new(),
            default_rule_id: records::new_id(),
            tags: tags.clone(),
            attributes: BTreeMap::new(),
        };
        apply_settings(ctx, &lb, &mut record, &input.settings, &topology).await?;
        if let Some((existing, _)) = topology
            .listeners
            .iter()
            .find(|(l, _)| l.load_balancer_id == lb.id && l.port == record.port)
        {
            // CreateListener is idempotent for the same settings.
            if existing.protocol == record.protocol
                && existing.default_actions == record.default_actions
            {
                return Ok(json!({"Listeners": [describe_value(existing)]}));
            }
            return Err(Elbv2Error::DuplicateListener(format!(
                "A listener already exists on this port for this load balancer '{}'",
                lb.arn
            )));
        }
        let Some((mut guards, mut ops)) = topology.claim_groups(&record.default_actions) else {
            continue;
        };
        claim_certificates(ctx, &record, &mut guards, &mut ops).await?;
        let lb_key = keys::load_balancer(&lb.name);
        let key = keys::listener(&lb.id, &id);
        // Re-putting the load balancer serialises listener creation per load balancer.
        guards.extend([(lb_key.clone(), lb_revision), (key.clone(), 0)]);
        ops.extend([put_json(&lb_key, &lb), put_json(&key, &record)]);
        if ctx.commit(&guards, ops).await? {
            tracing::info!(listener = %record.arn, port = record.port, "created listener");
            return Ok(json!({"Listeners": [describe_value(&record)]}));
        }
    }
    Err(conflict())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    load_balancer_arn: Option<String>,
    listener_arns: Option<Vec<String>>,
    marker: Option<String>,
    page_size: Option<i32>,
}

pub async fn describe(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: DescribeInput = parse(input)?;
    let arns = input.listener_arns.unwrap_or_default();
    let mut selected: Vec<ListenerRecord> = match (&input.load_balancer_arn, arns.is_empty()) {
        (Some(_), false) => {
            return Err(invalid(
                "Listener ARNs and a load balancer ARN cannot be specified at the same time",
            ))
        }
        (None, true) => {
            return Err(invalid(
                "You must specify either listener ARNs or a load balancer ARN",
            ))
        }
        (Some(lb), true) => {
            let (lb, _) = ctx.load_balancer(lb).await?;
            ctx.range_json::<ListenerRecord>(&format!("{}{}/", keys::LISTENER_PREFIX, lb.id))
                .await?
                .into_iter()
                .map(|(l, _)| l)
                .collect()
        }
        (None, false) => {
            let mut out = Vec::new();
            for arn in &arns {
                out.push(ctx.listener(arn).await?.0);
            }
            out
        }
    };
    selected.sort_by(|a, b| (a.port, &a.id).cmp(&(b.port, &b.id)));
    let (items, next) = page(
        ctx,
        "DescribeListeners",
        selected,
        |l| format!("{:05}/{}", l.port, l.id),
        input.marker.as_deref(),
        input.page_size,
    )?;
    let mut out = json!({"Listeners": items.iter().map(describe_value).collect::<Vec<_>>()});
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyInput {
    listener_arn: String,
    #[serde(flatten)]
    settings: ListenerSettings,
}

pub async fn modify(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ModifyInput = parse(input)?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut record, revision) = ctx.listener(&input.listener_arn).await?;
        let (lb, lb_revision) = ctx.load_balancer(&record.load_balancer_arn).await?;
        let topology = Topology::load(ctx).await?;
        apply_settings(ctx, &lb, &mut record, &input.settings, &topology).await?;
        if topology
            .listeners
            .iter()
            .any(|(l, _)| l.load_balancer_id == lb.id && l.port == record.port && l.id != record.id)
        {
            return Err(Elbv2Error::DuplicateListener(format!(
                "A listener already exists on this port for this load balancer '{}'",
                lb.arn
            )));
        }
        let Some((mut guards, mut ops)) = topology.claim_groups(&record.default_actions) else {
            continue;
        };
        claim_certificates(ctx, &record, &mut guards, &mut ops).await?;
        let lb_key = keys::load_balancer(&lb.name);
        let key = keys::listener(&lb.id, &record.id);
        guards.extend([(lb_key.clone(), lb_revision), (key.clone(), revision)]);
        ops.extend([put_json(&lb_key, &lb), put_json(&key, &record)]);
        if ctx.commit(&guards, ops).await? {
            return Ok(json!({"Listeners": [describe_value(&record)]}));
        }
    }
    Err(conflict())
}

/// Adds to a write of `record` a guard on, and an unchanged re-put of, each certificate it
/// uses: ACM's DeleteCertificate checks that no listener uses a certificate and deletes it on
/// the revision it read, so the two cannot both commit.
async fn claim_certificates(
    ctx: &Elbv2Context,
    record: &ListenerRecord,
    guards: &mut Vec<(String, i64)>,
    ops: &mut Vec<store::Op>,
) -> Result<()> {
    for arn in record
        .certificates
        .iter()
        .chain(&record.additional_certificates)
    {
        let (certificate, revision) = ctx.certificate(arn).await?;
        let key = crate::acm::records::certificate_key(&certificate.id);
        guards.push((key.clone(), revision));
        ops.push(put_json(&key, &certificate));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListenerCertificatesInput {
    listener_arn: String,
    certificates: Vec<Certificate>,
}

impl ListenerCertificatesInput {
    /// The one certificate ARN these calls take.
    fn arn(&self) -> Result<&str> {
        match self.certificates.as_slice() {
            [Certificate {
                certificate_arn: Some(arn),
            }] => Ok(arn),
            _ => Err(invalid(
                "You must specify exactly one certificate", // guessed
            )),
        }
    }
}

/// The listener `arn`, which must be an HTTPS or TLS one to hold certificates.
async fn secure_listener(ctx: &Elbv2Context, arn: &str) -> Result<(ListenerRecord, i64)> {
    let (record, revision) = ctx.listener(arn).await?;
    if !matches!(record.protocol.as_str(), "HTTPS" | "TLS") {
        return Err(Elbv2Error::OperationNotPermitted(format!(
            "Certificates can only be added to HTTPS and TLS listeners, not to '{}' listeners", // guessed
            record.protocol
        )));
    }
    Ok((record, revision))
}

/// AddListenerCertificates: a certificate besides the default, which SNI picks for the names
/// it covers. Adding one the listener has already changes nothing.
pub async fn add_certificates(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ListenerCertificatesInput = parse(input)?;
    let arn = input.arn()?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut record, revision) = secure_listener(ctx, &input.listener_arn).await?;
        ctx.certificate(arn).await?;
        let known = record.certificates.iter().any(|c| c == arn)
            || record.additional_certificates.iter().any(|c| c == arn);
        if !known {
            if record.additional_certificates.len() >= MAX_ADDITIONAL_CERTIFICATES {
                return Err(Elbv2Error::TooManyCertificates(format!(
                    "You've reached the limit on the number of certificates per load balancer ({MAX_ADDITIONAL_CERTIFICATES})" // guessed
                )));
            }
            record.additional_certificates.push(arn.to_string());
        }
        let key = keys::listener(&record.load_balancer_id, &record.id);
        let mut guards = vec![(key.clone(), revision)];
        let mut ops = vec![put_json(&key, &record)];
        claim_certificates(ctx, &record, &mut guards, &mut ops).await?;
        if ctx.commit(&guards, ops).await? {
            return Ok(json!({"Certificates": [{"CertificateArn": arn, "IsDefault": false}]}));
        }
    }
    Err(conflict())
}

/// RemoveListenerCertificates: one of the certificates added besides the default (the default
/// is replaced with ModifyListener, never removed).
pub async fn remove_certificates(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ListenerCertificatesInput = parse(input)?;
    let arn = input.arn()?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut record, revision) = secure_listener(ctx, &input.listener_arn).await?;
        if record.certificates.iter().any(|c| c == arn) {
            return Err(Elbv2Error::OperationNotPermitted(
                "The default certificate cannot be removed from a listener; replace it with ModifyListener".into(), // guessed
            ));
        }
        let before = record.additional_certificates.len();
        record.additional_certificates.retain(|c| c != arn);
        if record.additional_certificates.len() == before {
            return Ok(json!({}));
        }
        let key = keys::listener(&record.load_balancer_id, &record.id);
        if ctx
            .commit(&[(key.clone(), revision)], vec![put_json(&key, &record)])
            .await?
        {
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeCertificatesInput {
    listener_arn: String,
    marker: Option<String>,
    page_size: Option<i32>,
}

/// DescribeListenerCertificates: the default certificate (`IsDefault`) and the added ones.
pub async fn describe_certificates(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: DescribeCertificatesInput = parse(input)?;
    let (record, _) = ctx.listener(&input.listener_arn).await?;
    // The default first, then the others in the order they were added (the page position).
    let all: Vec<(usize, &String, bool)> = record
        .certificates
        .iter()
        .map(|c| (c, true))
        .chain(record.additional_certificates.iter().map(|c| (c, false)))
        .enumerate()
        .map(|(index, (arn, default))| (index, arn, default))
        .collect();
    let (shown, next) = page(
        ctx,
        &format!("listener-certificates/{}", record.arn),
        all,
        |(index, _, _)| format!("{index:04}"),
        input.marker.as_deref(),
        input.page_size,
    )?;
    let certificates: Vec<Value> = shown
        .iter()
        .map(|(_, arn, default)| json!({"CertificateArn": arn, "IsDefault": default}))
        .collect();
    let mut answer = json!({ "Certificates": certificates });
    if let Some(next) = next {
        answer["NextMarker"] = json!(next);
    }
    Ok(answer)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeSslPoliciesInput {
    names: Option<Vec<String>>,
    marker: Option<String>,
    page_size: Option<i32>,
    load_balancer_type: Option<String>,
}

/// DescribeSSLPolicies: ELBv2's security policies, each with what the data plane offers under
/// it (`model::elb::ssl_policy_protocols` and `TLS_CIPHERS`: rustls's versions and ciphers,
/// not AWS's lists; `docs/compat.md` says so).
pub async fn describe_ssl_policies(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: DescribeSslPoliciesInput = parse(input)?;
    let names = input.names.unwrap_or_default();
    if let Some(unknown) = names
        .iter()
        .find(|name| !model::elb::SSL_POLICIES.contains(&name.as_str()))
    {
        return Err(Elbv2Error::SslPolicyNotFound(format!(
            "SSL policy '{unknown}' not found" // guessed
        )));
    }
    // Every policy serves application and network load balancers; gateway ones have none.
    let types: &[&str] = match input.load_balancer_type.as_deref() {
        None | Some("application" | "network") => &["application", "network"],
        Some("gateway") => &[],
        Some(other) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{other}' at 'loadBalancerType' failed to satisfy constraint: Member must satisfy enum value set: [application, network, gateway]"
            )))
        }
    };
    let chosen: Vec<(usize, &str)> = model::elb::SSL_POLICIES
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, name)| {
            !types.is_empty() && (names.is_empty() || names.iter().any(|n| n == name))
        })
        .collect();
    let (shown, next) = page(
        ctx,
        "ssl-policies",
        chosen,
        |(index, _)| format!("{index:04}"),
        input.marker.as_deref(),
        input.page_size,
    )?;
    let policies: Vec<Value> = shown
        .iter()
        .map(|(_, name)| {
            let protocols = model::elb::ssl_policy_protocols(name);
            let ciphers: Vec<Value> = model::elb::TLS_CIPHERS
                .iter()
                .filter(|(version, _)| protocols.contains(version))
                .enumerate()
                .map(|(rank, (_, cipher))| json!({"Name": cipher, "Priority": rank + 1}))
                .collect();
            json!({
                "Name": name,
                "SslProtocols": protocols,
                "Ciphers": ciphers,
                "SupportedLoadBalancerTypes": ["application", "network"],
            })
        })
        .collect();
    let mut answer = json!({ "SslPolicies": policies });
    if let Some(next) = next {
        answer["NextMarker"] = json!(next);
    }
    Ok(answer)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArnInput {
    listener_arn: String,
}

pub async fn delete_listener(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ArnInput = parse(input)?;
    for _ in 0..MAX_ATTEMPTS {
        let (record, revision) = ctx.listener(&input.listener_arn).await?;
        let key = keys::listener(&record.load_balancer_id, &record.id);
        let mut guards = vec![(key.clone(), revision)];
        let mut ops = vec![delete_key(&key)];
        let rules = ctx
            .range_json::<records::RuleRecord>(&format!("{}{}/", keys::RULE_PREFIX, record.id))
            .await?;
        for (rule, rule_revision) in rules {
            let key = keys::rule(&record.id, &rule.id);
            guards.push((key.clone(), rule_revision));
            ops.push(delete_key(&key));
        }
        if ctx.commit(&guards, ops).await? {
            tracing::info!(listener = %record.arn, "deleted listener");
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

pub use delete_listener as delete;

/// The attributes DescribeListenerAttributes lists for a listener of `protocol`, with AWS's
/// defaults. TLS listeners have none to describe (AWS refuses the call for them).
fn default_attributes(protocol: &str) -> BTreeMap<String, String> {
    // HTTPS only: the names of the mutual-TLS request headers ALB adds (not served: no mutual
    // TLS), then of the TLS ones (`TLS_HEADER_ATTRIBUTES`).
    const REQUEST: &[(&str, &str)] = &[
        (
            "routing.http.request.x_amzn_mtls_clientcert_serial_number.header_name",
            "X-Amzn-Mtls-Clientcert-Serial-Number",
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert_issuer.header_name",
            "X-Amzn-Mtls-Clientcert-Issuer",
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert_subject.header_name",
            "X-Amzn-Mtls-Clientcert-Subject",
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert_validity.header_name",
            "X-Amzn-Mtls-Clientcert-Validity",
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert_leaf.header_name",
            "X-Amzn-Mtls-Clientcert-Leaf",
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert.header_name",
            "X-Amzn-Mtls-Clientcert",
        ),
    ];
    let tcp = [(
        "tcp.idle_timeout.seconds",
        NLB_TCP_IDLE_TIMEOUT_SECONDS.to_string(),
    )];
    // The response-header attributes, empty (no header set) by default.
    let response = || {
        std::iter::once((
            "routing.http.response.server.enabled".to_string(),
            "true".to_string(),
        ))
        .chain(
            RESPONSE_HEADER_ATTRIBUTES
                .iter()
                .map(|(key, _)| (key.to_string(), String::new())),
        )
        .collect::<Vec<_>>()
    };
    let owned = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let pairs = match protocol {
        "TCP" => tcp
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        "HTTP" => response(),
        "HTTPS" => [owned(REQUEST), owned(&TLS_HEADER_ATTRIBUTES), response()].concat(),
        _ => Vec::new(),
    };
    pairs.into_iter().collect()
}

/// The attributes naming the TLS request headers, with AWS's names.
const TLS_HEADER_ATTRIBUTES: [(&str, &str); 2] = [
    (
        "routing.http.request.x_amzn_tls_version.header_name",
        "X-Amzn-Tls-Version",
    ),
    (
        "routing.http.request.x_amzn_tls_cipher_suite.header_name",
        "X-Amzn-Tls-Cipher-Suite",
    ),
];

/// An HTTPS listener's names for the TLS version and cipher-suite headers, when either was
/// renamed (None: AWS's names).
pub(super) fn tls_header_names(record: &ListenerRecord) -> Option<(String, String)> {
    let [version, cipher_suite] = TLS_HEADER_ATTRIBUTES.map(|(key, default)| {
        record
            .attributes
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    });
    let renamed =
        version != TLS_HEADER_ATTRIBUTES[0].1 || cipher_suite != TLS_HEADER_ATTRIBUTES[1].1;
    (record.protocol == "HTTPS" && renamed).then_some((version, cipher_suite))
}

/// A TCP listener's `tcp.idle_timeout.seconds` (what was set, else AWS's 350); `None` for
/// other protocols.
pub(super) fn tcp_idle_timeout_seconds(record: &ListenerRecord) -> Option<u64> {
    (record.protocol == "TCP").then(|| {
        record
            .attributes
            .get("tcp.idle_timeout.seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(NLB_TCP_IDLE_TIMEOUT_SECONDS)
    })
}

/// A listener's attributes: the defaults for its protocol, with what was set on top.
pub(super) fn listener_attributes(record: &ListenerRecord) -> BTreeMap<String, String> {
    let mut attributes = default_attributes(&record.protocol);
    for (key, value) in &record.attributes {
        if let Some(slot) = attributes.get_mut(key) {
            slot.clone_from(value);
        }
    }
    attributes
}

/// What an HTTP or HTTPS listener's response-header attributes ask of the data plane.
pub(super) fn response_headers(record: &ListenerRecord) -> ResponseHeaderSettings {
    if !APPLICATION_PROTOCOLS.contains(&record.protocol.as_str()) {
        return ResponseHeaderSettings::default();
    }
    let get = |key: &str| record.attributes.get(key).map(String::as_str);
    ResponseHeaderSettings {
        set: RESPONSE_HEADER_ATTRIBUTES
            .iter()
            .filter_map(|(key, header)| {
                get(key)
                    .filter(|value| !value.is_empty())
                    .map(|value| (header.to_string(), value.to_string()))
            })
            .collect(),
        server: get("routing.http.response.server.enabled") != Some("false"),
    }
}

/// Checks a response header's value (`key` names its attribute): printable ASCII, and for
/// the headers with a fixed grammar, a value of that grammar. Empty turns the header off.
/// (AWS's limits and texts for these are not documented: the checks and the reasons given
/// are guessed.)
fn validate_response_header(key: &str, value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 1024
        || !value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err("it must be at most 1024 printable ASCII characters".into());
    }
    let header = key
        .trim_start_matches("routing.http.response.")
        .trim_end_matches(".header_value");
    const METHODS: [&str; 8] = [
        "GET", "HEAD", "POST", "DELETE", "CONNECT", "OPTIONS", "PUT", "PATCH",
    ];
    let ok = match header {
        "access_control_allow_credentials" => value == "true",
        "access_control_max_age" => value.parse::<u32>().is_ok(),
        "x_content_type_options" => value == "nosniff",
        "x_frame_options" => {
            matches!(value, "DENY" | "SAMEORIGIN")
                || value
                    .strip_prefix("ALLOW-FROM ")
                    .is_some_and(|uri| uri.starts_with("http://") || uri.starts_with("https://"))
        }
        "access_control_allow_methods" => value
            .split(',')
            .all(|method| METHODS.contains(&method.trim())),
        "access_control_allow_origin" => {
            value == "*"
                || ["http://", "https://"].iter().any(|scheme| {
                    value
                        .strip_prefix(scheme)
                        .is_some_and(|host| !host.is_empty() && !host.contains(['/', ' ', ',']))
                })
        }
        _ => true,
    };
    if ok {
        return Ok(());
    }
    Err(match header {
        "access_control_allow_credentials" => "the only value allowed is 'true'".into(),
        "access_control_max_age" => "it must be a number of seconds".into(),
        "x_content_type_options" => "the only value allowed is 'nosniff'".into(),
        "x_frame_options" => "it must be DENY, SAMEORIGIN or ALLOW-FROM <uri>".into(),
        "access_control_allow_methods" => {
            format!(
                "it must be a comma-separated list of {}",
                METHODS.join(", ")
            )
        }
        _ => "it must be '*' or one origin such as https://example.com".into(),
    })
}

/// Checks one attribute for a listener of `protocol`. The data plane applies the TCP idle
/// timeout and the response-header attributes; ALB's TLS request-header names are not
/// applied (no TLS is terminated), so only their defaults are accepted (rather than stored
/// and ignored).
fn validate_attribute(protocol: &str, key: &str, value: &str) -> Result<()> {
    let defaults = default_attributes(protocol);
    let Some(default) = defaults.get(key) else {
        return Err(invalid(format!(
            "Listener attribute key '{key}' is not recognized" // guessed
        )));
    };
    match key {
        "tcp.idle_timeout.seconds" => match value.parse::<u64>() {
            Ok(n) if (60..=6000).contains(&n) => Ok(()),
            _ => Err(Elbv2Error::InvalidConfigurationRequest(format!(
                "Listener attribute value '{value}' is not valid for key '{key}': it must be from 60 to 6000" // guessed
            ))),
        },
        "routing.http.response.server.enabled" => match value {
            "true" | "false" => Ok(()),
            _ => Err(Elbv2Error::InvalidConfigurationRequest(format!(
                "Listener attribute value '{value}' is not valid for key '{key}'" // guessed
            ))),
        },
        // A header name: a token (RFC 9110) of at most 40 characters. AWS's limits and
        // texts are not documented; guessed.
        _ if TLS_HEADER_ATTRIBUTES.iter().any(|(k, _)| *k == key) => {
            let token = !value.is_empty()
                && value.len() <= 40
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if token {
                Ok(())
            } else {
                Err(Elbv2Error::InvalidConfigurationRequest(format!(
                    "Listener attribute value '{value}' is not valid for key '{key}': it must be a header name of at most 40 letters, digits and hyphens" // guessed
                )))
            }
        }
        _ if RESPONSE_HEADER_ATTRIBUTES.iter().any(|(k, _)| *k == key) => {
            validate_response_header(key, value).map_err(|why| {
                Elbv2Error::InvalidConfigurationRequest(format!(
                    "Listener attribute value '{value}' is not valid for key '{key}': {why}" // guessed
                ))
            })
        }
        _ if value == default => Ok(()),
        _ => Err(Elbv2Error::InvalidConfigurationRequest(format!(
            "Listener attribute '{key}' is not supported by Wharf's load balancer: only its default '{default}' is accepted"
        ))),
    }
}

pub async fn describe_attributes(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ArnInput = parse(input)?;
    let (record, _) = ctx.listener(&input.listener_arn).await?;
    if record.protocol == "TLS" {
        return Err(Elbv2Error::InvalidConfigurationRequest(
            "Listener attributes are not supported for TLS listeners".into(), // guessed
        ));
    }
    Ok(attributes_value(&listener_attributes(&record)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyAttributesInput {
    listener_arn: String,
    attributes: Vec<AttributeInput>,
}

pub async fn modify_attributes(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ModifyAttributesInput = parse(input)?;
    require_attributes(&input.attributes)?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut record, revision) = ctx.listener(&input.listener_arn).await?;
        let protocol = record.protocol.clone();
        set_attributes(&input.attributes, &mut record.attributes, |key, value| {
            validate_attribute(&protocol, key, value)
        })?;
        let key = keys::listener(&record.load_balancer_id, &record.id);
        if ctx
            .commit(&[(key.clone(), revision)], vec![put_json(&key, &record)])
            .await?
        {
            return Ok(attributes_value(&listener_attributes(&record)));
        }
    }
    Err(conflict())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_pair_as_aws_allows() {
        assert!(compatible("HTTP", "HTTPS"));
        assert!(!compatible("HTTP", "TCP"));
        assert!(compatible("TLS", "TCP"));
        assert!(compatible("UDP", "TCP_UDP"));
        assert!(!compatible("TCP_UDP", "TCP"));
    }

    #[test]
    fn redirects_get_aws_defaults() {
        let config = redirect(Some(RedirectConfig {
            protocol: Some("HTTPS".into()),
            status_code: "HTTP_301".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(config.port.as_deref(), Some("#{port}"));
        assert_eq!(config.path.as_deref(), Some("/#{path}"));
        assert!(redirect(Some(RedirectConfig {
            status_code: "HTTP_301".into(),
            ..Default::default()
        }))
        .is_err());
        assert!(redirect(Some(RedirectConfig {
            status_code: "HTTP_307".into(),
            host: Some("x".into()),
            ..Default::default()
        }))
        .is_err());
    }
}
