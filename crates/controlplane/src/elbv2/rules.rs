//! Listener rules: CreateRule, DescribeRules, ModifyRule, DeleteRule, SetRulePriorities, and
//! the validation of rule conditions (both the legacy `Values` form and the `*Config` forms;
//! stored with both filled in, as DescribeRules answers). A listener's default rule is not a
//! record of its own: it is the listener's default actions, described with `IsDefault` and
//! priority `default`, and it can be neither deleted nor re-prioritised.

use std::collections::BTreeMap;

use model::elb::{keys, LoadBalancerKind};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{invalid, Result};
use super::listeners::validate_actions;
use super::load_balancers::enum_error;
use super::records::{
    self, parse_rule_arn, rule_arn, validate_tags, Action, HttpHeaderConfig, ListenerRecord,
    QueryStringConfig, RuleCondition, RuleRecord, Tag, ValuesConfig,
};
use super::{
    conflict, delete_key, page, parse, put_json, Elbv2Context, Elbv2Error, Topology, MAX_ATTEMPTS,
};

const FIELDS: &[&str] = &[
    "http-header",
    "http-request-method",
    "host-header",
    "path-pattern",
    "query-string",
    "source-ip",
];
/// AWS's quotas: condition values per rule, rules per listener (besides the default one).
const MAX_CONDITION_VALUES: usize = 5;
const MAX_RULES: usize = 100;

/// Validate and normalise a rule's conditions.
pub(super) fn validate_conditions(conditions: Vec<RuleCondition>) -> Result<Vec<RuleCondition>> {
    if conditions.is_empty() {
        return Err(invalid("A rule must have at least one condition")); // guessed
    }
    let mut out = Vec::new();
    let mut total = 0;
    let mut seen: Vec<String> = Vec::new();
    for condition in conditions {
        let field = condition
            .field
            .clone()
            .ok_or_else(|| invalid("A condition field must be specified"))?; // guessed
        if !FIELDS.contains(&field.as_str()) {
            return Err(enum_error(&field, "conditions.member.field", FIELDS));
        }
        // Each field once per rule, except headers and query strings (AWS).
        if !matches!(field.as_str(), "http-header" | "query-string") {
            if seen.contains(&field) {
                return Err(invalid(format!(
                    "A rule can have the condition '{field}' only once" // guessed
                )));
            }
            seen.push(field.clone());
        }
        let legacy = condition.values.clone().filter(|v| !v.is_empty());
        let plain = |config: &Option<ValuesConfig>| -> Result<Vec<String>> {
            let configured = config.as_ref().and_then(|c| c.values.clone());
            match (&legacy, configured) {
                (Some(_), Some(_)) => Err(invalid(format!(
                    "You cannot specify both 'Values' and a condition config for the field '{field}'" // guessed
                ))),
                (Some(v), None) => Ok(v.clone()),
                (None, Some(v)) => Ok(v),
                (None, None) => Err(invalid(format!(
                    "A condition value must be specified for the field '{field}'" // guessed
                ))),
            }
        };
        let legacy_refused = || {
            invalid(format!(
                "The 'Values' field is not supported for the condition field '{field}'; use its condition config" // guessed
            ))
        };
        let mut normal = RuleCondition {
            field: Some(field.clone()),
            ..Default::default()
        };
        let count;
        match field.as_str() {
            "path-pattern" | "host-header" => {
                let config = if field == "path-pattern" {
                    &condition.path_pattern_config
                } else {
                    &condition.host_header_config
                };
                let values = plain(config)?;
                for v in &values {
                    if v.is_empty() || v.chars().count() > 128 {
                        return Err(invalid(format!(
                            "Condition value '{v}' must be between 1 and 128 characters"
                        )));
                    }
                }
                count = values.len();
                let config = Some(ValuesConfig {
                    values: Some(values.clone()),
                });
                normal.values = Some(values);
                if field == "path-pattern" {
                    normal.path_pattern_config = config;
                } else {
                    normal.host_header_config = config;
                }
            }
            "http-request-method" => {
                if legacy.is_some() {
                    return Err(legacy_refused());
                }
                let values = plain(&condition.http_request_method_config)?;
                for v in &values {
                    let ok = !v.is_empty()
                        && v.len() <= 40
                        && v.bytes()
                            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-');
                    if !ok {
                        return Err(invalid(format!(
                            "HTTP request method '{v}' must be 1 to 40 characters of A-Z, '_' or '-'" // guessed
                        )));
                    }
                }
                count = values.len();
                normal.http_request_method_config = Some(ValuesConfig {
                    values: Some(values),
                });
            }
            "source-ip" => {
                if legacy.is_some() {
                    return Err(legacy_refused());
                }
                let values = plain(&condition.source_ip_config)?;
                for v in &values {
                    let ok = v.split_once('/').is_some_and(|(ip, len)| {
                        (ip.parse::<std::net::Ipv4Addr>().is_ok()
                            && len.parse::<u8>().is_ok_and(|l| l <= 32))
                            || (ip.parse::<std::net::Ipv6Addr>().is_ok()
                                && len.parse::<u8>().is_ok_and(|l| l <= 128))
                    });
                    if !ok {
                        return Err(invalid(format!(
                            "Source IP '{v}' is not a valid CIDR block" // guessed
                        )));
                    }
                }
                count = values.len();
                normal.source_ip_config = Some(ValuesConfig {
                    values: Some(values),
                });
            }
            "http-header" => {
                if legacy.is_some() {
                    return Err(legacy_refused());
                }
                let config = condition.http_header_config.clone().unwrap_or_default();
                let name = config.http_header_name.clone().unwrap_or_default();
                if name.is_empty() || name.len() > 40 {
                    return Err(invalid(
                        "An HTTP header name of 1 to 40 characters must be specified", // guessed
                    ));
                }
                let values = config.values.clone().unwrap_or_default();
                if values.is_empty() {
                    return Err(invalid(format!(
                        "A condition value must be specified for the field '{field}'" // guessed
                    )));
                }
                count = values.len();
                normal.http_header_config = Some(HttpHeaderConfig {
                    http_header_name: Some(name),
                    values: Some(values),
                });
            }
            _ => {
                // query-string
                if legacy.is_some() {
                    return Err(legacy_refused());
                }
                let values = condition
                    .query_string_config
                    .clone()
                    .and_then(|c| c.values)
                    .unwrap_or_default();
                if values.is_empty() || values.iter().any(|p| p.value.is_none()) {
                    return Err(invalid(
                        "Each query string condition value must specify a value", // guessed
                    ));
                }
                count = values.len();
                normal.query_string_config = Some(QueryStringConfig {
                    values: Some(values),
                });
            }
        }
        total += count;
        out.push(normal);
    }
    if total > MAX_CONDITION_VALUES {
        return Err(invalid(format!(
            "A rule can only have '{MAX_CONDITION_VALUES}' condition values" // guessed
        )));
    }
    Ok(out)
}

/// The wire `Rule` of a stored rule.
fn rule_value(rule: &RuleRecord) -> Value {
    json!({
        "RuleArn": rule.arn,
        "Priority": rule.priority.to_string(),
        "Conditions": rule.conditions,
        "Actions": rule.actions,
        "IsDefault": false,
    })
}

/// The wire `Rule` of a listener's default rule.
fn default_rule_value(listener: &ListenerRecord) -> Value {
    json!({
        "RuleArn": listener.default_rule_arn(),
        "Priority": "default",
        "Conditions": [],
        "Actions": listener.default_actions,
        "IsDefault": true,
    })
}

/// The rules of a listener, by priority.
async fn listener_rules(ctx: &Elbv2Context, listener_id: &str) -> Result<Vec<(RuleRecord, i64)>> {
    let mut rules = ctx
        .range_json::<RuleRecord>(&format!("{}{listener_id}/", keys::RULE_PREFIX))
        .await?;
    rules.sort_by_key(|(r, _)| r.priority);
    Ok(rules)
}

/// A rule ARN resolved: the listener and, unless it is the default rule, the rule.
async fn locate(
    ctx: &Elbv2Context,
    arn: &str,
) -> Result<(ListenerRecord, i64, Option<(RuleRecord, i64)>)> {
    let not_found = || Elbv2Error::RuleNotFound(format!("Rule '{arn}' not found"));
    let (_, lb_id, listener_id, rule_id) =
        parse_rule_arn(arn).ok_or_else(|| invalid(format!("'{arn}' is not a valid rule ARN")))?;
    let Some((listener, listener_revision)) = ctx
        .get_json::<ListenerRecord>(&keys::listener(lb_id, listener_id))
        .await?
    else {
        return Err(not_found());
    };
    if listener.default_rule_arn() == arn {
        return Ok((listener, listener_revision, None));
    }
    match ctx
        .get_json::<RuleRecord>(&keys::rule(listener_id, rule_id))
        .await?
    {
        Some((rule, revision)) if rule.arn == arn => {
            Ok((listener, listener_revision, Some((rule, revision))))
        }
        _ => Err(not_found()),
    }
}

fn check_priority(priority: i32) -> Result<()> {
    if (1..=50_000).contains(&priority) {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{priority}' at 'priority' failed to satisfy constraint: Member must have value between 1 and 50000"
        )))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    listener_arn: String,
    conditions: Vec<RuleCondition>,
    priority: i32,
    actions: Vec<Action>,
    tags: Option<Vec<Tag>>,
}

pub async fn create(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: CreateInput = parse(input)?;
    check_priority(input.priority)?;
    let conditions = validate_conditions(input.conditions.clone())?;
    let tags = validate_tags(input.tags.as_deref().unwrap_or_default())?;
    for _ in 0..MAX_ATTEMPTS {
        let (listener, listener_revision) = ctx.listener(&input.listener_arn).await?;
        let (lb, _) = ctx.load_balancer(&listener.load_balancer_arn).await?;
        if lb.kind == LoadBalancerKind::Network {
            return Err(invalid(
                "Rules are not supported for network load balancer listeners", // guessed
            ));
        }
        let topology = Topology::load(ctx).await?;
        let actions = validate_actions(
            ctx,
            &lb,
            &listener.protocol,
            input.actions.clone(),
            &topology,
        )
        .await?;
        let rules = listener_rules(ctx, &listener.id).await?;
        if rules.iter().any(|(r, _)| r.priority == input.priority) {
            return Err(Elbv2Error::PriorityInUse(format!(
                "Priority '{}' is currently in use",
                input.priority
            )));
        }
        if rules.len() >= MAX_RULES {
            return Err(Elbv2Error::TooManyRules(format!(
                "A listener can have at most {MAX_RULES} rules" // guessed
            )));
        }
        let id = records::new_id();
        let rule = RuleRecord {
            arn: rule_arn(&listener.arn, &id),
            id: id.clone(),
            listener_arn: listener.arn.clone(),
            listener_id: listener.id.clone(),
            priority: input.priority,
            conditions: conditions.clone(),
            actions,
            tags: tags.clone(),
        };
        let Some((mut guards, mut ops)) = topology.claim_groups(&rule.actions) else {
            continue;
        };
        let listener_key = keys::listener(&listener.load_balancer_id, &listener.id);
        let key = keys::rule(&listener.id, &id);
        // Re-putting the listener serialises rule writes per listener (unique priorities).
        guards.extend([(listener_key.clone(), listener_revision), (key.clone(), 0)]);
        ops.extend([put_json(&listener_key, &listener), put_json(&key, &rule)]);
        if ctx.commit(&guards, ops).await? {
            tracing::info!(rule = %rule.arn, priority = rule.priority, "created rule");
            return Ok(json!({"Rules": [rule_value(&rule)]}));
        }
    }
    Err(conflict())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    listener_arn: Option<String>,
    rule_arns: Option<Vec<String>>,
    marker: Option<String>,
    page_size: Option<i32>,
}

pub async fn describe(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: DescribeInput = parse(input)?;
    let arns = input.rule_arns.unwrap_or_default();
    // (sort key, wire rule): by listener, then priority with the default rule last. `page`
    // resumes after the last key it answered, so keys must be unique across listeners (rule
    // ARNs may name several): the listener and rule ids make them so.
    let key = |listener: &str, rule: Option<&RuleRecord>| match rule {
        Some(rule) => format!("{listener}/{:05}/{}", rule.priority, rule.id),
        None => format!("{listener}/default"),
    };
    let mut selected: Vec<(String, Value)> = Vec::new();
    match (&input.listener_arn, arns.is_empty()) {
        (Some(_), false) => {
            return Err(invalid(
                "Rule ARNs and a listener ARN cannot be specified at the same time",
            ))
        }
        (None, true) => {
            return Err(invalid(
                "You must specify either rule ARNs or a listener ARN",
            ))
        }
        (Some(listener), true) => {
            let (listener, _) = ctx.listener(listener).await?;
            for (rule, _) in listener_rules(ctx, &listener.id).await? {
                selected.push((key(&listener.id, Some(&rule)), rule_value(&rule)));
            }
            selected.push((key(&listener.id, None), default_rule_value(&listener)));
        }
        (None, false) => {
            for arn in &arns {
                match locate(ctx, arn).await? {
                    (listener, _, Some((rule, _))) => {
                        selected.push((key(&listener.id, Some(&rule)), rule_value(&rule)))
                    }
                    (listener, _, None) => {
                        selected.push((key(&listener.id, None), default_rule_value(&listener)))
                    }
                }
            }
        }
    }
    selected.sort_by(|a, b| a.0.cmp(&b.0));
    // A rule named twice is answered once.
    selected.dedup_by(|a, b| a.0 == b.0);
    let (items, next) = page(
        ctx,
        "DescribeRules",
        selected,
        |(k, _)| k.clone(),
        input.marker.as_deref(),
        input.page_size,
    )?;
    let mut out = json!({"Rules": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>()});
    if let Some(next) = next {
        out["NextMarker"] = json!(next);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ModifyInput {
    rule_arn: String,
    conditions: Option<Vec<RuleCondition>>,
    actions: Option<Vec<Action>>,
}

pub async fn modify(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ModifyInput = parse(input)?;
    let conditions = input
        .conditions
        .clone()
        .filter(|c| !c.is_empty())
        .map(validate_conditions)
        .transpose()?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut listener, listener_revision, rule) = locate(ctx, &input.rule_arn).await?;
        let (lb, _) = ctx.load_balancer(&listener.load_balancer_arn).await?;
        let topology = Topology::load(ctx).await?;
        let actions = match &input.actions {
            Some(a) if !a.is_empty() => {
                Some(validate_actions(ctx, &lb, &listener.protocol, a.clone(), &topology).await?)
            }
            _ => None,
        };
        // Only new actions claim their groups; conditions alone do not change who forwards
        // where.
        let claimed = match &actions {
            Some(actions) => topology.claim_groups(actions),
            None => Some(Default::default()),
        };
        let Some((mut guards, mut ops)) = claimed else {
            continue;
        };
        let listener_key = keys::listener(&listener.load_balancer_id, &listener.id);
        match rule {
            None => {
                if conditions.is_some() {
                    return Err(Elbv2Error::OperationNotPermitted(
                        "The conditions of a default rule cannot be modified".into(), // guessed
                    ));
                }
                if let Some(actions) = actions {
                    listener.default_actions = actions;
                }
                guards.push((listener_key.clone(), listener_revision));
                ops.push(put_json(&listener_key, &listener));
                if ctx.commit(&guards, ops).await? {
                    return Ok(json!({"Rules": [default_rule_value(&listener)]}));
                }
            }
            Some((mut rule, revision)) => {
                if let Some(conditions) = &conditions {
                    rule.conditions = conditions.clone();
                }
                if let Some(actions) = actions {
                    rule.actions = actions;
                }
                let key = keys::rule(&listener.id, &rule.id);
                guards.push((key.clone(), revision));
                ops.push(put_json(&key, &rule));
                if ctx.commit(&guards, ops).await? {
                    return Ok(json!({"Rules": [rule_value(&rule)]}));
                }
            }
        }
    }
    Err(conflict())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArnInput {
    rule_arn: String,
}

pub async fn delete_rule(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: ArnInput = parse(input)?;
    for _ in 0..MAX_ATTEMPTS {
        let (listener, _, rule) = locate(ctx, &input.rule_arn).await?;
        let Some((rule, revision)) = rule else {
            return Err(Elbv2Error::OperationNotPermitted(format!(
                "Default rule '{}' cannot be deleted",
                input.rule_arn
            )));
        };
        let key = keys::rule(&listener.id, &rule.id);
        if ctx
            .commit(&[(key.clone(), revision)], vec![delete_key(&key)])
            .await?
        {
            return Ok(json!({}));
        }
    }
    Err(conflict())
}

pub use delete_rule as delete;

/// A listener, its revision and its rules with theirs.
type ListenerWithRules = (ListenerRecord, i64, Vec<(RuleRecord, i64)>);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PriorityPair {
    rule_arn: String,
    priority: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetPrioritiesInput {
    rule_priorities: Vec<PriorityPair>,
}

pub async fn set_priorities(ctx: &Elbv2Context, input: Value) -> Result<Value> {
    let input: SetPrioritiesInput = parse(input)?;
    for pair in &input.rule_priorities {
        check_priority(pair.priority)?;
    }
    'attempt: for _ in 0..MAX_ATTEMPTS {
        // listener id → (listener, revision, its rules), for every listener touched.
        let mut listeners: BTreeMap<String, ListenerWithRules> = BTreeMap::new();
        let mut changed: Vec<(String, String, i32)> = Vec::new();
        for pair in &input.rule_priorities {
            let (listener, listener_revision, rule) = locate(ctx, &pair.rule_arn).await?;
            let Some((rule, _)) = rule else {
                return Err(Elbv2Error::OperationNotPermitted(format!(
                    "The priority of default rule '{}' cannot be changed", // guessed
                    pair.rule_arn
                )));
            };
            if !listeners.contains_key(&listener.id) {
                let rules = listener_rules(ctx, &listener.id).await?;
                listeners.insert(
                    listener.id.clone(),
                    (listener.clone(), listener_revision, rules),
                );
            }
            changed.push((listener.id.clone(), rule.id.clone(), pair.priority));
        }
        let mut guards = Vec::new();
        let mut ops = Vec::new();
        let mut answer = Vec::new();
        for (listener_id, (listener, listener_revision, rules)) in &mut listeners {
            for (rule, _) in rules.iter_mut() {
                if let Some((_, _, p)) = changed
                    .iter()
                    .find(|(l, r, _)| l == listener_id && *r == rule.id)
                {
                    rule.priority = *p;
                }
            }
            let mut priorities: Vec<i32> = rules.iter().map(|(r, _)| r.priority).collect();
            priorities.sort_unstable();
            if let Some(w) = priorities.windows(2).find(|w| w[0] == w[1]) {
                return Err(Elbv2Error::PriorityInUse(format!(
                    "Priority '{}' is currently in use",
                    w[0]
                )));
            }
            let listener_key = keys::listener(&listener.load_balancer_id, listener_id);
            guards.push((listener_key.clone(), *listener_revision));
            ops.push(put_json(&listener_key, &*listener));
            for (rule, revision) in rules.iter() {
                if changed
                    .iter()
                    .any(|(l, r, _)| l == listener_id && *r == rule.id)
                {
                    let key = keys::rule(listener_id, &rule.id);
                    guards.push((key.clone(), *revision));
                    ops.push(put_json(&key, rule));
                    answer.push(rule_value(rule));
                }
            }
        }
        if !ctx.commit(&guards, ops).await? {
            continue 'attempt;
        }
        return Ok(json!({"Rules": answer}));
    }
    Err(conflict())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(field: &str, values: &[&str]) -> RuleCondition {
        RuleCondition {
            field: Some(field.into()),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn legacy_values_fill_both_forms() {
        let out = validate_conditions(vec![condition("path-pattern", &["/api/*"])]).unwrap();
        assert_eq!(out[0].values.as_ref().unwrap(), &vec!["/api/*".to_string()]);
        assert_eq!(
            out[0]
                .path_pattern_config
                .as_ref()
                .unwrap()
                .values
                .as_ref()
                .unwrap(),
            &vec!["/api/*".to_string()]
        );
    }

    #[test]
    fn conditions_are_checked() {
        assert!(validate_conditions(vec![]).is_err());
        assert!(validate_conditions(vec![condition("cookie", &["x"])]).is_err());
        assert!(validate_conditions(vec![condition("http-request-method", &["GET"])]).is_err());
        let methods = RuleCondition {
            field: Some("http-request-method".into()),
            http_request_method_config: Some(ValuesConfig {
                values: Some(vec!["GET".into()]),
            }),
            ..Default::default()
        };
        assert!(validate_conditions(vec![methods]).is_ok());
        let too_many = condition("host-header", &["a", "b", "c", "d", "e", "f"]);
        assert!(validate_conditions(vec![too_many]).is_err());
        let twice = vec![
            condition("host-header", &["a"]),
            condition("host-header", &["b"]),
        ];
        assert!(validate_conditions(twice).is_err());
    }
}
