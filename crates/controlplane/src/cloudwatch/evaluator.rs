//! The alarm evaluator: every alarm is evaluated once a minute (every 10 seconds when its period
//! is shorter than a minute), `EVALUATION_DELAY_MS` after the boundary, and again within a
//! second of any change to its configuration or state (SetAlarmState). As CloudWatch does, it
//! reads an *evaluation range* wider than `EvaluationPeriods` (`evaluation_range`), ending at
//! the newest period that ended at least `EVALUATION_DELAY_MS` ago, and judges the newest N real
//! datapoints in it; only when fewer than N exist are the missing ones filled per
//! `TreatMissingData` ("Configuring how CloudWatch alarms treat missing data"). Then
//! CloudWatch's rules for `DatapointsToAlarm` (M of N) apply, and the alarm moves to its new
//! state with AWS's reason texts, history items and (recorded, undelivered) actions.
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

use std::collections::{BTreeMap, HashMap};
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

/// A period is judged only once it ended at least this long ago. Datapoints arrive late:
/// Wharf's own `AWS/ECS` metrics are published about 11 s after each second ends (the agents'
/// 5 s report interval plus 5 s, `ecs::usage::PUBLISH_LAG_SECONDS`, plus the 1 s publish tick),
/// and clients batch PutMetricData. Judging a period sooner would see it empty or partial
/// (INSUFFICIENT_DATA forever for a 10 s period, or ALARM for `breaching`). CloudWatch too
/// evaluates with a delay.
pub const EVALUATION_DELAY_MS: i64 = 15_000;
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

/// The fewest samples a period needs for its percentile to be judged when
/// `EvaluateLowSampleCountPercentile` is `ignore`: 10/(1-p) for p in [0.5, 1), 10/p below 0.5
/// ("Percentile-based alarms and low data samples"); p0 and p100 (min and max) need no more
/// than one.
fn significant_samples(percentile: f64) -> f64 {
    let p = percentile / 100.0;
    if p <= 0.0 || p >= 1.0 {
        1.0
    } else if p >= 0.5 {
        10.0 / (1.0 - p)
    } else {
        10.0 / p
    }
}

/// True when the alarm ignores low-sample percentiles and one of `slots` has too few samples.
fn too_few_samples(alarm: &AlarmRecord, slots: &[Slot]) -> bool {
    if alarm.evaluate_low_sample_count_percentile.as_deref() != Some("ignore") {
        return false;
    }
    let Some(Ok(Statistic::Percentile(p))) =
        alarm.extended_statistic.as_deref().map(Statistic::parse)
    else {
        return false;
    };
    let needed = significant_samples(p);
    slots
        .iter()
        .any(|(_, v)| v.is_some_and(|(_, count)| count < needed))
}

/// Decide an alarm's state from the datapoints it judges (`slots`, oldest first, N of them,
/// `None` for a missing datapoint). `None`: keep the current state (`ignore` without enough
/// data, or a percentile over too few samples with `EvaluateLowSampleCountPercentile=ignore`:
/// "the alarm state does not change during periods with too few data points").
pub fn decide(alarm: &AlarmRecord, slots: &[Slot], now_ms: i64) -> Option<Outcome> {
    if too_few_samples(alarm, slots) {
        return None;
    }
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

/// How many periods the evaluator reads for an alarm judging `n` of them: as many again, at
/// least two more. CloudWatch reads "a higher number of data points than the number specified
/// as Evaluation Periods" without saying how many; this is Wharf's choice. A metric that stops
/// reporting thus keeps its last verdict for that long before `TreatMissingData` applies.
pub fn evaluation_range(n: i64) -> i64 {
    n.saturating_add(n.max(2))
}

/// The datapoints `alarm` judges at `now_ms`: the newest `EvaluationPeriods` real datapoints
/// of its evaluation range (which ends at the newest period that ended at least
/// `EVALUATION_DELAY_MS` ago); when fewer exist, all of them and, for the shortfall, missing
/// datapoints at the newest empty periods (CloudWatch "uses missing data points only as few
/// times as possible"). Oldest first.
pub async fn slots(ctx: &CloudWatchContext, alarm: &AlarmRecord, now_ms: i64) -> Result<Vec<Slot>> {
    // Validation bounds both (periods to i32 seconds, Period × EvaluationPeriods to 7 days);
    // saturating all the same, as a stored record could predate a rule.
    let period_ms = alarm.evaluation_period().clamp(1, i64::from(i32::MAX)) * 1000;
    let n = alarm.evaluation_periods.clamp(1, i64::from(i32::MAX));
    let periods = evaluation_range(n);
    let end = now_ms
        .saturating_sub(EVALUATION_DELAY_MS)
        .div_euclid(period_ms)
        .saturating_mul(period_ms);
    let start = end.saturating_sub(periods.saturating_mul(period_ms));
    let mut values: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
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
            if let Some(v) = metrics::compute(&stat, bucket) {
                values.insert(bucket.timestamp_ms, (v, bucket.count));
            }
        }
    }
    values.retain(|t, _| (start..end).contains(t));
    Ok(judged(values, start, end, period_ms, n))
}

/// Pick the datapoints to judge out of the real ones of `[start, end)` (see [`slots`]).
fn judged(
    values: BTreeMap<i64, (f64, f64)>,
    start: i64,
    end: i64,
    period_ms: i64,
    n: i64,
) -> Vec<Slot> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let mut out: Vec<Slot> = values
        .iter()
        .rev()
        .take(n)
        .map(|(t, v)| (*t, Some(*v)))
        .collect();
    // The shortfall: the newest periods without data.
    let mut t = end - period_ms;
    while out.len() < n && t >= start {
        if !values.contains_key(&t) {
            out.push((t, None));
        }
        t -= period_ms;
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

/// How one evaluation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluated {
    /// The alarm keeps its state (nothing written).
    Unchanged,
    /// The new state was written, at this time (the record's `state_updated_ms`).
    Changed(i64, &'static str),
    /// Someone else wrote the alarm meanwhile: nothing was written, evaluate again.
    Raced,
}

/// Evaluate one alarm now and apply a state change, if any.
pub async fn evaluate_one(
    ctx: &CloudWatchContext,
    alarm: AlarmRecord,
    revision: i64,
) -> Result<Evaluated> {
    let now = ctx.now_ms();
    let slots = slots(ctx, &alarm, now).await?;
    let Some(outcome) = decide(&alarm, &slots, now) else {
        return Ok(Evaluated::Unchanged);
    };
    if outcome.state == alarm.state_value {
        return Ok(Evaluated::Unchanged);
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
    if !changed {
        return Ok(Evaluated::Raced);
    }
    debug!(alarm = %name, state = outcome.state, "alarm state changed");
    Ok(Evaluated::Changed(now, outcome.state))
}

/// What the schedule remembers of an alarm's last evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Evaluation {
    /// When (clock ms).
    at: i64,
    /// The alarm's `configuration_updated_ms`, and `state_updated_ms` with `state_value`, then:
    /// a change to either (PutMetricAlarm, SetAlarmState) makes it due at once. The state value
    /// counts too, as two writes may share a millisecond.
    configuration: i64,
    state: (i64, String),
}

/// When each alarm was last evaluated.
#[derive(Debug, Default)]
struct Schedule {
    last: HashMap<String, Evaluation>,
}

impl Schedule {
    /// Whether `alarm` is due at `now`: never evaluated, changed since, or a new interval
    /// began. Intervals are aligned to the clock, `EVALUATION_DELAY_MS` after each minute (each
    /// 10 s for periods under a minute), so a period is judged as soon as it may be.
    fn due(&self, alarm: &AlarmRecord, now: i64) -> bool {
        let interval_ms = if alarm.evaluation_period() < 60 {
            10_000
        } else {
            60_000
        };
        let slot = |t: i64| {
            t.saturating_sub(EVALUATION_DELAY_MS)
                .div_euclid(interval_ms)
        };
        match self.last.get(&alarm.name) {
            Some(last) => {
                last.configuration != alarm.configuration_updated_ms
                    || last.state.0 != alarm.state_updated_ms
                    || last.state.1 != alarm.state_value
                    || slot(now) != slot(last.at)
            }
            None => true,
        }
    }
}

/// One pass: evaluate every alarm that is due.
async fn pass(ctx: &CloudWatchContext, schedule: &mut Schedule) -> Result<()> {
    let now = ctx.now_ms();
    let all = alarms::load_all(ctx.store.as_ref()).await?;
    schedule
        .last
        .retain(|name, _| all.iter().any(|(a, _)| &a.name == name));
    for (alarm, revision) in all {
        if !schedule.due(&alarm, now) {
            continue;
        }
        let mut evaluation = Evaluation {
            at: now,
            configuration: alarm.configuration_updated_ms,
            state: (alarm.state_updated_ms, alarm.state_value.clone()),
        };
        let name = alarm.name.clone();
        match evaluate_one(ctx, alarm, revision).await {
            // Lost a compare-and-swap: not an attempt; the next pass re-reads and retries.
            Ok(Evaluated::Raced) => continue,
            // Our own write is no reason to evaluate again.
            Ok(Evaluated::Changed(at, state)) => evaluation.state = (at, state.to_string()),
            Ok(Evaluated::Unchanged) => {}
            // A failure (a storage error) keeps the state; retried next interval.
            Err(error) => warn!(alarm = %name, %error, "alarm evaluation failed"),
        }
        schedule.last.insert(name, evaluation);
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
    fn the_newest_n_real_datapoints_are_judged() {
        let p = 60_000;
        let values = |points: &[(i64, f64)]| -> BTreeMap<i64, (f64, f64)> {
            points.iter().map(|(t, v)| (t * p, (*v, 1.0))).collect()
        };
        // Range [0, 6) of a 3-period alarm, data at 0, 2, 3 and 5: the newest three.
        let got = judged(
            values(&[(0, 1.0), (2, 2.0), (3, 3.0), (5, 5.0)]),
            0,
            6 * p,
            p,
            3,
        );
        assert_eq!(
            got,
            vec![
                (2 * p, Some((2.0, 1.0))),
                (3 * p, Some((3.0, 1.0))),
                (5 * p, Some((5.0, 1.0)))
            ]
        );
        // Fewer than N: every real one, and the shortfall at the newest empty periods.
        let got = judged(values(&[(1, 1.0)]), 0, 6 * p, p, 3);
        assert_eq!(
            got,
            vec![(p, Some((1.0, 1.0))), (4 * p, None), (5 * p, None)]
        );
        assert_eq!(judged(BTreeMap::new(), 0, 2 * p, p, 3).len(), 2);
        assert_eq!(evaluation_range(1), 3);
        assert_eq!(evaluation_range(5), 10);
    }

    #[test]
    fn low_sample_percentiles_keep_the_state_with_ignore() {
        let mut a = alarm(1, 1, None);
        a.statistic = None;
        a.extended_statistic = Some("p99".into());
        a.evaluate_low_sample_count_percentile = Some("ignore".into());
        // p99 needs 10 / (1 - 0.99) = 1000 samples.
        let few = vec![(T, Some((95.0, 999.0)))];
        let enough = vec![(T, Some((95.0, 1000.0)))];
        assert_eq!(decide(&a, &few, T), None);
        assert_eq!(decide(&a, &enough, T).map(|o| o.state), Some(ALARM));
        // Also when the period is one of several judged.
        let mixed = vec![(T, Some((95.0, 5000.0))), (T + 60_000, Some((95.0, 3.0)))];
        let mut two = a.clone();
        two.evaluation_periods = 2;
        assert_eq!(decide(&two, &mixed, T), None);
        // `evaluate` judges whatever the count.
        a.evaluate_low_sample_count_percentile = Some("evaluate".into());
        assert_eq!(decide(&a, &few, T).map(|o| o.state), Some(ALARM));
        assert_eq!(significant_samples(10.0), 100.0);
        assert_eq!(significant_samples(50.0), 20.0);
        assert_eq!(significant_samples(100.0), 1.0);
    }

    #[test]
    fn schedule_waits_for_the_delay_and_follows_state_changes() {
        let mut schedule = Schedule::default();
        let mut a = alarm(1, 1, None);
        a.state_updated_ms = T;
        assert!(schedule.due(&a, T));
        schedule.last.insert(
            a.name.clone(),
            Evaluation {
                at: T + EVALUATION_DELAY_MS,
                configuration: 0,
                state: (T, INSUFFICIENT_DATA.to_string()),
            },
        );
        // The next minute's evaluation comes EVALUATION_DELAY_MS after the minute.
        assert!(!schedule.due(&a, T + 60_000));
        assert!(!schedule.due(&a, T + 60_000 + EVALUATION_DELAY_MS - 1));
        assert!(schedule.due(&a, T + 60_000 + EVALUATION_DELAY_MS));
        // SetAlarmState makes it due at once: a new state_updated, or a new state set within
        // the same millisecond.
        let mut set = a.clone();
        set.state_updated_ms = T + 20_000;
        assert!(schedule.due(&set, T + 20_500));
        let mut set = a.clone();
        set.state_value = ALARM.into();
        assert!(schedule.due(&set, T + 20_500));
    }

    #[tokio::test]
    async fn a_storage_error_keeps_the_state() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(metricstore::MetricStore::open(dir.path()).unwrap());
        let clock = Arc::new(store::clock::ManualClock::new(T));
        let ctx = CloudWatchContext::new(
            Arc::new(store::MemoryStore::new(clock.clone())),
            clock.clone(),
            metrics.clone(),
            "us-east-1",
            "123456789012",
        );
        // With `breaching`, a metric that reads as empty would go to ALARM.
        let request = json!({
            "AlarmName": "a", "MetricName": "CPU", "Namespace": "App", "Statistic": "Average",
            "Period": 60, "EvaluationPeriods": 1, "Threshold": 80.0,
            "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "breaching",
        });
        alarms::put_metric_alarm(&ctx, &request).await.unwrap();
        metrics
            .put(vec![metricstore::Sample {
                key: MetricKey::new("App", "CPU", vec![]),
                point: metricstore::Point::value(T - 120_000, 1.0),
                unit: "None".into(),
                resolution: metricstore::Resolution::Standard,
            }])
            .unwrap();
        let (alarm, revision) = alarms::load(ctx.store.as_ref(), "a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            evaluate_one(&ctx, alarm.clone(), revision).await.unwrap(),
            Evaluated::Changed(T, OK)
        );
        // The disk fails: the evaluation fails and the state stays OK.
        rusqlite::Connection::open(dir.path().join("metrics/metrics.db"))
            .unwrap()
            .execute_batch("DROP TABLE chunks")
            .unwrap();
        clock.set_millis(T + 60_000);
        let (alarm, revision) = alarms::load(ctx.store.as_ref(), "a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alarm.state_value, OK);
        assert!(evaluate_one(&ctx, alarm, revision).await.is_err());
        let (alarm, _) = alarms::load(ctx.store.as_ref(), "a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alarm.state_value, OK);
    }

    #[test]
    fn comparison_operators() {
        assert!(breaches("GreaterThanOrEqualToThreshold", 80.0, 80.0));
        assert!(!breaches("GreaterThanThreshold", 80.0, 80.0));
        assert!(breaches("LessThanThreshold", 79.0, 80.0));
        assert!(breaches("LessThanOrEqualToThreshold", 80.0, 80.0));
    }
}
