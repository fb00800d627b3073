//! The alarm evaluator: every alarm is evaluated once a minute, on the minute (every 10 seconds
//! when its period is shorter than a minute) over its last `EvaluationPeriods` complete periods, with
//! CloudWatch's rules for `DatapointsToAlarm` (M of N) and `TreatMissingData`, and moved to its
//! new state with AWS's reason texts, history items and (recorded, undelivered) actions.
//!
//! Level-triggered: each pass reads every alarm from the store and writes only state changes,
//! with a compare-and-swap, so a restarted server (or a second replica) carries on without
//! losing or duplicating transitions. Time comes from the context's clock; the loop itself
//! ticks on tokio time and is cancellable. The same loop applies metric retention
//! (`MetricStore::compact`) and prunes alarm history older than 30 days.
//!
//! Missing data, as CloudWatch documents it: `breaching` and `notBreaching` substitute for the
//! missing points; with `missing` and `ignore`, only the points present count: an evaluation
//! range without any point is INSUFFICIENT_DATA (`missing`) or keeps its state (`ignore`); with
//! at least M points present, M breaching ones mean ALARM; with fewer than M present, ALARM
//! needs all of them breaching (`missing`; `ignore` keeps its state then), any non-breaching
//! point means OK.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metricstore::{MetricKey, Statistic};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::alarms::{self, AlarmRecord, Transition, ALARM, INSUFFICIENT_DATA, OK};
use super::error::Result;
use super::{metric_data, metrics, CloudWatchContext};

/// How often the loop looks for due alarms (tokio time).
const TICK: Duration = Duration::from_millis(500);
const COMPACT_EVERY_MS: i64 = 10 * 60 * 1000;
const PRUNE_HISTORY_EVERY_MS: i64 = 60 * 60 * 1000;

/// One evaluated period: its start and, when data exists, (value, sample count).
pub type Slot = (i64, Option<(f64, f64)>);

/// What an evaluation decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub state: &'static str,
    pub reason: String,
    pub reason_data: String,
}

fn breaches(operator: &str, value: f64, threshold: f64) -> bool {
    match operator {
        "GreaterThanOrEqualToThreshold" => value >= threshold,
        "GreaterThanThreshold" => value > threshold,
        "LessThanThreshold" => value < threshold,
        "LessThanOrEqualToThreshold" => value <= threshold,
        _ => false,
    }
}

fn operator_text(operator: &str) -> &'static str {
    match operator {
        "GreaterThanOrEqualToThreshold" => "greater than or equal to",
        "GreaterThanThreshold" => "greater than",
        "LessThanThreshold" => "less than",
        _ => "less than or equal to",
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `21/11/26 10:01:00`: the datapoint dates in CloudWatch's reasons (dd/mm/yy, UTC).
fn reason_date(ms: i64) -> String {
    let c = protocol::shape::Civil::from_millis(ms);
    format!(
        "{:02}/{:02}/{:02} {:02}:{:02}:{:02}",
        c.day,
        c.month,
        c.year.rem_euclid(100),
        c.hour,
        c.minute,
        c.second
    )
}

/// Decide an alarm's state from its evaluation range (`slots`, oldest first). `None`: keep the
/// current state (`ignore` without enough data).
pub fn decide(alarm: &AlarmRecord, slots: &[Slot], now_ms: i64) -> Option<Outcome> {
    let threshold = alarm.threshold.unwrap_or_default();
    let op = alarm.comparison_operator.as_str();
    let n = slots.len();
    let m = (alarm
        .datapoints_to_alarm
        .unwrap_or(alarm.evaluation_periods)
        .max(1) as usize)
        .min(n.max(1));
    let mode = alarm.treat_missing_data.as_deref().unwrap_or("missing");
    let present: Vec<(i64, f64, f64)> = slots
        .iter()
        .filter_map(|(t, v)| v.map(|(value, count)| (*t, value, count)))
        .collect();
    let missing = n - present.len();
    let breaching: Vec<&(i64, f64, f64)> = present
        .iter()
        .filter(|p| breaches(op, p.1, threshold))
        .collect();
    let not_breaching: Vec<&(i64, f64, f64)> = present
        .iter()
        .filter(|p| !breaches(op, p.1, threshold))
        .collect();
    let reason_data = reason_data(alarm, slots, &present, now_ms);
    let outcome = |state: &'static str, reason: String| {
        Some(Outcome {
            state,
            reason,
            reason_data: reason_data.clone(),
        })
    };
    let list = |points: &[&(i64, f64, f64)]| -> String {
        points
            .iter()
            .rev()
            .map(|(t, v, _)| format!("{} ({})", protocol::xml::format_double(*v), reason_date(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let crossed = |points: &[&(i64, f64, f64)], negated: bool, transition: String| {
        format!(
            "Threshold Crossed: {} out of the last {n} datapoints [{}] {} {}{} the threshold ({}) ({transition}).",
            points.len(),
            list(points),
            if points.len() == 1 { "was" } else { "were" },
            if negated { "not " } else { "" },
            operator_text(op),
            protocol::xml::format_double(threshold),
        )
    };
    let to_alarm = format!(
        "minimum {} for OK -> ALARM transition",
        plural(m, "datapoint")
    );
    // To be OK, fewer than M may breach: at least N-M+1 points must not.
    let to_ok = format!(
        "minimum {} for ALARM -> OK transition",
        plural(n + 1 - m, "datapoint")
    ); // guessed
    if present.is_empty() {
        let treated = |as_what: &str| {
            format!(
                "Threshold Crossed: no datapoints were received for {} and {} {} treated as [{as_what}].",
                plural(n, "period"),
                plural(n, "missing datapoint"),
                if n == 1 { "was" } else { "were" }
            )
        };
        return match mode {
            "ignore" => None,
            "breaching" => outcome(ALARM, treated("Breaching")),
            "notBreaching" => outcome(OK, treated("NonBreaching")),
            _ => outcome(
                INSUFFICIENT_DATA,
                format!(
                    "Insufficient Data: {} {} unknown.",
                    plural(n, "datapoint"),
                    if n == 1 { "was" } else { "were" }
                ),
            ),
        };
    }
    let substituted = match mode {
        "breaching" => missing,
        _ => 0,
    };
    let is_alarm = match mode {
        "breaching" | "notBreaching" => breaching.len() + substituted >= m,
        _ if present.len() >= m => breaching.len() >= m,
        // Fewer than M points present: ALARM only if every one of them breaches.
        _ if not_breaching.is_empty() => {
            if mode == "ignore" {
                return None;
            }
            true
        }
        _ => false,
    };
    if is_alarm {
        outcome(ALARM, crossed(&breaching, false, to_alarm))
    } else {
        outcome(OK, crossed(&not_breaching, true, to_ok))
    }
}

/// CloudWatch's `StateReasonData` document.
fn reason_data(
    alarm: &AlarmRecord,
    slots: &[Slot],
    present: &[(i64, f64, f64)],
    now_ms: i64,
) -> String {
    let mut data = serde_json::Map::new();
    data.insert("version".into(), json!("1.0"));
    data.insert("queryDate".into(), json!(alarms::json_date(now_ms)));
    if let Some((start, _)) = slots.first() {
        data.insert("startDate".into(), json!(alarms::json_date(*start)));
    }
    if let Some(unit) = &alarm.unit {
        data.insert("unit".into(), json!(unit));
    }
    if let Some(stat) = &alarm.statistic {
        data.insert("statistic".into(), json!(stat));
    }
    if let Some(stat) = &alarm.extended_statistic {
        data.insert("extendedStatistic".into(), json!(stat));
    }
    data.insert("period".into(), json!(alarm.evaluation_period()));
    data.insert(
        "recentDatapoints".into(),
        Value::Array(present.iter().map(|(_, v, _)| json!(v)).collect()),
    );
    data.insert(
        "threshold".into(),
        json!(alarm.threshold.unwrap_or_default()),
    );
    if !present.is_empty() {
        let evaluated: Vec<Value> = present
            .iter()
            .rev()
            .map(|(t, v, count)| {
                let mut point = json!({"timestamp": alarms::json_date(*t), "value": v});
                if alarm.metrics.is_none() {
                    point["sampleCount"] = json!(count);
                }
                point
            })
            .collect();
        data.insert("evaluatedDatapoints".into(), Value::Array(evaluated));
    }
    Value::Object(data).to_string()
}

/// The evaluation range of `alarm` at `now_ms`: its last `EvaluationPeriods` complete periods.
pub async fn slots(ctx: &CloudWatchContext, alarm: &AlarmRecord, now_ms: i64) -> Result<Vec<Slot>> {
    let period_ms = alarm.evaluation_period().max(1) * 1000;
    let n = alarm.evaluation_periods.max(1);
    let end = now_ms.div_euclid(period_ms) * period_ms;
    let start = end - n * period_ms;
    let mut values: HashMap<i64, (f64, f64)> = HashMap::new();
    if alarm.metrics.is_some() {
        let queries = alarm.queries()?;
        let results = metric_data::run(ctx, &queries, start, end).await?;
        if let Some(result) = results.first() {
            for (t, v) in metric_data::by_period(&result.points, period_ms) {
                values.insert(t, (v, 1.0));
            }
        }
    } else {
        let key = MetricKey::new(
            alarm.namespace.clone().unwrap_or_default(),
            alarm.metric_name.clone().unwrap_or_default(),
            alarm.dimensions.clone(),
        );
        let stat_name = alarm
            .statistic
            .as_deref()
            .or(alarm.extended_statistic.as_deref())
            .unwrap_or("Average");
        let stat = Statistic::parse(stat_name).unwrap_or(Statistic::Average);
        let buckets =
            metrics::query(ctx, key, start, end, period_ms / 1000, alarm.unit.clone()).await?;
        for bucket in &buckets {
            // A percentile over too few samples: `ignore` treats the period as missing.
            if matches!(stat, Statistic::Percentile(_))
                && alarm.evaluate_low_sample_count_percentile.as_deref() == Some("ignore")
                && bucket.count < 10.0
            {
                continue;
            }
            if let Some(v) = metrics::compute(&stat, bucket) {
                values.insert(bucket.timestamp_ms, (v, bucket.count));
            }
        }
    }
    Ok((0..n)
        .map(|i| {
            let t = start + i * period_ms;
            (t, values.get(&t).copied())
        })
        .collect())
}

/// Evaluate one alarm now and apply a state change, if any. True when the state changed.
pub async fn evaluate_one(
    ctx: &CloudWatchContext,
    alarm: AlarmRecord,
    revision: i64,
) -> Result<bool> {
    let now = ctx.now_ms();
    let slots = slots(ctx, &alarm, now).await?;
    let Some(outcome) = decide(&alarm, &slots, now) else {
        return Ok(false);
    };
    if outcome.state == alarm.state_value {
        return Ok(false);
    }
    let name = alarm.name.clone();
    let changed = alarms::transition(
        ctx.store.as_ref(),
        alarm,
        revision,
        Transition {
            state: outcome.state.to_string(),
            reason: outcome.reason,
            reason_data: Some(outcome.reason_data),
            now_ms: now,
        },
    )
    .await?;
    if changed {
        debug!(alarm = %name, state = outcome.state, "alarm state changed");
    }
    Ok(changed)
}

/// When each alarm was last evaluated (clock ms) and at which configuration.
#[derive(Debug, Default)]
struct Schedule {
    last: HashMap<String, (i64, i64)>,
}

/// One pass: evaluate every alarm that is due.
async fn pass(ctx: &CloudWatchContext, schedule: &mut Schedule) -> Result<()> {
    let now = ctx.now_ms();
    let all = alarms::load_all(ctx.store.as_ref()).await?;
    schedule
        .last
        .retain(|name, _| all.iter().any(|(a, _)| &a.name == name));
    for (alarm, revision) in all {
        let interval_ms = if alarm.evaluation_period() < 60 {
            10_000
        } else {
            60_000
        };
        let due = match schedule.last.get(&alarm.name) {
            // A new or reconfigured alarm is evaluated at once; others once per interval,
            // aligned to the clock (each minute, or each 10 s), so a period is evaluated as
            // soon as it completes.
            Some((at, config)) => {
                *config != alarm.configuration_updated_ms
                    || now.div_euclid(interval_ms) != at.div_euclid(interval_ms)
            }
            None => true,
        };
        if !due {
            continue;
        }
        schedule
            .last
            .insert(alarm.name.clone(), (now, alarm.configuration_updated_ms));
        let name = alarm.name.clone();
        if let Err(error) = evaluate_one(ctx, alarm, revision).await {
            warn!(alarm = %name, %error, "alarm evaluation failed");
        }
    }
    Ok(())
}

/// The controller loop: alarms, metric retention and history retention until cancelled.
pub async fn run(ctx: Arc<CloudWatchContext>, cancel: CancellationToken) {
    let mut schedule = Schedule::default();
    let mut last_compact = i64::MIN;
    let mut last_prune = i64::MIN;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(error) = pass(&ctx, &mut schedule).await {
            warn!(%error, "alarm evaluation pass failed");
        }
        let now = ctx.now_ms();
        if now.saturating_sub(last_compact) >= COMPACT_EVERY_MS {
            last_compact = now;
            let metrics = ctx.metrics.clone();
            match tokio::task::spawn_blocking(move || metrics.compact(now)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(%error, "metric retention failed"),
                Err(error) => warn!(%error, "metric retention task failed"),
            }
        }
        if now.saturating_sub(last_prune) >= PRUNE_HISTORY_EVERY_MS {
            last_prune = now;
            if let Err(error) = alarms::prune_history(ctx.store.as_ref(), now).await {
                warn!(%error, "alarm history retention failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(m: i64, n: i64, mode: Option<&str>) -> AlarmRecord {
        AlarmRecord {
            name: "a".into(),
            description: None,
            actions_enabled: true,
            ok_actions: vec![],
            alarm_actions: vec![],
            insufficient_data_actions: vec![],
            namespace: Some("App".into()),
            metric_name: Some("CPU".into()),
            dimensions: vec![],
            statistic: Some("Average".into()),
            extended_statistic: None,
            period: Some(60),
            unit: None,
            metrics: None,
            evaluation_periods: n,
            datapoints_to_alarm: Some(m),
            threshold: Some(80.0),
            comparison_operator: "GreaterThanThreshold".into(),
            treat_missing_data: mode.map(str::to_string),
            evaluate_low_sample_count_percentile: None,
            tags: vec![],
            state_value: INSUFFICIENT_DATA.into(),
            state_reason: String::new(),
            state_reason_data: None,
            state_updated_ms: 0,
            state_transitioned_ms: 0,
            configuration_updated_ms: 0,
        }
    }

    /// 2026-11-21 10:01:00 UTC.
    const T: i64 = 1_795_255_260_000;

    fn slots(values: &[Option<f64>]) -> Vec<Slot> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (T + i as i64 * 60_000, v.map(|v| (v, 1.0))))
            .collect()
    }

    fn state(a: &AlarmRecord, values: &[Option<f64>]) -> Option<&'static str> {
        decide(a, &slots(values), T + 600_000).map(|o| o.state)
    }

    #[test]
    fn one_datapoint_crossing_reads_like_aws() {
        let outcome =
            decide(&alarm(1, 1, None), &slots(&[Some(92.5)]), T + 60_000).expect("decided");
        assert_eq!(outcome.state, ALARM);
        assert_eq!(
            outcome.reason,
            "Threshold Crossed: 1 out of the last 1 datapoints [92.5 (21/11/26 10:01:00)] was greater than the threshold (80.0) (minimum 1 datapoint for OK -> ALARM transition)."
        );
        let data: Value = serde_json::from_str(&outcome.reason_data).unwrap();
        assert_eq!(data["statistic"], "Average");
        assert_eq!(data["period"], 60);
        assert_eq!(data["recentDatapoints"], json!([92.5]));
        assert_eq!(data["startDate"], "2026-11-21T10:01:00.000+0000");
        assert_eq!(data["evaluatedDatapoints"][0]["sampleCount"], 1.0);
        let outcome =
            decide(&alarm(1, 1, None), &slots(&[Some(12.0)]), T + 60_000).expect("decided");
        assert_eq!(outcome.state, OK);
        assert_eq!(
            outcome.reason,
            "Threshold Crossed: 1 out of the last 1 datapoints [12.0 (21/11/26 10:01:00)] was not greater than the threshold (80.0) (minimum 1 datapoint for ALARM -> OK transition)."
        );
    }

    #[test]
    fn m_of_n() {
        let a = alarm(2, 3, None);
        assert_eq!(
            state(&a, &[Some(90.0), Some(10.0), Some(90.0)]),
            Some(ALARM)
        );
        assert_eq!(state(&a, &[Some(90.0), Some(10.0), Some(10.0)]), Some(OK));
        let reason = decide(&a, &slots(&[Some(90.0), Some(10.0), Some(95.0)]), T)
            .unwrap()
            .reason;
        assert!(
            reason.starts_with("Threshold Crossed: 2 out of the last 3 datapoints [95.0 (21/11/26 10:03:00), 90.0 (21/11/26 10:01:00)] were greater than"),
            "{reason}"
        );
        assert!(
            reason.ends_with("(minimum 2 datapoints for OK -> ALARM transition)."),
            "{reason}"
        );
    }

    #[test]
    fn treat_missing_data_modes() {
        let none = [None, None, None];
        assert_eq!(state(&alarm(3, 3, None), &none), Some(INSUFFICIENT_DATA));
        assert_eq!(
            state(&alarm(3, 3, Some("missing")), &none),
            Some(INSUFFICIENT_DATA)
        );
        assert_eq!(state(&alarm(3, 3, Some("ignore")), &none), None);
        assert_eq!(state(&alarm(3, 3, Some("breaching")), &none), Some(ALARM));
        assert_eq!(state(&alarm(3, 3, Some("notBreaching")), &none), Some(OK));
        // One breaching point, two missing (AWS's "- - X" row).
        let one = [None, None, Some(90.0)];
        assert_eq!(state(&alarm(3, 3, Some("missing")), &one), Some(ALARM));
        assert_eq!(state(&alarm(3, 3, Some("ignore")), &one), None);
        assert_eq!(state(&alarm(3, 3, Some("breaching")), &one), Some(ALARM));
        assert_eq!(state(&alarm(3, 3, Some("notBreaching")), &one), Some(OK));
        // One good point, two missing ("0 - -").
        let good = [Some(1.0), None, None];
        for mode in ["missing", "ignore", "notBreaching"] {
            assert_eq!(state(&alarm(3, 3, Some(mode)), &good), Some(OK), "{mode}");
        }
        assert_eq!(state(&alarm(2, 3, Some("breaching")), &good), Some(ALARM));
        let reason = decide(&alarm(1, 1, Some("breaching")), &slots(&[None]), T)
            .unwrap()
            .reason;
        assert_eq!(
            reason,
            "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as [Breaching]."
        );
        let reason = decide(&alarm(3, 3, None), &slots(&none), T).unwrap().reason;
        assert_eq!(reason, "Insufficient Data: 3 datapoints were unknown.");
    }

    #[test]
    fn comparison_operators() {
        assert!(breaches("GreaterThanOrEqualToThreshold", 80.0, 80.0));
        assert!(!breaches("GreaterThanThreshold", 80.0, 80.0));
        assert!(breaches("LessThanThreshold", 79.0, 80.0));
        assert!(breaches("LessThanOrEqualToThreshold", 80.0, 80.0));
    }
}
