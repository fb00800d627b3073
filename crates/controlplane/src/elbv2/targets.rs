//! Targets: RegisterTargets, DeregisterTargets and DescribeTargetHealth.
//!
//! Registration is desired state in the target group record; health is observed state in its
//! own record (`elbv2/health/<group id>`), written only from data-plane reports. A target's
//! state on the wire combines both:
//!
//! ```text
//!   registered ──(data plane checks)──> initial ──> healthy ⇄ unhealthy
//!       │ group used by no load balancer: unused (Target.NotInUse)
//!       └─ DeregisterTargets ──> draining (until the deregistration delay ends) ──> gone
//!                                (asked about by id: unused, Target.NotRegistered)
//! ```

use model::elb::{
    keys, target_key, ObservedTargetHealth, RegisteredTarget, TargetGroupRecord, TargetHealthRecord,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{invalid, Result};
use super::{conflict, parse, put_json, Elbv2Context, Elbv2Error, Topology, MAX_ATTEMPTS};
use crate::ecs::cluster_state::InstanceRecord;
use crate::ecs::keys::CONTAINER_INSTANCE_PREFIX;

/// AWS's quota of targets per target group.
const MAX_TARGETS: usize = 1000;

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct TargetInput {
    id: String,
    port: Option<i32>,
    availability_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetsInput {
    target_group_arn: String,
    targets: Vec<TargetInput>,
}

/// The EC2 instance ids of the registered (not deregistered) container instances.
async fn instance_ids(ctx: &Elbv2Context) -> Result<Vec<String>> {
    // Decoded as stored (the record the route snapshot reads too), not as the wire shape.
    let instances = ctx
        .range_json::<InstanceRecord>(CONTAINER_INSTANCE_PREFIX)
        .await?;
    Ok(instances
        .into_iter()
        .filter(|(i, _)| i.instance.status.as_deref() != Some("INACTIVE"))
        .filter_map(|(i, _)| i.instance.ec2_instance_id)
        .collect())
}

/// The targets of the input with their ports resolved, validated for the group's type.
async fn resolve(
    ctx: &Elbv2Context,
    group: &TargetGroupRecord,
    targets: &[TargetInput],
    check_instances: bool,
) -> Result<Vec<(String, i32, Option<String>)>> {
    if targets.is_empty() {
        return Err(invalid("At least one target must be specified")); // guessed
    }
    let known = if check_instances && group.target_type == "instance" {
        Some(instance_ids(ctx).await?)
    } else {
        None
    };
    let mut out = Vec::new();
    for target in targets {
        let port = target.port.or(group.port).ok_or_else(|| {
            invalid(format!(
                "A port must be specified for target '{}'",
                target.id
            )) // guessed
        })?;
        if !(1..=65535).contains(&port) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{port}' at 'targets.member.port' failed to satisfy constraint: Member must have value between 1 and 65535"
            )));
        }
        match group.target_type.as_str() {
            "ip" => {
                // Any IPv4 address is accepted (AWS also requires it to be in the VPC's CIDR
                // or a private range): Wharf's targets are containers on local networks.
                if target.id.parse::<std::net::Ipv4Addr>().is_err() {
                    return Err(Elbv2Error::InvalidTarget(format!(
                        "The IP address '{}' is not a valid IPv4 address",
                        target.id
                    )));
                }
            }
            _ => {
                if let Some(known) = &known {
                    if !known.contains(&target.id) {
                        return Err(Elbv2Error::InvalidTarget(format!(
                            "The following targets are not valid instances: '{}'", // guessed
                            target.id
                        )));
                    }
                }
            }
        }
        out.push((target.id.clone(), port, target.availability_zone.clone()));
    }
    Ok(out)
}

pub async fn register(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: TargetsInput = parse(input)?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut group, revision) = ctx.target_group(&input.target_group_arn).await?;
        let targets = resolve(ctx, &group, &input.targets, true).await?;
        let now = ctx.now_ms();
        group.prune(now);
        let mut fresh: Vec<String> = Vec::new();
        for (id, port, zone) in targets {
            let key = target_key(&id, port);
            match group.targets.iter_mut().find(|t| t.key() == key) {
                Some(existing) if existing.deregistered_at_ms.is_none() => {}
                Some(existing) => {
                    // Registering a draining target cancels the deregistration.
                    existing.deregistered_at_ms = None;
                    existing.registered_at_ms = now;
                    fresh.push(key);
                }
                None => {
                    group.targets.push(RegisteredTarget {
                        id,
                        port,
                        availability_zone: zone,
                        registered_at_ms: now,
                        deregistered_at_ms: None,
                        task_arn: None,
                    });
                    fresh.push(key);
                }
            }
        }
        if group.targets.len() > MAX_TARGETS {
            return Err(Elbv2Error::TooManyTargets(format!(
                "You have reached the maximum number of targets per target group ({MAX_TARGETS})" // guessed
            )));
        }
        let key = keys::target_group(&group.name);
        let mut guards = vec![(key.clone(), revision)];
        let mut ops = vec![put_json(&key, &group)];
        // A re-registered target starts its health over: drop what was observed before.
        let health_key = keys::target_health(&group.id);
        if let Some((mut health, health_revision)) =
            ctx.get_json::<TargetHealthRecord>(&health_key).await?
        {
            let before = health.targets.len();
            health.targets.retain(|k, _| !fresh.contains(k));
            if health.targets.len() != before {
                guards.push((health_key.clone(), health_revision));
                ops.push(put_json(&health_key, &health));
            }
        }
        if ctx.commit(&guards, ops).await? {
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

pub async fn deregister(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: TargetsInput = parse(input)?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut group, revision) = ctx.target_group(&input.target_group_arn).await?;
        let now = ctx.now_ms();
        let delay = group.deregistration_delay_seconds();
        let mut missing = Vec::new();
        for target in &input.targets {
            let matching: Vec<&mut RegisteredTarget> = group
                .targets
                .iter_mut()
                .filter(|t| {
                    t.id == target.id
                        && target.port.is_none_or(|p| p == t.port)
                        && t.present(now, delay)
                })
                .collect();
            if matching.is_empty() {
                missing.push(target.id.clone());
            }
            for t in matching {
                t.deregistered_at_ms.get_or_insert(now);
            }
        }
        if !missing.is_empty() {
            return Err(Elbv2Error::InvalidTarget(format!(
                "The following targets are not registered in target group '{}': '{}'",
                group.arn,
                missing.join("', '")
            )));
        }
        group.prune(now);
        let key = keys::target_group(&group.name);
        if ctx
            .commit(&[(key.clone(), revision)], vec![put_json(&key, &group)])
            .await?
        {
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

/// `(state, reason, description)` of a registered target as DescribeTargetHealth shows it.
pub(super) fn target_state(
    now_ms: i64,
    group: &TargetGroupRecord,
    in_use: bool,
    observed: Option<&ObservedTargetHealth>,
    target: &RegisteredTarget,
) -> (String, Option<String>, Option<String>) {
    let state =
        |s: &str, r: &str, d: &str| (s.to_string(), Some(r.to_string()), Some(d.to_string()));
    if target.deregistered_at_ms.is_some() {
        if target.present(now_ms, group.deregistration_delay_seconds()) {
            return state(
                "draining",
                "Target.DeregistrationInProgress",
                "Target deregistration is in progress",
            );
        }
        return state(
            "unused",
            "Target.NotRegistered",
            "Target is not registered to the target group",
        );
    }
    if !in_use {
        return state(
            "unused",
            "Target.NotInUse",
            "Target group is not configured to receive traffic from the load balancer",
        );
    }
    if !group.health_check.enabled {
        return state(
            "unavailable",
            "Target.HealthCheckDisabled",
            "Health checks disabled",
        );
    }
    match observed {
        Some(o) if o.state == "healthy" => ("healthy".to_string(), None, None),
        Some(o) => (o.state.clone(), o.reason.clone(), o.description.clone()),
        None => state(
            "initial",
            "Elb.RegistrationInProgress",
            "Target registration is in progress",
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeHealthInput {
    target_group_arn: String,
    targets: Option<Vec<TargetInput>>,
}

pub async fn describe_health(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: DescribeHealthInput = parse(input)?;
    let (group, _) = ctx.target_group(&input.target_group_arn).await?;
    let in_use = Topology::load(ctx).await?.in_use(&group.arn);
    let health = ctx
        .get_json::<TargetHealthRecord>(&keys::target_health(&group.id))
        .await?
        .map(|(h, _)| h)
        .unwrap_or_default();
    let now = ctx.now_ms();
    let delay = group.deregistration_delay_seconds();
    let health_check_port = |port: i32| match group.health_check.port.as_str() {
        "traffic-port" => port.to_string(),
        other => other.to_string(),
    };
    let describe = |id: &str,
                    port: i32,
                    zone: Option<&String>,
                    state: (String, Option<String>, Option<String>)| {
        let mut target = json!({"Id": id, "Port": port});
        if let Some(zone) = zone {
            target["AvailabilityZone"] = json!(zone);
        }
        json!({
            "Target": target,
            "HealthCheckPort": health_check_port(port),
            "TargetHealth": {"State": state.0, "Reason": state.1, "Description": state.2},
        })
    };
    let present: Vec<&RegisteredTarget> = group
        .targets
        .iter()
        .filter(|t| t.present(now, delay))
        .collect();
    let mut out = Vec::new();
    match &input.targets {
        Some(asked) if !asked.is_empty() => {
            for target in asked {
                let matching: Vec<&&RegisteredTarget> = present
                    .iter()
                    .filter(|t| t.id == target.id && target.port.is_none_or(|p| p == t.port))
                    .collect();
                if matching.is_empty() {
                    let port = target.port.or(group.port).unwrap_or_default();
                    out.push(describe(
                        &target.id,
                        port,
                        target.availability_zone.as_ref(),
                        (
                            "unused".into(),
                            Some("Target.NotRegistered".into()),
                            Some("Target is not registered to the target group".into()),
                        ),
                    ));
                }
                for t in matching {
                    let state = target_state(now, &group, in_use, health.observed(t), t);
                    out.push(describe(&t.id, t.port, t.availability_zone.as_ref(), state));
                }
            }
        }
        _ => {
            for t in present {
                let state = target_state(now, &group, in_use, health.observed(t), t);
                out.push(describe(&t.id, t.port, t.availability_zone.as_ref(), state));
            }
        }
    }
    Ok(json!({"TargetHealthDescriptions": out}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::elb::HealthCheckConfig;

    fn group() -> TargetGroupRecord {
        TargetGroupRecord {
            arn: "arn".into(),
            name: "g".into(),
            id: "1".into(),
            protocol: Some("HTTP".into()),
            protocol_version: None,
            port: Some(80),
            vpc_id: None,
            target_type: "ip".into(),
            ip_address_type: None,
            health_check: HealthCheckConfig::aws_default("HTTP"),
            attributes: [(
                "deregistration_delay.timeout_seconds".to_string(),
                "10".to_string(),
            )]
            .into(),
            tags: vec![],
            created_at_ms: 0,
            targets: vec![],
        }
    }

    #[test]
    fn states_combine_registration_use_and_observation() {
        let group = group();
        let mut target = RegisteredTarget {
            id: "10.0.0.1".into(),
            port: 80,
            availability_zone: None,
            registered_at_ms: 0,
            deregistered_at_ms: None,
            task_arn: None,
        };
        assert_eq!(target_state(0, &group, false, None, &target).0, "unused");
        let initial = target_state(0, &group, true, None, &target);
        assert_eq!(initial.1.as_deref(), Some("Elb.RegistrationInProgress"));
        let observed = ObservedTargetHealth {
            state: "unhealthy".into(),
            reason: Some("Target.ResponseCodeMismatch".into()),
            description: Some("Health checks failed with these codes: [502]".into()),
            since_ms: 0,
        };
        let unhealthy = target_state(0, &group, true, Some(&observed), &target);
        assert_eq!(unhealthy.0, "unhealthy");
        target.deregistered_at_ms = Some(1_000);
        assert_eq!(
            target_state(5_000, &group, true, None, &target).0,
            "draining"
        );
        let gone = target_state(11_000, &group, true, None, &target);
        assert_eq!(gone.1.as_deref(), Some("Target.NotRegistered"));
    }
}
