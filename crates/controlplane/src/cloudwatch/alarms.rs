//! Metric alarms: PutMetricAlarm, DescribeAlarms(ForMetric), DeleteAlarms, SetAlarmState,
//! Enable/DisableAlarmActions, DescribeAlarmHistory and tagging; the alarm record in the store,
//! its history items, and the state transitions the evaluator and SetAlarmState make (with
//! their history and the actions Wharf records but does not deliver).

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{Compare, CompareOp, CompareTarget, Op, RangeOptions, Store, StoreError, Txn};

use super::error::{invalid_value, missing, CloudWatchError, Result};
use super::metric_data;
use super::{input, CloudWatchContext};

pub const ALARM_PREFIX: &str = "cloudwatch/alarm/";
pub const HISTORY_PREFIX: &str = "cloudwatch/history/";
/// How long history items are kept, as in CloudWatch.
pub const HISTORY_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

pub const OK: &str = "OK";
pub const ALARM: &str = "ALARM";
pub const INSUFFICIENT_DATA: &str = "INSUFFICIENT_DATA";
const STATES: &[&str] = &[OK, ALARM, INSUFFICIENT_DATA];

const COMPARISONS: &[&str] = &[
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];
const ANOMALY_COMPARISONS: &[&str] = &[
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
];
const TREAT_MISSING: &[&str] = &["missing", "ignore", "breaching", "notBreaching"];

/// Alarm names may hold any character; `/` and `%` are escaped in keys so that one alarm's
/// history prefix never covers another's (`a/` vs `a/b/`), and prefixes stay prefixes.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

pub fn alarm_key(name: &str) -> String {
    format!("{ALARM_PREFIX}{}", escape(name))
}

fn history_prefix(name: &str) -> String {
    format!("{HISTORY_PREFIX}{}/", escape(name))
}

/// `ordinal` orders the items one transaction writes at the same instant; items of different
/// transactions are ordered by the revision that created them.
fn history_key(name: &str, timestamp_ms: i64, ordinal: usize) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}{timestamp_ms:013}-{ordinal:02}-{}",
        history_prefix(name),
        &id[..8]
    )
}

/// One metric alarm: its definition, its state and its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmRecord {
    pub name: String,
    pub description: Option<String>,
    pub actions_enabled: bool,
    pub ok_actions: Vec<String>,
    pub alarm_actions: Vec<String>,
    pub insufficient_data_actions: Vec<String>,
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    pub dimensions: Vec<(String, String)>,
    pub statistic: Option<String>,
    pub extended_statistic: Option<String>,
    pub period: Option<i64>,
    pub unit: Option<String>,
    /// `Metrics` (metric math alarms), in canonical form.
    pub metrics: Option<Value>,
    pub evaluation_periods: i64,
    pub datapoints_to_alarm: Option<i64>,
    pub threshold: Option<f64>,
    pub comparison_operator: String,
    pub treat_missing_data: Option<String>,
    pub evaluate_low_sample_count_percentile: Option<String>,
    pub tags: Vec<(String, String)>,
    pub state_value: String,
    pub state_reason: String,
    pub state_reason_data: Option<String>,
    pub state_updated_ms: i64,
    pub state_transitioned_ms: i64,
    pub configuration_updated_ms: i64,
}

impl AlarmRecord {
    /// The period the alarm evaluates at, in seconds.
    pub fn evaluation_period(&self) -> i64 {
        if let Some(p) = self.period {
            return p;
        }
        let queries = self.queries().unwrap_or_default();
        queries
            .iter()
            .find(|q| q.return_data)
            .and_then(|q| q.effective_period(&queries))
            .unwrap_or(60)
    }

    pub fn queries(&self) -> Result<Vec<metric_data::DataQuery>> {
        match &self.metrics {
            Some(Value::Array(items)) => metric_data::parse_queries(items, "Metrics"),
            _ => Ok(Vec::new()),
        }
    }

    /// The `MetricAlarm` output shape.
    pub fn to_output(&self, ctx: &CloudWatchContext) -> Value {
        let seconds = |ms: i64| json!(ms as f64 / 1000.0);
        let mut out = json!({
            "AlarmName": self.name,
            "AlarmArn": ctx.alarm_arn(&self.name),
            "AlarmConfigurationUpdatedTimestamp": seconds(self.configuration_updated_ms),
            "ActionsEnabled": self.actions_enabled,
            "OKActions": self.ok_actions,
            "AlarmActions": self.alarm_actions,
            "InsufficientDataActions": self.insufficient_data_actions,
            "StateValue": self.state_value,
            "StateReason": self.state_reason,
            "StateUpdatedTimestamp": seconds(self.state_updated_ms),
            "StateTransitionedTimestamp": seconds(self.state_transitioned_ms),
            "Dimensions": input::dimensions_value(&self.dimensions),
            "EvaluationPeriods": self.evaluation_periods,
            "ComparisonOperator": self.comparison_operator,
        });
        let fields: [(&str, Option<Value>); 13] = [
            (
                "AlarmDescription",
                self.description.clone().map(Value::from),
            ),
            (
                "StateReasonData",
                self.state_reason_data.clone().map(Value::from),
            ),
            ("MetricName", self.metric_name.clone().map(Value::from)),
            ("Namespace", self.namespace.clone().map(Value::from)),
            ("Statistic", self.statistic.clone().map(Value::from)),
            (
                "ExtendedStatistic",
                self.extended_statistic.clone().map(Value::from),
            ),
            ("Period", self.period.map(Value::from)),
            ("Unit", self.unit.clone().map(Value::from)),
            (
                "DatapointsToAlarm",
                self.datapoints_to_alarm.map(Value::from),
            ),
            (
                "Threshold",
                self.threshold.map(protocol::shape::double_value),
            ),
            (
                "TreatMissingData",
                self.treat_missing_data.clone().map(Value::from),
            ),
            (
                "EvaluateLowSampleCountPercentile",
                self.evaluate_low_sample_count_percentile
                    .clone()
                    .map(Value::from),
            ),
            ("Metrics", self.metrics.clone()),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                out[name] = v;
            }
        }
        if self.metrics.is_some() {
            if let Some(object) = out.as_object_mut() {
                object.remove("Dimensions");
            }
        }
        out
    }
}

/// One alarm history item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub alarm_name: String,
    pub timestamp_ms: i64,
    pub item_type: String,
    pub summary: String,
    pub data: String,
}

impl HistoryItem {
    fn to_output(&self) -> Value {
        json!({
            "AlarmName": self.alarm_name,
            "AlarmType": "MetricAlarm",
            "Timestamp": self.timestamp_ms as f64 / 1000.0,
            "HistoryItemType": self.item_type,
            "HistorySummary": self.summary,
            "HistoryData": self.data,
        })
    }
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn put(key: String, value: Bytes) -> Op {
    Op::Put {
        key,
        value,
        lease: None,
    }
}

fn history_op(item: &HistoryItem, ordinal: usize) -> Op {
    put(
        history_key(&item.alarm_name, item.timestamp_ms, ordinal),
        encode(item),
    )
}

/// The compare that makes a read-modify-write safe: the key is still at `revision` (0: absent).
fn unchanged(key: &str, revision: i64) -> Compare {
    Compare {
        key: key.to_string(),
        target: CompareTarget::ModRevision(revision),
        op: CompareOp::Equal,
    }
}

/// Read one alarm and the revision it was read at.
pub async fn load(
    store: &dyn Store,
    name: &str,
) -> std::result::Result<Option<(AlarmRecord, i64)>, StoreError> {
    Ok(store
        .get(&alarm_key(name))
        .await?
        .and_then(|kv| Some((serde_json::from_slice(&kv.value).ok()?, kv.mod_revision))))
}

/// Every alarm with the revision it was read at, by name.
pub async fn load_all(
    store: &dyn Store,
) -> std::result::Result<Vec<(AlarmRecord, i64)>, StoreError> {
    let range = store.range(ALARM_PREFIX, RangeOptions::default()).await?;
    let mut out: Vec<(AlarmRecord, i64)> = range
        .kvs
        .iter()
        .filter_map(|kv| Some((serde_json::from_slice(&kv.value).ok()?, kv.mod_revision)))
        .collect();
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out)
}

/// The states (`OK`, `ALARM`, `INSUFFICIENT_DATA`) of the named alarms; names without an
/// alarm are left out. For other subsystems, e.g. ECS deployment alarms.
pub async fn alarm_states(
    store: &dyn Store,
    names: &[String],
) -> std::result::Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    for name in names {
        if let Some((alarm, _)) = load(store, name).await? {
            out.insert(name.clone(), alarm.state_value);
        }
    }
    Ok(out)
}

/// `2024-01-02T03:04:05.000+0000`, the timestamp form inside CloudWatch's JSON documents.
pub fn json_date(ms: i64) -> String {
    let c = protocol::shape::Civil::from_millis(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// A state change to make.
#[derive(Debug, Clone)]
pub struct Transition {
    pub state: String,
    pub reason: String,
    pub reason_data: Option<String>,
    pub now_ms: i64,
}

/// Apply `transition` to `alarm` (read at `revision`) in one compare-and-swap transaction with
/// its history items; false when the alarm changed meanwhile (the caller re-reads).
pub async fn transition(
    store: &dyn Store,
    mut alarm: AlarmRecord,
    revision: i64,
    t: Transition,
) -> std::result::Result<bool, StoreError> {
    let old_state = alarm.state_value.clone();
    let old_reason = alarm.state_reason.clone();
    let changed = old_state != t.state;
    alarm.state_value = t.state.clone();
    alarm.state_reason = t.reason.clone();
    alarm.state_reason_data = t.reason_data.clone();
    alarm.state_updated_ms = t.now_ms;
    let mut ops = Vec::new();
    if changed {
        alarm.state_transitioned_ms = t.now_ms;
        let reason_data: Value = t
            .reason_data
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(json!({}));
        let data = json!({
            "version": "1.0",
            "oldState": {"stateValue": old_state, "stateReason": old_reason},
            "newState": {"stateValue": t.state, "stateReason": t.reason, "stateReasonData": reason_data},
        });
        ops.push(history_op(
            &HistoryItem {
                alarm_name: alarm.name.clone(),
                timestamp_ms: t.now_ms,
                item_type: "StateUpdate".into(),
                summary: format!("Alarm updated from {old_state} to {}", t.state),
                data: data.to_string(),
            },
            0,
        ));
        if alarm.actions_enabled {
            let actions = match t.state.as_str() {
                ALARM => &alarm.alarm_actions,
                OK => &alarm.ok_actions,
                _ => &alarm.insufficient_data_actions,
            };
            for (i, arn) in actions.iter().enumerate() {
                ops.push(history_op(
                    &undelivered_action(&alarm.name, arn, t.now_ms),
                    i + 1,
                ));
            }
        }
    }
    let key = alarm_key(&alarm.name);
    ops.insert(0, put(key.clone(), encode(&alarm)));
    let response = store
        .txn(Txn {
            compares: vec![unchanged(&key, revision)],
            success: ops,
            failure: vec![],
        })
        .await?;
    Ok(response.succeeded)
}

/// The `Action` history item for an action Wharf does not carry out (SNS, Auto Scaling, EC2,
/// Systems Manager, Lambda): CloudWatch records each action's outcome, so Wharf records that
/// it did not deliver it.
fn undelivered_action(alarm: &str, arn: &str, now_ms: i64) -> HistoryItem {
    let service = arn.split(':').nth(2).unwrap_or("unknown");
    let error = format!("Wharf does not deliver {service} alarm actions."); // guessed
    let mut summary = format!("Failed to execute action {arn}. {error}");
    if summary.chars().count() > 255 {
        summary = summary.chars().take(255).collect();
    }
    HistoryItem {
        alarm_name: alarm.to_string(),
        timestamp_ms: now_ms,
        item_type: "Action".into(),
        summary,
        data: json!({
            "actionState": "Failed",
            "stateUpdateTimestamp": now_ms,
            "notificationResource": arn,
            "error": error,
        })
        .to_string(),
    }
}

fn check_actions(request: &Value, member: &str) -> Result<Vec<String>> {
    let actions = input::strings(request, member);
    if actions.len() > 5 {
        return Err(CloudWatchError::InvalidParameterValue(format!(
            "The collection {member} must not have a size greater than 5." // guessed
        )));
    }
    for (i, arn) in actions.iter().enumerate() {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if parts.len() < 6 || parts[0] != "arn" || arn.len() > 1024 {
            return Err(invalid_value(arn, &format!("{member}.member.{}", i + 1)));
        }
    }
    Ok(actions)
}

fn check_tags(request: &Value) -> Result<Vec<(String, String)>> {
    let tags = input::list(request, "Tags");
    if tags.len() > 50 {
        return Err(CloudWatchError::InvalidParameterValue(
            "The collection Tags must not have a size greater than 50.".into(), // guessed
        ));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let key = input::required_str(tag, "Key", &format!("Tags.member.{}.Key", i + 1))?;
        let value = input::required_str(tag, "Value", &format!("Tags.member.{}.Value", i + 1))?;
        input::check_len(key, &format!("Tags.member.{}.Key", i + 1), 1, 128)?;
        input::check_len(value, &format!("Tags.member.{}.Value", i + 1), 0, 256)?;
        out.retain(|(k, _)| k != key);
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Validate PutMetricAlarm's input into a new record (state fields set for a new alarm).
fn definition(request: &Value, now_ms: i64) -> Result<AlarmRecord> {
    let name = input::required_str(request, "AlarmName", "AlarmName")?;
    input::check_len(name, "AlarmName", 1, 255)?;
    let description = input::str(request, "AlarmDescription").map(str::to_string);
    if let Some(d) = &description {
        input::check_len(d, "AlarmDescription", 0, 1024)?;
    }
    let comparison = input::required_str(request, "ComparisonOperator", "ComparisonOperator")?;
    if ANOMALY_COMPARISONS.contains(&comparison) || request.get("ThresholdMetricId").is_some() {
        return Err(CloudWatchError::InvalidParameterValue(
            "Wharf does not support anomaly detection alarms (ThresholdMetricId and the LessThanLowerOrGreaterThanUpperThreshold, LessThanLowerThreshold and GreaterThanUpperThreshold operators).".into(),
        ));
    }
    input::check_enum(comparison, "ComparisonOperator", COMPARISONS)?;
    let evaluation_periods =
        input::int(request, "EvaluationPeriods").ok_or_else(|| missing("EvaluationPeriods"))?;
    if evaluation_periods < 1 {
        return Err(invalid_value(evaluation_periods, "EvaluationPeriods"));
    }
    let datapoints_to_alarm = input::int(request, "DatapointsToAlarm");
    if let Some(m) = datapoints_to_alarm {
        if m < 1 || m > evaluation_periods {
            return Err(CloudWatchError::InvalidParameterValue(format!(
                "DatapointsToAlarm ({m}) must be between 1 and EvaluationPeriods ({evaluation_periods})." // guessed
            )));
        }
    }
    let threshold = input::double(request, "Threshold").ok_or_else(|| missing("Threshold"))?;
    if !threshold.is_finite() {
        return Err(invalid_value(
            protocol::xml::format_double(threshold),
            "Threshold",
        ));
    }
    let treat_missing_data = input::str(request, "TreatMissingData").map(str::to_string);
    if let Some(t) = &treat_missing_data {
        input::check_enum(t, "TreatMissingData", TREAT_MISSING)?;
    }
    let single = [
        "MetricName",
        "Namespace",
        "Statistic",
        "ExtendedStatistic",
        "Period",
        "Unit",
        "Dimensions",
    ]
    .iter()
    .any(|m| request.get(*m).is_some());
    let metrics = input::list(request, "Metrics");
    let mut record = AlarmRecord {
        name: name.to_string(),
        description,
        actions_enabled: input::bool(request, "ActionsEnabled").unwrap_or(true),
        ok_actions: check_actions(request, "OKActions")?,
        alarm_actions: check_actions(request, "AlarmActions")?,
        insufficient_data_actions: check_actions(request, "InsufficientDataActions")?,
        namespace: None,
        metric_name: None,
        dimensions: Vec::new(),
        statistic: None,
        extended_statistic: None,
        period: None,
        unit: None,
        metrics: None,
        evaluation_periods,
        datapoints_to_alarm,
        threshold: Some(threshold),
        comparison_operator: comparison.to_string(),
        treat_missing_data,
        evaluate_low_sample_count_percentile: None,
        tags: check_tags(request)?,
        state_value: INSUFFICIENT_DATA.to_string(),
        state_reason: "Unchecked: Initial alarm creation".to_string(),
        state_reason_data: None,
        state_updated_ms: now_ms,
        state_transitioned_ms: now_ms,
        configuration_updated_ms: now_ms,
    };
    if !metrics.is_empty() {
        if single {
            return Err(CloudWatchError::InvalidParameterCombination(
                "The parameters MetricName, Namespace, Statistic, ExtendedStatistic, Dimensions, Period and Unit cannot be specified together with Metrics.".into(), // guessed
            ));
        }
        if metrics.len() > 10 {
            return Err(CloudWatchError::InvalidParameterValue(
                "The collection Metrics must not have a size greater than 10.".into(), // guessed
            ));
        }
        let queries = metric_data::parse_queries(metrics, "Metrics")?;
        let returning: Vec<_> = queries.iter().filter(|q| q.return_data).collect();
        if returning.len() != 1 {
            return Err(CloudWatchError::InvalidParameterValue(
                "Exactly one element of the metrics list should return data.".into(), // guessed
            ));
        }
        let period = returning[0].effective_period(&queries).unwrap_or(60);
        check_alarm_period(period, evaluation_periods, "Metrics")?;
        record.metrics = Some(Value::Array(metrics.to_vec()));
        return Ok(record);
    }
    let namespace = input::str(request, "Namespace");
    let metric_name = input::str(request, "MetricName");
    let (Some(namespace), Some(metric_name)) = (namespace, metric_name) else {
        return Err(missing(if namespace.is_none() && metric_name.is_some() {
            "Namespace"
        } else {
            "MetricName"
        }));
    };
    input::check_len(namespace, "Namespace", 1, 255)?;
    input::check_len(metric_name, "MetricName", 1, 255)?;
    record.namespace = Some(namespace.to_string());
    record.metric_name = Some(metric_name.to_string());
    record.dimensions = input::dimensions(request, "Dimensions", "Dimensions")?;
    record.unit = input::unit(request, "Unit")?;
    match (
        input::str(request, "Statistic"),
        input::str(request, "ExtendedStatistic"),
    ) {
        (Some(s), None) => {
            input::check_enum(s, "Statistic", input::STATISTICS)?;
            record.statistic = Some(s.to_string());
        }
        (None, Some(e)) => {
            input::extended_statistic(e, "ExtendedStatistic")?;
            record.extended_statistic = Some(e.to_string());
            if let Some(v) = input::str(request, "EvaluateLowSampleCountPercentile") {
                input::check_enum(
                    v,
                    "EvaluateLowSampleCountPercentile",
                    &["evaluate", "ignore"],
                )?;
                record.evaluate_low_sample_count_percentile = Some(v.to_string());
            }
        }
        (Some(_), Some(_)) => {
            return Err(CloudWatchError::InvalidParameterCombination(
                "The parameters Statistic and ExtendedStatistic are mutually exclusive and you have specified both.".into(), // guessed
            ));
        }
        (None, None) => {
            return Err(CloudWatchError::InvalidParameterCombination(
                "One of the parameters Statistic or ExtendedStatistic must be specified.".into(), // guessed
            ));
        }
    }
    let period = input::int(request, "Period").ok_or_else(|| missing("Period"))?;
    check_alarm_period(period, evaluation_periods, "Period")?;
    record.period = Some(period);
    Ok(record)
}

/// Alarm periods are 10, 20, 30 or a multiple of 60 seconds, and the evaluation range is at
/// most a day (seven days for periods of an hour or more).
fn check_alarm_period(period: i64, evaluation_periods: i64, parameter: &str) -> Result<()> {
    if !(matches!(period, 10 | 20 | 30) || (period >= 60 && period % 60 == 0)) {
        return Err(CloudWatchError::InvalidParameterValue(format!(
            "The parameter {parameter} must be 10, 20, 30 or a multiple of 60." // guessed
        )));
    }
    let limit = if period >= 3600 { 7 * 86_400 } else { 86_400 };
    if period.saturating_mul(evaluation_periods) > limit {
        return Err(CloudWatchError::InvalidParameterValue(format!(
            "The product of EvaluationPeriods and Period must not exceed {limit}." // guessed
        )));
    }
    Ok(())
}

/// Configuration history data: the alarm as JSON with `+0000` dates.
fn history_alarm(alarm: &AlarmRecord, ctx: &CloudWatchContext) -> Value {
    let mut out = alarm.to_output(ctx);
    for field in [
        "AlarmConfigurationUpdatedTimestamp",
        "StateUpdatedTimestamp",
        "StateTransitionedTimestamp",
    ] {
        let ms = match field {
            "AlarmConfigurationUpdatedTimestamp" => alarm.configuration_updated_ms,
            "StateUpdatedTimestamp" => alarm.state_updated_ms,
            _ => alarm.state_transitioned_ms,
        };
        out[field] = json!(json_date(ms));
    }
    out
}

const RETRIES: usize = 10;

fn conflict() -> CloudWatchError {
    CloudWatchError::Conflict("The alarm was changed concurrently; retry the request.".into())
    // guessed
}

pub async fn put_metric_alarm(ctx: &CloudWatchContext, request: &Value) -> Result<()> {
    let now = ctx.now_ms();
    let new = definition(request, now)?;
    let key = alarm_key(&new.name);
    for _ in 0..RETRIES {
        let existing = load(ctx.store.as_ref(), &new.name).await?;
        let mut record = new.clone();
        let (revision, history) = match &existing {
            // An update keeps the state and the tags (PutMetricAlarm ignores Tags on updates).
            Some((old, revision)) => {
                record.state_value = old.state_value.clone();
                record.state_reason = old.state_reason.clone();
                record.state_reason_data = old.state_reason_data.clone();
                record.state_updated_ms = old.state_updated_ms;
                record.state_transitioned_ms = old.state_transitioned_ms;
                record.tags = old.tags.clone();
                let data = json!({
                    "version": "1.0",
                    "type": "Update",
                    "updatedAlarm": history_alarm(&record, ctx),
                    "originalUpdatedAlarm": history_alarm(old, ctx),
                });
                (
                    *revision,
                    (format!("Alarm \"{}\" updated", record.name), data),
                )
            }
            None => {
                let data = json!({"version": "1.0", "type": "Create", "createdAlarm": history_alarm(&record, ctx)});
                (0, (format!("Alarm \"{}\" created", record.name), data))
            }
        };
        let item = HistoryItem {
            alarm_name: record.name.clone(),
            timestamp_ms: now,
            item_type: "ConfigurationUpdate".into(),
            summary: history.0,
            data: history.1.to_string(),
        };
        let response = ctx
            .store
            .txn(Txn {
                compares: vec![unchanged(&key, revision)],
                success: vec![put(key.clone(), encode(&record)), history_op(&item, 0)],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            return Ok(());
        }
    }
    Err(conflict())
}

fn page_size(request: &Value, default: i64) -> Result<usize> {
    match input::int(request, "MaxRecords") {
        None => Ok(default as usize),
        Some(n) if (1..=100).contains(&n) => Ok(n as usize),
        Some(n) => Err(invalid_value(n, "MaxRecords")),
    }
}

pub async fn describe_alarms(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let names = input::strings(request, "AlarmNames");
    if names.len() > 100 {
        return Err(CloudWatchError::InvalidParameterValue(
            "The collection AlarmNames must not have a size greater than 100.".into(), // guessed
        ));
    }
    let prefix = input::str(request, "AlarmNamePrefix");
    if prefix.is_some() && !names.is_empty() {
        return Err(CloudWatchError::InvalidParameterCombination(
            "The parameters AlarmNames and AlarmNamePrefix are mutually exclusive and you have specified both.".into(), // guessed
        ));
    }
    let state = input::str(request, "StateValue");
    if let Some(s) = state {
        input::check_enum(s, "StateValue", STATES)?;
    }
    let action_prefix = input::str(request, "ActionPrefix");
    let types = input::strings(request, "AlarmTypes");
    for (i, t) in types.iter().enumerate() {
        input::check_enum(
            t,
            &format!("AlarmTypes.member.{}", i + 1),
            &["CompositeAlarm", "MetricAlarm", "LogAlarm"],
        )?;
    }
    // Without AlarmTypes only metric alarms are described.
    let want_metric = types.is_empty() || types.iter().any(|t| t == "MetricAlarm");
    let max = page_size(request, 50)?;
    let scope =
        format!("DescribeAlarms\0{names:?}\0{prefix:?}\0{state:?}\0{action_prefix:?}\0{types:?}");
    let after = match input::str(request, "NextToken") {
        Some(token) => Some(ctx.decode_token(&scope, token).await?),
        None => None,
    };
    let mut alarms: Vec<AlarmRecord> = Vec::new();
    if want_metric {
        if names.is_empty() {
            let prefix_key = format!("{ALARM_PREFIX}{}", escape(prefix.unwrap_or("")));
            let range = ctx
                .store
                .range(&prefix_key, RangeOptions::default())
                .await?;
            alarms.extend(
                range
                    .kvs
                    .iter()
                    .filter_map(|kv| serde_json::from_slice(&kv.value).ok()),
            );
        } else {
            for name in &names {
                if let Some((alarm, _)) = load(ctx.store.as_ref(), name).await? {
                    alarms.push(alarm);
                }
            }
        }
    }
    alarms.sort_by(|a, b| a.name.cmp(&b.name));
    alarms.dedup_by(|a, b| a.name == b.name);
    let matching: Vec<&AlarmRecord> = alarms
        .iter()
        .filter(|a| state.is_none_or(|s| a.state_value == s))
        .filter(|a| {
            action_prefix.is_none_or(|p| {
                a.alarm_actions
                    .iter()
                    .chain(&a.ok_actions)
                    .chain(&a.insufficient_data_actions)
                    .any(|arn| arn.starts_with(p))
            })
        })
        .filter(|a| {
            after
                .as_ref()
                .is_none_or(|after| a.name.as_str() > after.as_str())
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .take(max)
        .map(|a| a.to_output(ctx))
        .collect();
    let mut out = json!({"MetricAlarms": page});
    if types.iter().any(|t| t == "CompositeAlarm") {
        out["CompositeAlarms"] = json!([]);
    }
    if matching.len() > max {
        out["NextToken"] = json!(ctx.encode_token(&scope, &matching[max - 1].name).await?);
    }
    Ok(out)
}

pub async fn describe_alarms_for_metric(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let metric_name = input::required_str(request, "MetricName", "MetricName")?;
    let namespace = input::required_str(request, "Namespace", "Namespace")?;
    let statistic = input::str(request, "Statistic");
    let extended = input::str(request, "ExtendedStatistic");
    let period = input::int(request, "Period");
    let unit = input::unit(request, "Unit")?;
    let dimensions = if request.get("Dimensions").is_some() {
        Some(input::dimensions(request, "Dimensions", "Dimensions")?)
    } else {
        None
    };
    let alarms = load_all(ctx.store.as_ref()).await?;
    let matching: Vec<Value> = alarms
        .iter()
        .map(|(a, _)| a)
        .filter(|a| {
            a.metric_name.as_deref() == Some(metric_name)
                && a.namespace.as_deref() == Some(namespace)
        })
        .filter(|a| statistic.is_none_or(|s| a.statistic.as_deref() == Some(s)))
        .filter(|a| extended.is_none_or(|s| a.extended_statistic.as_deref() == Some(s)))
        .filter(|a| period.is_none_or(|p| a.period == Some(p)))
        .filter(|a| unit.as_ref().is_none_or(|u| a.unit.as_ref() == Some(u)))
        .filter(|a| dimensions.as_ref().is_none_or(|d| &a.dimensions == d))
        .map(|a| a.to_output(ctx))
        .collect();
    Ok(json!({"MetricAlarms": matching}))
}

fn alarm_names(request: &Value) -> Result<Vec<String>> {
    if request.get("AlarmNames").is_none() {
        return Err(missing("AlarmNames"));
    }
    let names = input::strings(request, "AlarmNames");
    if names.len() > 100 {
        return Err(CloudWatchError::InvalidParameterValue(
            "The collection AlarmNames must not have a size greater than 100.".into(), // guessed
        ));
    }
    Ok(names)
}

pub async fn delete_alarms(ctx: &CloudWatchContext, request: &Value) -> Result<()> {
    let names = alarm_names(request)?;
    let now = ctx.now_ms();
    for name in names {
        delete_alarm(ctx, &name, now).await?;
    }
    Ok(())
}

/// Delete one alarm with its `ConfigurationUpdate` history item, re-reading it when a
/// concurrent write (the evaluator's transition, SetAlarmState) got there first: the history
/// item must describe the alarm as deleted, and the client must never be told of a delete that
/// did not happen.
async fn delete_alarm(ctx: &CloudWatchContext, name: &str, now: i64) -> Result<()> {
    let store = ctx.store.as_ref();
    for _ in 0..RETRIES {
        let Some((alarm, revision)) = load(store, name).await? else {
            // Already gone (DeleteAlarms ignores unknown names).
            return Ok(());
        };
        let item = HistoryItem {
            alarm_name: name.to_string(),
            timestamp_ms: now,
            item_type: "ConfigurationUpdate".into(),
            summary: format!("Alarm \"{name}\" deleted"),
            data: json!({"version": "1.0", "type": "Delete", "deletedAlarm": history_alarm(&alarm, ctx)}).to_string(),
        };
        let key = alarm_key(name);
        let response = store
            .txn(Txn {
                compares: vec![unchanged(&key, revision)],
                success: vec![Op::Delete { key }, history_op(&item, 0)],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            return Ok(());
        }
    }
    Err(conflict())
}

pub async fn set_alarm_state(ctx: &CloudWatchContext, request: &Value) -> Result<()> {
    let name = input::required_str(request, "AlarmName", "AlarmName")?;
    let state = input::required_str(request, "StateValue", "StateValue")?;
    input::check_enum(state, "StateValue", STATES)?;
    let reason = input::required_str(request, "StateReason", "StateReason")?;
    input::check_len(reason, "StateReason", 0, 1023)?;
    let reason_data = input::str(request, "StateReasonData");
    if let Some(data) = reason_data {
        input::check_len(data, "StateReasonData", 0, 4000)?;
        if serde_json::from_str::<Value>(data).is_err() {
            return Err(CloudWatchError::InvalidFormat(
                "StateReasonData must be valid JSON.".into(), // guessed
            ));
        }
    }
    for _ in 0..RETRIES {
        let Some((alarm, revision)) = load(ctx.store.as_ref(), name).await? else {
            return Err(CloudWatchError::ResourceNotFound(format!(
                "Alarm {name} not found"
            ))); // guessed
        };
        let t = Transition {
            state: state.to_string(),
            reason: reason.to_string(),
            reason_data: reason_data.map(str::to_string),
            now_ms: ctx.now_ms(),
        };
        if transition(ctx.store.as_ref(), alarm, revision, t).await? {
            return Ok(());
        }
    }
    Err(conflict())
}

pub async fn set_actions_enabled(
    ctx: &CloudWatchContext,
    request: &Value,
    enabled: bool,
) -> Result<()> {
    for name in alarm_names(request)? {
        for attempt in 0..=RETRIES {
            let Some((mut alarm, revision)) = load(ctx.store.as_ref(), &name).await? else {
                break;
            };
            if alarm.actions_enabled == enabled {
                break;
            }
            alarm.actions_enabled = enabled;
            let key = alarm_key(&name);
            let response = ctx
                .store
                .txn(Txn {
                    compares: vec![unchanged(&key, revision)],
                    success: vec![put(key.clone(), encode(&alarm))],
                    failure: vec![],
                })
                .await?;
            if response.succeeded {
                break;
            }
            if attempt == RETRIES {
                return Err(conflict());
            }
        }
    }
    Ok(())
}

pub async fn describe_alarm_history(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let name = input::str(request, "AlarmName");
    let item_type = input::str(request, "HistoryItemType");
    if let Some(t) = item_type {
        input::check_enum(
            t,
            "HistoryItemType",
            &[
                "ConfigurationUpdate",
                "StateUpdate",
                "Action",
                "AlarmContributorStateUpdate",
                "AlarmContributorAction",
            ],
        )?;
    }
    let start = input::time_ms(request, "StartDate");
    let end = input::time_ms(request, "EndDate");
    let ascending = match input::str(request, "ScanBy") {
        None | Some("TimestampDescending") => false,
        Some("TimestampAscending") => true,
        Some(other) => return Err(invalid_value(other, "ScanBy")),
    };
    let types = input::strings(request, "AlarmTypes");
    let want_metric = types.is_empty() || types.iter().any(|t| t == "MetricAlarm");
    let max = page_size(request, 100)?;
    let scope = format!(
        "DescribeAlarmHistory\0{name:?}\0{item_type:?}\0{start:?}\0{end:?}\0{ascending}\0{types:?}"
    );
    let offset: usize = match input::str(request, "NextToken") {
        Some(token) => ctx
            .decode_token(&scope, token)
            .await?
            .parse()
            .map_err(|_| CloudWatchError::InvalidNextToken("Invalid NextToken".into()))?,
        None => 0,
    };
    let prefix = match name {
        Some(n) => history_prefix(n),
        None => HISTORY_PREFIX.to_string(),
    };
    // (item, creating revision, key): time, then write order, orders the items.
    let mut items: Vec<(HistoryItem, i64, String)> = if want_metric {
        let range = ctx.store.range(&prefix, RangeOptions::default()).await?;
        range
            .kvs
            .iter()
            .filter_map(|kv| {
                Some((
                    serde_json::from_slice(&kv.value).ok()?,
                    kv.create_revision,
                    kv.key.clone(),
                ))
            })
            .collect()
    } else {
        Vec::new()
    };
    items.retain(|(i, _, _)| {
        item_type.is_none_or(|t| i.item_type == t)
            && start.is_none_or(|s| i.timestamp_ms >= s)
            && end.is_none_or(|e| i.timestamp_ms <= e)
    });
    items.sort_by(|a, b| {
        a.0.timestamp_ms
            .cmp(&b.0.timestamp_ms)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });
    if !ascending {
        items.reverse();
    }
    let page: Vec<Value> = items
        .iter()
        .skip(offset)
        .take(max)
        .map(|(i, _, _)| i.to_output())
        .collect();
    let mut out = json!({"AlarmHistoryItems": page});
    if offset + max < items.len() {
        out["NextToken"] = json!(
            ctx.encode_token(&scope, &(offset + max).to_string())
                .await?
        );
    }
    Ok(out)
}

/// Delete history items older than the retention (30 days).
pub async fn prune_history(
    store: &dyn Store,
    now_ms: i64,
) -> std::result::Result<usize, StoreError> {
    let range = store.range(HISTORY_PREFIX, RangeOptions::default()).await?;
    let cutoff = now_ms - HISTORY_RETENTION_MS;
    let old: Vec<Op> = range
        .kvs
        .iter()
        .filter(|kv| {
            serde_json::from_slice::<HistoryItem>(&kv.value)
                .map(|i| i.timestamp_ms < cutoff)
                .unwrap_or(true)
        })
        .map(|kv| Op::Delete {
            key: kv.key.clone(),
        })
        .collect();
    let count = old.len();
    for chunk in old.chunks(500) {
        store
            .txn(Txn {
                compares: vec![],
                success: chunk.to_vec(),
                failure: vec![],
            })
            .await?;
    }
    Ok(count)
}

/// The alarm named by an alarm ARN of this region and account.
fn arn_alarm_name<'a>(ctx: &CloudWatchContext, arn: &'a str) -> Result<&'a str> {
    let prefix = format!(
        "arn:aws:cloudwatch:{}:{}:alarm:",
        ctx.region, ctx.account_id
    );
    match arn.strip_prefix(&prefix) {
        Some(name) if !name.is_empty() => Ok(name),
        _ if arn.starts_with("arn:") && arn.split(':').count() >= 6 => {
            Err(CloudWatchError::ResourceNotFoundException(
                format!("The resource {arn} does not exist."), // guessed
            ))
        }
        _ => Err(invalid_value(arn, "ResourceARN")),
    }
}

async fn update_tags(
    ctx: &CloudWatchContext,
    arn: &str,
    change: impl Fn(&mut Vec<(String, String)>) -> Result<()>,
) -> Result<()> {
    let name = arn_alarm_name(ctx, arn)?;
    for _ in 0..RETRIES {
        let Some((mut alarm, revision)) = load(ctx.store.as_ref(), name).await? else {
            return Err(CloudWatchError::ResourceNotFoundException(format!(
                "The resource {arn} does not exist." // guessed
            )));
        };
        change(&mut alarm.tags)?;
        let key = alarm_key(name);
        let response = ctx
            .store
            .txn(Txn {
                compares: vec![unchanged(&key, revision)],
                success: vec![put(key.clone(), encode(&alarm))],
                failure: vec![],
            })
            .await?;
        if response.succeeded {
            return Ok(());
        }
    }
    Err(conflict())
}

pub async fn tag_resource(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let arn = input::required_str(request, "ResourceARN", "ResourceARN")?;
    if request.get("Tags").is_none() {
        return Err(missing("Tags"));
    }
    let tags = check_tags(request)?;
    update_tags(ctx, arn, |existing| {
        for (k, v) in &tags {
            existing.retain(|(ek, _)| ek != k);
            existing.push((k.clone(), v.clone()));
        }
        if existing.len() > 50 {
            return Err(CloudWatchError::InvalidParameterValue(
                "A resource can have at most 50 tags.".into(), // guessed
            ));
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn untag_resource(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let arn = input::required_str(request, "ResourceARN", "ResourceARN")?;
    if request.get("TagKeys").is_none() {
        return Err(missing("TagKeys"));
    }
    let keys = input::strings(request, "TagKeys");
    update_tags(ctx, arn, |existing| {
        existing.retain(|(k, _)| !keys.contains(k));
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn list_tags_for_resource(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let arn = input::required_str(request, "ResourceARN", "ResourceARN")?;
    let name = arn_alarm_name(ctx, arn)?;
    let Some((alarm, _)) = load(ctx.store.as_ref(), name).await? else {
        return Err(CloudWatchError::ResourceNotFoundException(format!(
            "The resource {arn} does not exist." // guessed
        )));
    };
    let tags: Vec<Value> = alarm
        .tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({"Tags": tags}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_slashes_so_prefixes_do_not_overlap() {
        assert_eq!(alarm_key("a/b%"), "cloudwatch/alarm/a%2Fb%25");
        assert!(!history_key("a/b", 1, 0).starts_with(&history_prefix("a")));
        assert!(history_key("a", 1, 0).starts_with(&history_prefix("a")));
        assert!(history_key("a", 5, 0) < history_key("a", 5, 1));
    }

    #[test]
    fn definitions_are_validated() {
        let base = json!({
            "AlarmName": "high-cpu", "MetricName": "CPU", "Namespace": "App", "Statistic": "Average",
            "Period": 60, "EvaluationPeriods": 3, "DatapointsToAlarm": 2, "Threshold": 80.0,
            "ComparisonOperator": "GreaterThanThreshold", "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:ops"]
        });
        let record = definition(&base, 1000).expect("valid");
        assert_eq!(record.state_value, INSUFFICIENT_DATA);
        assert_eq!(record.state_reason, "Unchecked: Initial alarm creation");
        let with = |patch: Value| {
            let mut v = base.clone();
            for (k, val) in patch.as_object().unwrap() {
                if val.is_null() {
                    v.as_object_mut().unwrap().remove(k);
                } else {
                    v[k] = val.clone();
                }
            }
            definition(&v, 1000)
        };
        assert!(with(json!({"Period": 45})).is_err());
        assert!(with(json!({"Period": 10})).is_ok());
        assert!(with(json!({"Period": 20})).is_ok());
        assert!(with(json!({"Period": 15})).is_err());
        assert!(with(json!({"DatapointsToAlarm": 4})).is_err());
        assert!(
            with(json!({"ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"}))
                .is_err()
        );
        assert!(with(json!({"TreatMissingData": "sometimes"})).is_err());
        assert!(with(json!({"ExtendedStatistic": "p99"})).is_err());
        assert!(with(json!({"Statistic": null, "ExtendedStatistic": "p99"})).is_ok());
        assert!(with(json!({"AlarmActions": ["not-an-arn"]})).is_err());
        assert!(with(json!({"Period": 3600, "EvaluationPeriods": 24})).is_ok());
        assert!(with(json!({"Period": 60, "EvaluationPeriods": 1441})).is_err());
        let err = with(json!({"Threshold": null})).unwrap_err();
        assert_eq!(err.to_string(), "The parameter Threshold is required.");
        let math = json!({
            "AlarmName": "m", "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold",
            "Metrics": [
                {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "A", "MetricName": "B"}, "Period": 60, "Stat": "Sum"}, "ReturnData": false},
                {"Id": "e1", "Expression": "m1 * 2"}
            ]
        });
        let record = definition(&math, 1).expect("math alarm");
        assert_eq!(record.evaluation_period(), 60);
        let mut both = math.clone();
        both["MetricName"] = json!("B");
        assert!(definition(&both, 1).is_err());
    }

    /// A store where another writer touches every alarm just before each of the first
    /// `interfere` transactions on it, so their compare-and-swap fails.
    struct Contended {
        inner: store::MemoryStore,
        interfere: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Store for Contended {
        async fn get(&self, key: &str) -> std::result::Result<Option<store::KeyValue>, StoreError> {
            self.inner.get(key).await
        }
        async fn range(
            &self,
            prefix: &str,
            options: RangeOptions,
        ) -> std::result::Result<store::RangeResponse, StoreError> {
            self.inner.range(prefix, options).await
        }
        async fn txn(&self, txn: Txn) -> std::result::Result<store::TxnResponse, StoreError> {
            use std::sync::atomic::Ordering;
            let on_alarm = txn
                .compares
                .iter()
                .find(|c| c.key.starts_with(ALARM_PREFIX));
            if let Some(compare) = on_alarm {
                let left = self.interfere.load(Ordering::SeqCst);
                if left > 0 {
                    self.interfere.store(left - 1, Ordering::SeqCst);
                    if let Some(kv) = self.inner.get(&compare.key).await? {
                        self.inner.put(&compare.key, kv.value).await?;
                    }
                }
            }
            self.inner.txn(txn).await
        }
        async fn watch(
            &self,
            prefix: &str,
            from: store::Revision,
        ) -> std::result::Result<store::Watch, StoreError> {
            self.inner.watch(prefix, from).await
        }
        async fn lease_grant(&self, ttl: i64) -> std::result::Result<store::LeaseId, StoreError> {
            self.inner.lease_grant(ttl).await
        }
        async fn lease_keep_alive(
            &self,
            lease: store::LeaseId,
        ) -> std::result::Result<(), StoreError> {
            self.inner.lease_keep_alive(lease).await
        }
        async fn lease_revoke(&self, lease: store::LeaseId) -> std::result::Result<(), StoreError> {
            self.inner.lease_revoke(lease).await
        }
        async fn revision(&self) -> std::result::Result<store::Revision, StoreError> {
            self.inner.revision().await
        }
    }

    #[tokio::test]
    async fn delete_alarms_retries_concurrent_writes_and_reports_a_conflict() {
        use std::sync::Arc;
        let clock: Arc<dyn store::clock::Clock> = Arc::new(store::clock::ManualClock::new(1000));
        let contended = Arc::new(Contended {
            inner: store::MemoryStore::new(clock.clone()),
            interfere: 0.into(),
        });
        let ctx = CloudWatchContext::new(
            contended.clone(),
            clock,
            Arc::new(metricstore::MetricStore::in_memory()),
            "us-east-1",
            "123456789012",
        );
        let alarm = |name: &str| {
            json!({
                "AlarmName": name, "MetricName": "CPU", "Namespace": "App", "Statistic": "Average",
                "Period": 60, "EvaluationPeriods": 1, "Threshold": 80.0,
                "ComparisonOperator": "GreaterThanThreshold",
            })
        };
        put_metric_alarm(&ctx, &alarm("a")).await.expect("created");
        put_metric_alarm(&ctx, &alarm("b")).await.expect("created");
        // A few lost races: the delete is retried and happens.
        contended
            .interfere
            .store(3, std::sync::atomic::Ordering::SeqCst);
        delete_alarms(&ctx, &json!({"AlarmNames": ["a"]}))
            .await
            .expect("deleted after retries");
        assert!(load(ctx.store.as_ref(), "a").await.unwrap().is_none());
        let history = describe_alarm_history(&ctx, &json!({"AlarmName": "a"}))
            .await
            .unwrap();
        assert_eq!(
            history["AlarmHistoryItems"][0]["HistorySummary"],
            "Alarm \"a\" deleted"
        );
        assert_eq!(history["AlarmHistoryItems"].as_array().unwrap().len(), 2);
        // Losing every race is a conflict, not a silent success.
        contended
            .interfere
            .store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
        let err = delete_alarms(&ctx, &json!({"AlarmNames": ["b"]}))
            .await
            .expect_err("conflict");
        assert!(matches!(err, CloudWatchError::Conflict(_)), "{err:?}");
        assert!(load(ctx.store.as_ref(), "b").await.unwrap().is_some());
    }

    #[test]
    fn json_dates_use_the_plus_zero_form() {
        assert_eq!(json_date(1_654_252_127_853), "2022-06-03T10:28:47.853+0000");
    }
}
