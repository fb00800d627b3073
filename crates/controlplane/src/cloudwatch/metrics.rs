//! PutMetricData, GetMetricStatistics and ListMetrics: validation as CloudWatch does it, then
//! the `metricstore`.

use metricstore::{Bucket, DimensionFilter, MetricKey, Point, Resolution, Sample, Statistic};
use serde_json::{json, Map, Value};

use super::error::{invalid_value, missing, CloudWatchError, Result};
use super::input;
use super::CloudWatchContext;

const TWO_WEEKS_MS: i64 = 14 * 24 * 3600 * 1000;
const TWO_HOURS_MS: i64 = 2 * 3600 * 1000;
/// GetMetricStatistics answers at most this many datapoints per call.
const MAX_DATAPOINTS: i64 = 1440;
/// ListMetrics pages hold up to 500 metrics.
const LIST_METRICS_PAGE: usize = 500;

/// CloudWatch refuses values whose magnitude is outside this range (other than zero).
const MIN_MAGNITUDE: f64 = 8.515_920e-109;
const MAX_MAGNITUDE: f64 = 1.174_271e108;

/// `Namespace`: 1–255 characters, not starting with `:` nor the reserved `AWS/`.
fn namespace(value: &str, parameter: &str) -> Result<()> {
    input::check_len(value, parameter, 1, 255)?;
    if value.starts_with(':') || value.starts_with("AWS/") {
        return Err(invalid_value(value, parameter));
    }
    Ok(())
}

fn check_value(v: f64, parameter: &str) -> Result<()> {
    let abs = v.abs();
    if !v.is_finite() || (abs != 0.0 && !(MIN_MAGNITUDE..=MAX_MAGNITUDE).contains(&abs)) {
        return Err(invalid_value(protocol::xml::format_double(v), parameter));
    }
    Ok(())
}

/// Turn one `MetricDatum` into samples, with AWS's checks.
fn datum_samples(namespace: &str, datum: &Value, at: &str, now_ms: i64) -> Result<Vec<Sample>> {
    let name = input::required_str(datum, "MetricName", &format!("{at}.MetricName"))?;
    input::check_len(name, &format!("{at}.MetricName"), 1, 255)?;
    let dimensions = input::dimensions(datum, "Dimensions", &format!("{at}.Dimensions"))?;
    let unit = input::unit(datum, &format!("{at}.Unit"))?.unwrap_or_else(|| "None".to_string());
    let resolution = match input::int(datum, "StorageResolution") {
        None | Some(60) => Resolution::Standard,
        Some(1) => Resolution::High,
        Some(other) => return Err(invalid_value(other, &format!("{at}.StorageResolution"))),
    };
    let timestamp_ms = match input::time_ms(datum, "Timestamp") {
        None => now_ms,
        Some(t) if t < now_ms - TWO_WEEKS_MS => {
            return Err(CloudWatchError::InvalidParameterValue(format!(
                "The parameter {at}.Timestamp must specify a time no more than two weeks in the past." // guessed
            )));
        }
        Some(t) if t > now_ms + TWO_HOURS_MS => {
            return Err(CloudWatchError::InvalidParameterValue(format!(
                "The parameter {at}.Timestamp must specify a time no more than two hours in the future." // guessed
            )));
        }
        Some(t) => t,
    };
    let value = input::double(datum, "Value");
    let values = input::list(datum, "Values");
    let counts = input::list(datum, "Counts");
    let stats = datum.get("StatisticValues");
    let given: Vec<&str> = [
        ("Value", value.is_some()),
        ("Values", !values.is_empty()),
        ("StatisticValues", stats.is_some()),
    ]
    .iter()
    .filter(|(_, present)| *present)
    .map(|(n, _)| *n)
    .collect();
    if given.len() > 1 {
        return Err(CloudWatchError::InvalidParameterCombination(format!(
            "The parameters {at}.{} and {at}.{} are mutually exclusive and you have specified both.",
            given[0], given[1]
        )));
    }
    if !counts.is_empty() && values.is_empty() {
        return Err(CloudWatchError::InvalidParameterCombination(format!(
            "The parameter {at}.Counts can only be specified together with {at}.Values." // guessed
        )));
    }
    let key = MetricKey::new(namespace, name, dimensions);
    let sample = |point: Point| Sample {
        key: key.clone(),
        point,
        unit: unit.clone(),
        resolution,
    };
    if let Some(v) = value {
        check_value(v, &format!("{at}.Value"))?;
        return Ok(vec![sample(Point::value(timestamp_ms, v))]);
    }
    if let Some(stats) = stats {
        let field = |member: &str| {
            input::double(stats, member)
                .ok_or_else(|| missing(&format!("{at}.StatisticValues.{member}")))
                .and_then(|v| {
                    check_value(v, &format!("{at}.StatisticValues.{member}"))?;
                    Ok(v)
                })
        };
        let (count, sum, min, max) = (
            field("SampleCount")?,
            field("Sum")?,
            field("Minimum")?,
            field("Maximum")?,
        );
        if count <= 0.0 {
            return Err(invalid_value(
                protocol::xml::format_double(count),
                &format!("{at}.StatisticValues.SampleCount"),
            ));
        }
        if min > max {
            return Err(CloudWatchError::InvalidParameterValue(format!(
                "The parameter {at}.StatisticValues.Maximum must be greater than {at}.StatisticValues.Minimum." // guessed
            )));
        }
        return Ok(vec![sample(Point {
            timestamp_ms,
            count,
            sum,
            min,
            max,
        })]);
    }
    if !values.is_empty() {
        if values.len() > 150 {
            return Err(CloudWatchError::InvalidParameterValue(format!(
                "The collection {at}.Values must not have a size greater than 150." // guessed
            )));
        }
        if !counts.is_empty() && counts.len() != values.len() {
            return Err(CloudWatchError::InvalidParameterValue(format!(
                "The parameters {at}.Values and {at}.Counts must be of the same size." // guessed
            )));
        }
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let v = protocol::shape::as_f64(v).unwrap_or(f64::NAN);
            check_value(v, &format!("{at}.Values.member.{}", i + 1))?;
            let count = match counts.get(i) {
                Some(c) => protocol::shape::as_f64(c).unwrap_or(f64::NAN),
                None => 1.0,
            };
            if !count.is_finite() || count < 0.0 {
                return Err(invalid_value(
                    protocol::xml::format_double(count),
                    &format!("{at}.Counts.member.{}", i + 1),
                ));
            }
            if count == 0.0 {
                continue;
            }
            out.push(sample(Point {
                timestamp_ms,
                count,
                sum: v * count,
                min: v,
                max: v,
            }));
        }
        return Ok(out);
    }
    Err(CloudWatchError::InvalidParameterCombination(format!(
        "At least one of the parameters {at}.Value, {at}.Values or {at}.StatisticValues must be specified." // guessed
    )))
}

pub async fn put_metric_data(ctx: &CloudWatchContext, request: &Value) -> Result<()> {
    let ns = input::required_str(request, "Namespace", "Namespace")?;
    namespace(ns, "Namespace")?;
    let now_ms = ctx.now_ms();
    // `MetricData` and the newer `EntityMetricData` (whose entity Wharf does not keep).
    let mut data: Vec<(String, &Value)> = input::list(request, "MetricData")
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("MetricData.member.{}", i + 1), d))
        .collect();
    for (i, entity) in input::list(request, "EntityMetricData").iter().enumerate() {
        for (j, d) in input::list(entity, "MetricData").iter().enumerate() {
            data.push((
                format!(
                    "EntityMetricData.member.{}.MetricData.member.{}",
                    i + 1,
                    j + 1
                ),
                d,
            ));
        }
    }
    if data.is_empty() {
        return Err(missing("MetricData"));
    }
    if data.len() > 1000 {
        return Err(CloudWatchError::InvalidParameterValue(
            "The collection MetricData must not have a size greater than 1000.".into(), // guessed
        ));
    }
    let mut samples = Vec::new();
    for (at, datum) in data {
        samples.extend(datum_samples(ns, datum, &at, now_ms)?);
    }
    let metrics = ctx.metrics.clone();
    tokio::task::spawn_blocking(move || metrics.put(samples))
        .await
        .map_err(|e| CloudWatchError::Internal(e.to_string()))?
        .map_err(|e| CloudWatchError::Internal(e.to_string()))
}

/// A statistic of a bucket as GetMetricStatistics and the alarms compute it.
pub fn compute(stat: &Statistic, bucket: &Bucket) -> Option<f64> {
    stat.compute(bucket)
}

/// Check a period the way GetMetricStatistics/GetMetricData do: 1, 5, 10, 20, 30 or a
/// multiple of 60 (the model's `Period` documentation lists these), and at most what fits in
/// the model's 32-bit `Integer`.
pub fn check_period(period: i64, parameter: &str) -> Result<()> {
    if period < 1
        || period > i64::from(i32::MAX)
        || !(matches!(period, 1 | 5 | 10 | 20 | 30) || period % 60 == 0)
    {
        return Err(CloudWatchError::InvalidParameterValue(format!(
            "The parameter {parameter} must be a multiple of 60, or 1, 5, 10, 20 or 30 for high-resolution metrics." // guessed
        )));
    }
    Ok(())
}

/// Run a blocking store query off the async threads. A storage failure is an error, never
/// "no data": an alarm must not judge a disk error as missing (or breaching) data.
pub async fn query(
    ctx: &CloudWatchContext,
    key: MetricKey,
    start_ms: i64,
    end_ms: i64,
    period: i64,
    unit: Option<String>,
) -> Result<Vec<Bucket>> {
    let metrics = ctx.metrics.clone();
    tokio::task::spawn_blocking(move || {
        metrics.try_query(&key, start_ms, end_ms, period, unit.as_deref())
    })
    .await
    .map_err(|e| CloudWatchError::Internal(e.to_string()))?
    .map_err(|e| CloudWatchError::Internal(format!("metric query failed: {e}")))
}

pub async fn get_metric_statistics(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let ns = input::required_str(request, "Namespace", "Namespace")?;
    let name = input::required_str(request, "MetricName", "MetricName")?;
    let start = input::time_ms(request, "StartTime").ok_or_else(|| missing("StartTime"))?;
    let end = input::time_ms(request, "EndTime").ok_or_else(|| missing("EndTime"))?;
    let period = input::int(request, "Period").ok_or_else(|| missing("Period"))?;
    let dimensions = input::dimensions(request, "Dimensions", "Dimensions")?;
    let unit = input::unit(request, "Unit")?;
    check_period(period, "Period")?;
    let statistics = input::strings(request, "Statistics");
    let extended = input::strings(request, "ExtendedStatistics");
    if statistics.is_empty() && extended.is_empty() {
        return Err(CloudWatchError::InvalidParameterCombination(
            "Must specify either Statistics or ExtendedStatistics, but not both.".into(), // guessed
        ));
    }
    if statistics.len() > 5 {
        return Err(CloudWatchError::InvalidParameterValue(
            "The collection Statistics must not have a size greater than 5.".into(), // guessed
        ));
    }
    if extended.len() > 10 {
        return Err(CloudWatchError::InvalidParameterValue(
            "The collection ExtendedStatistics must not have a size greater than 10.".into(), // guessed
        ));
    }
    for (i, s) in statistics.iter().enumerate() {
        input::check_enum(
            s,
            &format!("Statistics.member.{}", i + 1),
            input::STATISTICS,
        )?;
    }
    let extended: Vec<(String, Statistic)> = extended
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok((
                s.clone(),
                input::extended_statistic(s, &format!("ExtendedStatistics.member.{}", i + 1))?,
            ))
        })
        .collect::<Result<_>>()?;
    if start >= end {
        return Err(CloudWatchError::InvalidParameterValue(
            "The parameter StartTime must be less than the parameter EndTime.".into(), // guessed
        ));
    }
    // `check_period` bounds the period and the codecs the times, so none of this overflows;
    // saturating all the same, as these are client values.
    let period_ms = period.saturating_mul(1000);
    let aligned_start = start.div_euclid(period_ms).saturating_mul(period_ms);
    let requested = end
        .saturating_sub(aligned_start)
        .saturating_add(period_ms - 1)
        / period_ms;
    if requested > MAX_DATAPOINTS {
        return Err(CloudWatchError::InvalidParameterCombination(format!(
            "You have requested up to {} datapoints, which exceeds the limit of {}. You may reduce the datapoints requested by increasing Period, or decreasing the time range.",
            thousands(requested),
            thousands(MAX_DATAPOINTS)
        )));
    }
    let key = MetricKey::new(ns, name, dimensions);
    let buckets = query(ctx, key, start, end, period, unit.clone()).await?;
    let datapoints: Vec<Value> = buckets
        .iter()
        .map(|bucket| {
            let mut point = Map::new();
            point.insert(
                "Timestamp".into(),
                json!(bucket.timestamp_ms as f64 / 1000.0),
            );
            for s in &statistics {
                let stat = Statistic::parse(s).unwrap_or(Statistic::Average);
                if let Some(v) = compute(&stat, bucket) {
                    point.insert(s.clone(), protocol::shape::double_value(v));
                }
            }
            if !extended.is_empty() {
                let mut map = Map::new();
                for (label, stat) in &extended {
                    if let Some(v) = compute(stat, bucket) {
                        map.insert(label.clone(), protocol::shape::double_value(v));
                    }
                }
                point.insert("ExtendedStatistics".into(), Value::Object(map));
            }
            point.insert(
                "Unit".into(),
                json!(unit.clone().unwrap_or_else(|| bucket.unit.clone())),
            );
            Value::Object(point)
        })
        .collect();
    Ok(json!({"Label": name, "Datapoints": datapoints}))
}

/// `1441` as `1,441`, as CloudWatch's messages print counts.
fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn metric_value(key: &MetricKey) -> Value {
    json!({
        "Namespace": key.namespace,
        "MetricName": key.metric_name,
        "Dimensions": input::dimensions_value(&key.dimensions),
    })
}

pub async fn list_metrics(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let ns = input::str(request, "Namespace").map(str::to_string);
    let name = input::str(request, "MetricName").map(str::to_string);
    let filters = input::list(request, "Dimensions");
    if filters.len() > 10 {
        return Err(CloudWatchError::InvalidParameterValue(
            "The collection Dimensions must not have a size greater than 10.".into(), // guessed
        ));
    }
    let filters: Vec<DimensionFilter> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Ok(DimensionFilter {
                name: input::required_str(f, "Name", &format!("Dimensions.member.{}.Name", i + 1))?
                    .to_string(),
                value: input::str(f, "Value").map(str::to_string),
            })
        })
        .collect::<Result<_>>()?;
    let now = ctx.now_ms();
    // ListMetrics shows metrics with data in the last two weeks, or three hours when asked.
    let since = match input::str(request, "RecentlyActive") {
        Some("PT3H") => now - 3 * 3600 * 1000,
        Some(other) => return Err(invalid_value(other, "RecentlyActive")),
        None => now - TWO_WEEKS_MS,
    };
    let scope = format!(
        "ListMetrics\0{}\0{}\0{:?}\0{}",
        ns.as_deref().unwrap_or(""),
        name.as_deref().unwrap_or(""),
        filters,
        input::str(request, "RecentlyActive").unwrap_or("")
    );
    let offset: usize = match input::str(request, "NextToken") {
        Some(token) => ctx
            .decode_token(&scope, token)
            .await?
            .parse()
            .map_err(|_| CloudWatchError::InvalidNextToken("Invalid NextToken".into()))?,
        None => 0,
    };
    let metrics = ctx.metrics.clone();
    let keys = tokio::task::spawn_blocking(move || {
        metrics.list_metrics(ns.as_deref(), name.as_deref(), &filters, Some(since))
    })
    .await
    .map_err(|e| CloudWatchError::Internal(e.to_string()))?;
    let page: Vec<Value> = keys
        .iter()
        .skip(offset)
        .take(LIST_METRICS_PAGE)
        .map(metric_value)
        .collect();
    let mut out = json!({"Metrics": page});
    if offset + LIST_METRICS_PAGE < keys.len() {
        out["NextToken"] = json!(
            ctx.encode_token(&scope, &(offset + LIST_METRICS_PAGE).to_string())
                .await?
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_print_with_thousands_separators() {
        assert_eq!(thousands(1441), "1,441");
        assert_eq!(thousands(1440), "1,440");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn periods_follow_cloudwatch_rules() {
        for ok in [1, 5, 10, 20, 30, 60, 120, 3600] {
            assert!(check_period(ok, "Period").is_ok(), "{ok}");
        }
        for bad in [0, 2, 15, 45, 90, -60, 60 * (1 << 40)] {
            assert!(check_period(bad, "Period").is_err(), "{bad}");
        }
    }

    #[test]
    fn datum_rules() {
        let now = 1_700_000_000_000;
        let samples = datum_samples(
            "App",
            &json!({"MetricName": "M", "Values": [1.0, 2.0], "Counts": [2.0, 3.0]}),
            "MetricData.member.1",
            now,
        )
        .expect("valid");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1].point.sum, 6.0);
        let err = datum_samples("App", &json!({"MetricName": "M", "Value": 1.0, "StatisticValues": {"SampleCount": 1.0, "Sum": 1.0, "Minimum": 1.0, "Maximum": 1.0}}), "MetricData.member.1", now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The parameters MetricData.member.1.Value and MetricData.member.1.StatisticValues are mutually exclusive and you have specified both."
        );
        let err = datum_samples(
            "App",
            &json!({"MetricName": "M", "Value": 1.0, "StorageResolution": 5}),
            "MetricData.member.1",
            now,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "The value 5 for parameter MetricData.member.1.StorageResolution is invalid."
        );
        let err = datum_samples(
            "App",
            &json!({"MetricName": "M", "Value": 1.0, "Unit": "Parsecs"}),
            "MetricData.member.1",
            now,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "The value Parsecs for parameter MetricData.member.1.Unit is invalid."
        );
        let old = (now - TWO_WEEKS_MS - 1000) as f64 / 1000.0;
        assert!(datum_samples(
            "App",
            &json!({"MetricName": "M", "Value": 1.0, "Timestamp": old}),
            "MetricData.member.1",
            now
        )
        .is_err());
        assert!(datum_samples(
            "App",
            &json!({"MetricName": "M", "Value": "NaN"}),
            "MetricData.member.1",
            now
        )
        .is_err());
    }
}
