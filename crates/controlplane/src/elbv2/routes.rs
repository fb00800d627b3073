//! The server side of the load-balancer protocol (`model::elb`): `GetRoutes` builds the whole
//! route snapshot from the store and long-polls for changes; `ReportTargetHealth` records
//! observed target health and load-balancer state transitions; `ReportRequestMetrics` stores
//! request metrics in CloudWatch's metric store.
//!
//! Reports arrive every few seconds, so they write only what changed: a target's `since_ms`
//! moves only when its state does, and an unchanged report writes nothing. Targets whose
//! draining ended are pruned from their group when a report touches it, which makes the
//! data plane's reports the periodic sweep (they are already invisible through
//! `RegisteredTarget::present`).
//!
//! Observed health is one record per group, whoever reports it: with several data-plane nodes
//! the last report wins (each node checks every target, so they agree but for moments of
//! change). A node reporting a load balancer failed does not take an active one back.

use std::collections::BTreeMap;
use std::time::Duration;

use metricstore::{MetricKey, Point, Resolution, Sample};
use model::elb::{
    keys, GetRoutesInput, HttpAttributes, ListenerRoutes, ListenerTls, LoadBalancerKind,
    LoadBalancerRoutes, ObservedTargetHealth, QueryStringPair, ReportRequestMetricsInput,
    ReportTargetHealthInput, RouteAction, RouteCondition, RouteRule, RouteSnapshot, RouteTarget,
    ServerCertificate, Stickiness, TargetGroupRecord, TargetGroupRoutes, TargetHealthRecord,
    WeightedTargetGroup, MAX_ROUTES_WAIT_SECONDS, NLB_TCP_IDLE_TIMEOUT_SECONDS,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use store::{Event, StoreError};
use tracing::{debug, info, warn};

use super::error::{invalid, Result};
use super::records::{
    parse_load_balancer_arn, Action, ListenerRecord, LoadBalancerRecord, RuleCondition, RuleRecord,
};
use super::{put_json, Elbv2Context, Elbv2Error};
use crate::acm::records::{CertificateRecord, CERTIFICATE_PREFIX};
use crate::ecs::cluster_state::InstanceRecord;
// Instance targets are resolved to the host address of their container instance.
use crate::ecs::keys::CONTAINER_INSTANCE_PREFIX;

/// Run one load-balancer protocol operation; `None` when the operation is unknown.
pub async fn dispatch(
    ctx: &Elbv2Context,
    operation: &str,
    input: Value,
) -> Option<Result<Value, Elbv2Error>> {
    Some(match operation {
        "GetRoutes" => get_routes(ctx, input).await,
        "ReportTargetHealth" => report_target_health(ctx, input).await,
        "ReportRequestMetrics" => report_request_metrics(ctx, input).await,
        _ => return None,
    })
}

fn parse_json<T: DeserializeOwned>(input: Value) -> Result<T> {
    serde_json::from_value(input).map_err(|e| Elbv2Error::Serialization(e.to_string()))
}

// ---- GetRoutes ----

async fn get_routes(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: GetRoutesInput = parse_json(input)?;
    let wait = Duration::from_secs(input.wait_seconds.min(MAX_ROUTES_WAIT_SECONDS));
    if input.since_revision > 0 && !wait.is_zero() {
        wait_for_change(ctx, input.since_revision, wait).await?;
    }
    let snapshot = build_snapshot(ctx).await?;
    Ok(serde_json::to_value(&snapshot).unwrap_or(Value::Null))
}

/// Whether an event changes what a snapshot holds: an ELBv2 record whose snapshot view
/// (`snapshot_view`) changed, and a container instance's identity or address (not its
/// resource bookkeeping, which every task placement rewrites). Every data plane long-polls,
/// so a write that changes nothing they route by (tags, a state report, a target group
/// re-put unchanged to claim it) must not wake them all.
fn relevant(event: &Event) -> bool {
    let key = &event.kv.key;
    if key.starts_with(keys::PREFIX) {
        let now = snapshot_view(key, &event.kv.value);
        let before = event
            .prev
            .as_ref()
            .map(|p| snapshot_view(key, &p.value))
            .unwrap_or(SnapshotView::Absent);
        return now != before;
    }
    if key.starts_with(CERTIFICATE_PREFIX) {
        // What a listener's TLS is built from (not tags, nor the unchanged re-put that claims
        // a certificate for a listener).
        let served = |bytes: &[u8]| {
            serde_json::from_slice::<CertificateRecord>(bytes)
                .ok()
                .map(|c| {
                    (
                        c.arn,
                        c.details.subject_alternative_names,
                        c.details.certificate_pem,
                        c.details.chain_pem,
                        c.details.private_key_pem,
                    )
                })
        };
        return served(&event.kv.value) != event.prev.as_ref().and_then(|p| served(&p.value));
    }
    if key.starts_with(CONTAINER_INSTANCE_PREFIX) {
        let identity = |bytes: &[u8]| {
            serde_json::from_slice::<InstanceRecord>(bytes)
                .ok()
                .map(|r| {
                    (
                        r.instance.ec2_instance_id,
                        r.wharf_private_ip,
                        r.instance.status,
                    )
                })
        };
        let now = identity(&event.kv.value);
        let before = event.prev.as_ref().and_then(|p| identity(&p.value));
        return now != before;
    }
    false
}

/// What a snapshot shows of one stored ELBv2 record.
#[derive(Debug, PartialEq)]
enum SnapshotView {
    /// Not in the snapshot: absent (deleted), unreadable, or a key it never reads.
    Absent,
    /// The record's members the snapshot reads.
    Record(Value),
    /// A key this function does not know: every write to it counts as a change.
    Unknown,
}

fn snapshot_view(key: &str, bytes: &[u8]) -> SnapshotView {
    fn view<T: DeserializeOwned>(bytes: &[u8], project: impl FnOnce(T) -> Value) -> SnapshotView {
        serde_json::from_slice::<T>(bytes)
            .map(|r| SnapshotView::Record(project(r)))
            .unwrap_or(SnapshotView::Absent)
    }
    if key.starts_with(keys::LOAD_BALANCER_PREFIX) {
        // Not its state, state reason, tags or other attributes: `build_snapshot` reads these.
        view(bytes, |r: LoadBalancerRecord| {
            json!([
                r.arn,
                r.name,
                r.id,
                r.kind,
                r.address,
                r.attributes.get("idle_timeout.timeout_seconds"),
                serde_json::to_value(http_attributes(&r)).unwrap_or(Value::Null),
            ])
        })
    } else if key.starts_with(keys::TARGET_GROUP_PREFIX) {
        view(bytes, |mut r: TargetGroupRecord| {
            r.tags.clear();
            r.created_at_ms = 0;
            serde_json::to_value(r).unwrap_or(Value::Null)
        })
    } else if key.starts_with(keys::LISTENER_PREFIX) {
        view(bytes, |mut r: ListenerRecord| {
            r.tags.clear();
            serde_json::to_value(r).unwrap_or(Value::Null)
        })
    } else if key.starts_with(keys::RULE_PREFIX) {
        view(bytes, |mut r: RuleRecord| {
            r.tags.clear();
            serde_json::to_value(r).unwrap_or(Value::Null)
        })
    } else if key.starts_with(keys::HEALTH_PREFIX) || key.starts_with(&super::address_key("")) {
        // Observed health and address reservations are not routes.
        SnapshotView::Absent
    } else {
        SnapshotView::Unknown
    }
}

/// Wait until something a snapshot depends on changed after `since`, or `wait` passed.
async fn wait_for_change(ctx: &Elbv2Context, since: i64, wait: Duration) -> Result<()> {
    let current = ctx.store.revision().await?;
    if since > current {
        // A revision from another store (the server's was reset): answer at once.
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + wait;
    // Watches replay the history after `since` first, so a change the data plane has not seen
    // yet wakes it at once.
    let mut elb = match ctx.store.watch(keys::PREFIX, since).await {
        Ok(w) => w,
        Err(StoreError::Compacted { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut instances = match ctx.store.watch(CONTAINER_INSTANCE_PREFIX, since).await {
        Ok(w) => w,
        Err(StoreError::Compacted { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // A re-imported certificate reaches the listeners using it.
    let mut certificates = match ctx.store.watch(CERTIFICATE_PREFIX, since).await {
        Ok(w) => w,
        Err(StoreError::Compacted { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let _ = tokio::time::timeout_at(deadline, async {
        loop {
            let batch = tokio::select! {
                batch = elb.events.recv() => batch,
                batch = instances.events.recv() => batch,
                batch = certificates.events.recv() => batch,
            };
            match batch {
                Some(Ok(events)) if !events.iter().any(relevant) => continue,
                // A relevant change, an error (compaction) or a closed watch: answer now.
                _ => return,
            }
        }
    })
    .await;
    Ok(())
}

/// The whole snapshot as the store holds it now.
pub(super) async fn build_snapshot(ctx: &Elbv2Context) -> Result<RouteSnapshot> {
    // The revision before any read: a change after it is either in what is read below or
    // replayed to the next long poll (which then answers at once), never lost.
    let revision = ctx.store.revision().await?;
    let load_balancers: Vec<(LoadBalancerRecord, i64)> =
        ctx.range_json(keys::LOAD_BALANCER_PREFIX).await?;
    let listeners: Vec<(ListenerRecord, i64)> = ctx.range_json(keys::LISTENER_PREFIX).await?;
    let rules: Vec<(RuleRecord, i64)> = ctx.range_json(keys::RULE_PREFIX).await?;
    let groups: Vec<(TargetGroupRecord, i64)> = ctx.range_json(keys::TARGET_GROUP_PREFIX).await?;
    let instances: Vec<(InstanceRecord, i64)> = ctx.range_json(CONTAINER_INSTANCE_PREFIX).await?;
    let certificates: Vec<(CertificateRecord, i64)> = ctx.range_json(CERTIFICATE_PREFIX).await?;
    let certificates: BTreeMap<&str, &CertificateRecord> = certificates
        .iter()
        .map(|(c, _)| (c.arn.as_str(), c))
        .collect();
    let now = ctx.now_ms();

    let mut rules_by_listener: BTreeMap<&str, Vec<&RuleRecord>> = BTreeMap::new();
    for (rule, _) in &rules {
        rules_by_listener
            .entry(rule.listener_id.as_str())
            .or_default()
            .push(rule);
    }
    let mut out = RouteSnapshot {
        revision,
        now_ms: now,
        ..Default::default()
    };
    for (lb, _) in &load_balancers {
        let mut lb_listeners: Vec<&ListenerRecord> = listeners
            .iter()
            .map(|(l, _)| l)
            .filter(|l| l.load_balancer_id == lb.id)
            .collect();
        lb_listeners.sort_by_key(|l| l.port);
        let mut routes = Vec::new();
        for listener in lb_listeners {
            let mut listener_rules = rules_by_listener
                .get(listener.id.as_str())
                .cloned()
                .unwrap_or_default();
            listener_rules.sort_by_key(|r| r.priority);
            let mut route_rules: Vec<RouteRule> = listener_rules
                .iter()
                .filter_map(|r| {
                    Some(RouteRule {
                        arn: r.arn.clone(),
                        priority: Some(r.priority),
                        conditions: r.conditions.iter().filter_map(route_condition).collect(),
                        action: route_action(&r.actions)?,
                    })
                })
                .collect();
            if let Some(action) = route_action(&listener.default_actions) {
                route_rules.push(RouteRule {
                    arn: listener.default_rule_arn(),
                    priority: None,
                    conditions: Vec::new(),
                    action,
                });
            }
            routes.push(ListenerRoutes {
                arn: listener.arn.clone(),
                port: u16::try_from(listener.port).unwrap_or_default(),
                protocol: listener.protocol.clone(),
                rules: route_rules,
                idle_timeout_seconds: super::listeners::tcp_idle_timeout_seconds(listener),
                response_headers: super::listeners::response_headers(listener),
                tls: listener_tls(listener, &certificates),
                tls_header_names: super::listeners::tls_header_names(listener),
            });
        }
        out.load_balancers.push(LoadBalancerRoutes {
            arn: lb.arn.clone(),
            name: lb.name.clone(),
            kind: lb.kind,
            address: lb.address.clone(),
            dimension: lb.dimension(),
            idle_timeout_seconds: match lb.kind {
                LoadBalancerKind::Application => lb
                    .attributes
                    .get("idle_timeout.timeout_seconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(60),
                // AWS's idle timeout for NLB TCP flows (a listener's own
                // `tcp.idle_timeout.seconds` overrides it).
                LoadBalancerKind::Network => NLB_TCP_IDLE_TIMEOUT_SECONDS,
            },
            listeners: routes,
            http: http_attributes(lb),
        });
    }
    // ec2InstanceId → host address of the registered container instances.
    let mut hosts: BTreeMap<String, String> = BTreeMap::new();
    for (record, _) in instances {
        if record.instance.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        if let Some(id) = record.instance.ec2_instance_id {
            let ip = record
                .wharf_private_ip
                .unwrap_or_else(|| "127.0.0.1".into());
            hosts.insert(id, ip);
        }
    }
    for (group, _) in &groups {
        out.target_groups.push(group_routes(group, &hosts, now));
    }
    Ok(out)
}

/// What an HTTPS or TLS listener terminates TLS with: its default certificate first, then
/// the added ones. A certificate missing from ACM is left out (the data plane reports a
/// listener left with none as failed).
fn listener_tls(
    listener: &ListenerRecord,
    certificates: &BTreeMap<&str, &CertificateRecord>,
) -> Option<ListenerTls> {
    if !matches!(listener.protocol.as_str(), "HTTPS" | "TLS") {
        return None;
    }
    let certificates = listener
        .certificates
        .iter()
        .chain(&listener.additional_certificates)
        .filter_map(|arn| certificates.get(arn.as_str()))
        .map(|certificate| {
            let mut chain_pem = certificate.details.certificate_pem.clone();
            if !chain_pem.ends_with('\n') {
                chain_pem.push('\n');
            }
            chain_pem.push_str(&certificate.details.chain_pem);
            ServerCertificate {
                arn: certificate.arn.clone(),
                names: certificate.details.subject_alternative_names.clone(),
                chain_pem,
                private_key_pem: certificate.details.private_key_pem.clone(),
            }
        })
        .collect();
    Some(ListenerTls {
        ssl_policy: listener.ssl_policy.clone().unwrap_or_default(),
        certificates,
        alpn_policy: listener
            .alpn_policy
            .first()
            .filter(|policy| *policy != "None")
            .cloned(),
    })
}

/// An ALB's request-handling attributes, AWS's defaults for what is not set.
fn http_attributes(lb: &LoadBalancerRecord) -> HttpAttributes {
    let defaults = HttpAttributes::default();
    if lb.kind != LoadBalancerKind::Application {
        return defaults;
    }
    let get = |key: &str| lb.attributes.get(key).map(String::as_str);
    let flag = |key: &str, default: bool| get(key).map_or(default, |v| v == "true");
    HttpAttributes {
        xff_mode: get("routing.http.xff_header_processing.mode")
            .unwrap_or(&defaults.xff_mode)
            .to_string(),
        xff_client_port: flag("routing.http.xff_client_port.enabled", false),
        drop_invalid_header_fields: flag("routing.http.drop_invalid_header_fields.enabled", false),
        preserve_host_header: flag("routing.http.preserve_host_header.enabled", false),
        http2: flag("routing.http2.enabled", true),
        client_keep_alive_seconds: get("client_keep_alive.seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.client_keep_alive_seconds),
        tls_version_and_cipher_suite: flag(
            "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
            false,
        ),
    }
}

fn group_routes(
    group: &TargetGroupRecord,
    hosts: &BTreeMap<String, String>,
    now: i64,
) -> TargetGroupRoutes {
    let attribute = |key: &str| group.attributes.get(key).map(String::as_str);
    let delay = group.deregistration_delay_seconds();
    let stickiness = match (
        attribute("stickiness.enabled"),
        attribute("stickiness.type"),
    ) {
        (Some("true"), Some(kind @ ("lb_cookie" | "app_cookie"))) => Some(Stickiness {
            kind: kind.to_string(),
            duration_seconds: attribute(&format!("stickiness.{kind}.duration_seconds"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(86_400),
            cookie_name: (kind == "app_cookie")
                .then(|| attribute("stickiness.app_cookie.cookie_name").map(str::to_string))
                .flatten(),
        }),
        (Some("true"), Some("source_ip")) => Some(Stickiness {
            kind: "source_ip".to_string(),
            duration_seconds: 0,
            cookie_name: None,
        }),
        _ => None,
    };
    let mut targets = Vec::new();
    for target in group.targets.iter().filter(|t| t.present(now, delay)) {
        let host = if group.target_type == "ip" {
            target.id.clone()
        } else if let Some(host) = hosts.get(&target.id) {
            host.clone()
        } else {
            debug!(
                target = target.id,
                group = group.arn,
                "instance target without a registered container instance"
            );
            continue;
        };
        let Ok(port) = u16::try_from(target.port) else {
            continue;
        };
        targets.push(RouteTarget {
            id: target.id.clone(),
            port,
            address: format!("{host}:{port}"),
            availability_zone: target.availability_zone.clone(),
            draining_until_ms: target.deregistered_at_ms.map(|at| at + delay * 1000),
            registered_at_ms: Some(target.registered_at_ms),
        });
    }
    TargetGroupRoutes {
        arn: group.arn.clone(),
        name: group.name.clone(),
        dimension: format!("targetgroup/{}/{}", group.name, group.id),
        protocol: group.protocol.clone().unwrap_or_default(),
        protocol_version: group.protocol_version.clone(),
        health_check: group.health_check.clone(),
        deregistration_delay_seconds: u64::try_from(delay).unwrap_or_default(),
        slow_start_seconds: attribute("slow_start.duration_seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        stickiness,
        algorithm: attribute("load_balancing.algorithm.type")
            .unwrap_or("round_robin")
            .to_string(),
        targets,
        proxy_protocol_v2: attribute("proxy_protocol_v2.enabled") == Some("true"),
        connection_termination: attribute("deregistration_delay.connection_termination.enabled")
            == Some("true"),
    }
}

fn route_condition(condition: &RuleCondition) -> Option<RouteCondition> {
    let values = |c: &Option<super::records::ValuesConfig>| {
        c.as_ref()
            .and_then(|c| c.values.clone())
            .or_else(|| condition.values.clone())
            .unwrap_or_default()
    };
    Some(match condition.field.as_deref()? {
        "path-pattern" => RouteCondition::PathPattern {
            values: values(&condition.path_pattern_config),
        },
        "host-header" => RouteCondition::HostHeader {
            values: values(&condition.host_header_config),
        },
        "http-request-method" => RouteCondition::HttpRequestMethod {
            values: values(&condition.http_request_method_config),
        },
        "source-ip" => RouteCondition::SourceIp {
            values: values(&condition.source_ip_config),
        },
        "http-header" => {
            let config = condition.http_header_config.as_ref()?;
            RouteCondition::HttpHeader {
                name: config.http_header_name.clone()?,
                values: config.values.clone().unwrap_or_default(),
            }
        }
        "query-string" => RouteCondition::QueryString {
            values: condition
                .query_string_config
                .as_ref()?
                .values
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(QueryStringPair {
                        key: p.key.clone(),
                        value: p.value.clone()?,
                    })
                })
                .collect(),
        },
        _ => return None,
    })
}

/// The terminal action of a rule (the one with the highest order, as actions run in order).
fn route_action(actions: &[Action]) -> Option<RouteAction> {
    let action = actions.iter().max_by_key(|a| a.order.unwrap_or(0))?;
    Some(match action.kind.as_str() {
        "forward" => {
            let config = action.forward_config.as_ref();
            let mut target_groups: Vec<WeightedTargetGroup> = config
                .and_then(|c| c.target_groups.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some(WeightedTargetGroup {
                        arn: t.target_group_arn.clone()?,
                        weight: u32::try_from(t.weight.unwrap_or(1)).unwrap_or(0),
                    })
                })
                .collect();
            if target_groups.is_empty() {
                target_groups.push(WeightedTargetGroup {
                    arn: action.target_group_arn.clone()?,
                    weight: 1,
                });
            }
            let stickiness = config.and_then(|c| c.target_group_stickiness_config.as_ref());
            RouteAction::Forward {
                target_groups,
                stickiness_seconds: stickiness
                    .filter(|s| s.enabled == Some(true))
                    .and_then(|s| s.duration_seconds)
                    .and_then(|d| u64::try_from(d).ok()),
            }
        }
        "redirect" => {
            let config = action.redirect_config.clone()?;
            RouteAction::Redirect {
                protocol: config.protocol.unwrap_or_else(|| "#{protocol}".into()),
                host: config.host.unwrap_or_else(|| "#{host}".into()),
                port: config.port.unwrap_or_else(|| "#{port}".into()),
                path: config.path.unwrap_or_else(|| "/#{path}".into()),
                query: config.query.unwrap_or_else(|| "#{query}".into()),
                status_code: if config.status_code == "HTTP_301" {
                    301
                } else {
                    302
                },
            }
        }
        "fixed-response" => {
            let config = action.fixed_response_config.clone()?;
            RouteAction::FixedResponse {
                status_code: config.status_code.parse().ok()?,
                content_type: config.content_type,
                message_body: config.message_body,
            }
        }
        _ => return None,
    })
}

// ---- ReportTargetHealth ----

const REPORTED_STATES: &[&str] = &["initial", "healthy", "unhealthy"];
/// Compare-and-swap attempts per record before a report gives up on it (the next report,
/// seconds later, carries the same information).
const REPORT_ATTEMPTS: usize = 4;

async fn report_target_health(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ReportTargetHealthInput = parse_json(input)?;
    for report in &input.target_groups {
        for _ in 0..REPORT_ATTEMPTS {
            if skip_unreadable(record_group_health(ctx, report).await, &report.arn)? {
                break;
            }
        }
    }
    for arn in &input.active_load_balancers {
        for _ in 0..REPORT_ATTEMPTS {
            if skip_unreadable(set_state(ctx, arn, "active", None).await, arn)? {
                break;
            }
        }
    }
    for failure in &input.failed_load_balancers {
        for _ in 0..REPORT_ATTEMPTS {
            let result = set_state(ctx, &failure.arn, "failed", Some(&failure.reason)).await;
            if skip_unreadable(result, &failure.arn)? {
                break;
            }
        }
    }
    Ok(json!({}))
}

/// One record that does not decode (`get_json`'s `Internal`) must not cost the other groups
/// and load balancers of the report their update: it is logged and skipped (as done, `true`).
/// Store failures still fail the report, which the data plane retries.
fn skip_unreadable(result: Result<bool>, arn: &str) -> Result<bool> {
    match result {
        Err(Elbv2Error::Internal(error)) => {
            warn!(
                resource = arn,
                error, "health report skipped an unreadable record"
            );
            Ok(true)
        }
        other => other,
    }
}

/// Merge one group's report into its health record (and prune its drained targets); `false`
/// when a concurrent writer won and the caller should retry.
async fn record_group_health(
    ctx: &Elbv2Context,
    report: &model::elb::TargetGroupHealthReport,
) -> Result<bool> {
    let Some((name, _)) = model::elb::parse_target_group_arn(&report.arn) else {
        return Ok(true);
    };
    let group_key = keys::target_group(name);
    let Some((mut group, group_revision)) = ctx.get_json::<TargetGroupRecord>(&group_key).await?
    else {
        return Ok(true);
    };
    if group.arn != report.arn {
        return Ok(true);
    }
    let now = ctx.now_ms();
    let health_key = keys::target_health(&group.id);
    let (old, health_revision) = ctx
        .get_json::<TargetHealthRecord>(&health_key)
        .await?
        .unwrap_or_default();
    let pruned = group.prune(now);
    let delay = group.deregistration_delay_seconds();
    let present: BTreeMap<String, &model::elb::RegisteredTarget> = group
        .targets
        .iter()
        .filter(|t| t.present(now, delay))
        .map(|t| (t.key(), t))
        .collect();
    let mut new = TargetHealthRecord::default();
    for (key, observed) in &old.targets {
        if present.contains_key(key) {
            new.targets.insert(key.clone(), observed.clone());
        }
    }
    for target in &report.targets {
        let key = model::elb::target_key(&target.id, target.port);
        let Some(registered) = present.get(&key) else {
            continue;
        };
        if !REPORTED_STATES.contains(&target.state.as_str()) {
            continue;
        }
        // Checks of an earlier registration say nothing about this one.
        if target
            .registered_at_ms
            .is_some_and(|at| at != registered.registered_at_ms)
        {
            continue;
        }
        // An observation of an earlier target with this key does not carry over.
        let since_ms = match old.observed(registered) {
            Some(o) if o.state == target.state => o.since_ms,
            _ => now,
        };
        new.targets.insert(
            key,
            ObservedTargetHealth {
                state: target.state.clone(),
                reason: target.reason.clone().filter(|_| target.state != "healthy"),
                description: target
                    .description
                    .clone()
                    .filter(|_| target.state != "healthy"),
                since_ms,
            },
        );
    }
    let mut guards = Vec::new();
    let mut ops = Vec::new();
    if new != old {
        guards.push((health_key.clone(), health_revision));
        ops.push(put_json(&health_key, &new));
    }
    if pruned {
        guards.push((group_key.clone(), group_revision));
        ops.push(put_json(&group_key, &group));
    }
    if ops.is_empty() {
        return Ok(true);
    }
    // The health record exists only once written: guard its absence by revision 0.
    ctx.commit(&guards, ops).await
}

/// Move a load balancer to `state`; `false` when a concurrent writer won.
async fn set_state(
    ctx: &Elbv2Context,
    arn: &str,
    state: &str,
    reason: Option<&str>,
) -> Result<bool> {
    let Some((name, _)) = parse_load_balancer_arn(arn) else {
        return Ok(true);
    };
    let key = keys::load_balancer(name);
    let Some((mut record, revision)) = ctx.get_json::<LoadBalancerRecord>(&key).await? else {
        return Ok(true);
    };
    if record.arn != arn {
        return Ok(true);
    }
    // A node that cannot serve an active load balancer does not take it from the others; and
    // a failed one keeps the first reason reported until its state changes, rather than
    // flipping between the reasons of several nodes on every report.
    if state == "failed" && matches!(record.state.as_str(), "active" | "failed") {
        return Ok(true);
    }
    let reason = reason.map(str::to_string);
    if record.state == state && record.state_reason == reason {
        return Ok(true);
    }
    info!(
        load_balancer = arn,
        from = record.state,
        to = state,
        "load balancer state changed"
    );
    record.state = state.to_string();
    record.state_reason = reason;
    ctx.commit(&[(key.clone(), revision)], vec![put_json(&key, &record)])
        .await
}

// ---- ReportRequestMetrics ----

const NAMESPACES: &[&str] = &["AWS/ApplicationELB", "AWS/NetworkELB"];

/// Whether a datum can be stored: every statistic finite and some samples. A non-finite one,
/// stored, would poison every aggregate read over its period, so it is dropped.
fn usable(datum: &model::elb::MetricDatum) -> bool {
    [datum.sample_count, datum.sum, datum.minimum, datum.maximum]
        .iter()
        .all(|v| v.is_finite())
        && datum.sample_count > 0.0
}

async fn report_request_metrics(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ReportRequestMetricsInput = parse_json(input)?;
    let mut samples = Vec::new();
    for datum in input.datums {
        if !NAMESPACES.contains(&datum.namespace.as_str()) {
            return Err(invalid(format!(
                "Namespace '{}' is not a load balancer namespace",
                datum.namespace
            )));
        }
        if !usable(&datum) {
            continue;
        }
        samples.push(Sample {
            key: MetricKey::new(datum.namespace, datum.metric_name, datum.dimensions),
            point: Point {
                timestamp_ms: datum.timestamp_ms,
                count: datum.sample_count,
                sum: datum.sum,
                min: datum.minimum,
                max: datum.maximum,
            },
            unit: datum.unit,
            resolution: Resolution::Standard,
        });
    }
    if samples.is_empty() {
        return Ok(json!({}));
    }
    let metrics = ctx.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.put(samples)).await {
        Ok(Ok(())) => Ok(json!({})),
        Ok(Err(e)) => Err(Elbv2Error::Internal(format!(
            "cannot store request metrics: {e}"
        ))),
        Err(e) => Err(Elbv2Error::Internal(format!(
            "the metric writer panicked: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::{ForwardConfig, RedirectConfig, TargetGroupTuple};
    use super::*;

    #[test]
    fn actions_become_route_actions() {
        let forward = Action {
            kind: "forward".into(),
            forward_config: Some(ForwardConfig {
                target_groups: Some(vec![
                    TargetGroupTuple {
                        target_group_arn: Some("a".into()),
                        weight: Some(90),
                    },
                    TargetGroupTuple {
                        target_group_arn: Some("b".into()),
                        weight: Some(10),
                    },
                ]),
                target_group_stickiness_config: None,
            }),
            ..Default::default()
        };
        match route_action(&[forward]).unwrap() {
            RouteAction::Forward { target_groups, .. } => {
                assert_eq!(target_groups.len(), 2);
                assert_eq!(target_groups[0].weight, 90);
            }
            other => panic!("{other:?}"),
        }
        let redirect = Action {
            kind: "redirect".into(),
            redirect_config: Some(RedirectConfig {
                protocol: Some("HTTPS".into()),
                status_code: "HTTP_301".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            route_action(&[redirect]),
            Some(RouteAction::Redirect {
                status_code: 301,
                ..
            })
        ));
    }

    fn datum(sample_count: f64, minimum: f64, maximum: f64) -> model::elb::MetricDatum {
        model::elb::MetricDatum {
            namespace: "AWS/ApplicationELB".into(),
            metric_name: "TargetResponseTime".into(),
            dimensions: Vec::new(),
            timestamp_ms: 0,
            unit: "Seconds".into(),
            sample_count,
            sum: 1.0,
            minimum,
            maximum,
        }
    }

    #[test]
    fn datums_need_every_statistic_finite() {
        assert!(usable(&datum(2.0, 0.1, 0.9)));
        assert!(!usable(&datum(2.0, f64::NAN, 0.9)));
        assert!(!usable(&datum(2.0, 0.1, f64::INFINITY)));
        assert!(!usable(&datum(f64::INFINITY, 0.1, 0.9)));
        assert!(!usable(&datum(f64::NAN, 0.1, 0.9)));
        assert!(!usable(&datum(-1.0, 0.1, 0.9)));
        assert!(!usable(&datum(0.0, 0.1, 0.9)));
    }

    fn event(key: &str, now: &[u8], before: Option<&[u8]>) -> Event {
        let kv = |value: &[u8]| store::KeyValue {
            key: key.to_string(),
            value: bytes::Bytes::copy_from_slice(value),
            create_revision: 1,
            mod_revision: 2,
            version: 1,
            lease: None,
        };
        Event {
            kind: store::EventKind::Put,
            kv: kv(now),
            prev: before.map(kv),
        }
    }

    #[test]
    fn only_snapshot_changes_are_relevant() {
        let lb = LoadBalancerRecord {
            arn: "arn:lb".into(),
            name: "front".into(),
            id: "1".into(),
            kind: model::elb::LoadBalancerKind::Application,
            scheme: "internet-facing".into(),
            vpc_id: "vpc-1".into(),
            availability_zones: Vec::new(),
            security_groups: Vec::new(),
            ip_address_type: "ipv4".into(),
            address: "127.128.0.1".into(),
            state: "provisioning".into(),
            state_reason: None,
            attributes: Default::default(),
            tags: Vec::new(),
            created_at_ms: 0,
        };
        let key = keys::load_balancer("front");
        let bytes = |r: &LoadBalancerRecord| serde_json::to_vec(r).unwrap();
        let mut changed = lb.clone();
        changed.state = "failed".into();
        changed.state_reason = Some("address in use".into());
        changed.tags.push(("team".into(), "a".into()));
        assert!(!relevant(&event(&key, &bytes(&changed), Some(&bytes(&lb)))));
        changed
            .attributes
            .insert("idle_timeout.timeout_seconds".into(), "120".into());
        assert!(relevant(&event(&key, &bytes(&changed), Some(&bytes(&lb)))));
        // The request attributes the data plane applies are in the snapshot too.
        let mut xff = lb.clone();
        xff.attributes.insert(
            "routing.http.xff_header_processing.mode".into(),
            "remove".into(),
        );
        assert!(relevant(&event(&key, &bytes(&xff), Some(&bytes(&lb)))));
        // Created, and deleted (a delete event carries no value).
        assert!(relevant(&event(&key, &bytes(&lb), None)));
        assert!(relevant(&event(&key, b"", Some(&bytes(&lb)))));

        let group = TargetGroupRecord {
            arn: "arn:tg".into(),
            name: "web".into(),
            id: "2".into(),
            protocol: Some("HTTP".into()),
            protocol_version: None,
            port: Some(80),
            vpc_id: None,
            target_type: "ip".into(),
            ip_address_type: None,
            health_check: model::elb::HealthCheckConfig::aws_default("HTTP"),
            attributes: Default::default(),
            tags: Vec::new(),
            created_at_ms: 0,
            targets: Vec::new(),
        };
        let key = keys::target_group("web");
        let bytes = |r: &TargetGroupRecord| serde_json::to_vec(r).unwrap();
        // A group re-put unchanged (a listener claiming it) or retagged wakes nobody.
        assert!(!relevant(&event(
            &key,
            &bytes(&group),
            Some(&bytes(&group))
        )));
        let mut tagged = group.clone();
        tagged.tags.push(("team".into(), "a".into()));
        assert!(!relevant(&event(
            &key,
            &bytes(&tagged),
            Some(&bytes(&group))
        )));
        let mut moved = group.clone();
        moved.health_check.interval_seconds = 10;
        assert!(relevant(&event(&key, &bytes(&moved), Some(&bytes(&group)))));

        assert!(!relevant(&event(
            &keys::target_health("2"),
            b"{}",
            Some(b"{\"targets\":{}}")
        )));
        assert!(!relevant(&event(
            &super::super::address_key("127.128.0.1"),
            b"arn:lb",
            None
        )));
    }
}
