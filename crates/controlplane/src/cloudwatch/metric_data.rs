//! GetMetricData: metric queries (`MetricStat`) and metric math (`Expression`) over one time
//! range, with `ReturnData`, `Label`, `ScanBy`, `MaxDatapoints` and `NextToken`. The same query
//! runner evaluates the alarms defined with `Metrics`.

use std::collections::{BTreeMap, HashMap, HashSet};

use metricstore::{MetricKey, Statistic};
use serde_json::{json, Value};

use super::error::{invalid_value, missing, CloudWatchError, Result};
use super::math::{self, MathContext, MathError, MathValue, Series};
use super::{input, metrics, CloudWatchContext};

/// GetMetricData's default (and largest) number of datapoints per call.
const DEFAULT_MAX_DATAPOINTS: i64 = 100_800;

/// One parsed `MetricDataQuery`.
#[derive(Debug, Clone)]
pub struct DataQuery {
    pub id: String,
    pub label: Option<String>,
    pub return_data: bool,
    /// `Period` of an expression query (a `MetricStat` carries its own).
    pub period: Option<i64>,
    pub kind: QueryKind,
}

#[derive(Debug, Clone)]
pub enum QueryKind {
    Stat {
        key: MetricKey,
        period: i64,
        stat: Statistic,
        unit: Option<String>,
    },
    Expression(String),
}

impl DataQuery {
    /// The period this query produces points at: its own, or the smallest of what it reads.
    pub fn effective_period(&self, all: &[DataQuery]) -> Option<i64> {
        match &self.kind {
            QueryKind::Stat { period, .. } => Some(*period),
            QueryKind::Expression(_) => self.period.or_else(|| {
                all.iter()
                    .filter_map(|q| match q.kind {
                        QueryKind::Stat { period, .. } => Some(period),
                        _ => None,
                    })
                    .min()
            }),
        }
    }
}

/// Parse a statistic name (`Average`, `p99`) for a `MetricStat.Stat`.
pub fn parse_stat(name: &str, parameter: &str) -> Result<Statistic> {
    if input::STATISTICS.contains(&name) {
        return Statistic::parse(name).map_err(|_| invalid_value(name, parameter));
    }
    input::extended_statistic(name, parameter)
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parse and validate a list of `MetricDataQuery` (GetMetricData's `MetricDataQueries`,
/// PutMetricAlarm's `Metrics`).
pub fn parse_queries(items: &[Value], parameter: &str) -> Result<Vec<DataQuery>> {
    let mut out: Vec<DataQuery> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{parameter}.member.{}", i + 1);
        let id = input::required_str(item, "Id", &format!("{at}.Id"))?;
        if !valid_id(id) || id.len() > 255 {
            return Err(invalid_value(id, &format!("{at}.Id")));
        }
        if out.iter().any(|q| q.id == id) {
            return Err(CloudWatchError::InvalidParameterValue(format!(
                "The value {id} for parameter {at}.Id is not unique." // guessed
            )));
        }
        let period = input::int(item, "Period");
        if let Some(p) = period {
            metrics::check_period(p, &format!("{at}.Period"))?;
        }
        let kind = match (item.get("MetricStat"), input::str(item, "Expression")) {
            (Some(stat), None) => {
                let metric = stat
                    .get("Metric")
                    .ok_or_else(|| missing(&format!("{at}.MetricStat.Metric")))?;
                let namespace = input::required_str(
                    metric,
                    "Namespace",
                    &format!("{at}.MetricStat.Metric.Namespace"),
                )?;
                let name = input::required_str(
                    metric,
                    "MetricName",
                    &format!("{at}.MetricStat.Metric.MetricName"),
                )?;
                let dimensions = input::dimensions(
                    metric,
                    "Dimensions",
                    &format!("{at}.MetricStat.Metric.Dimensions"),
                )?;
                let period = input::int(stat, "Period")
                    .ok_or_else(|| missing(&format!("{at}.MetricStat.Period")))?;
                metrics::check_period(period, &format!("{at}.MetricStat.Period"))?;
                let stat_name =
                    input::required_str(stat, "Stat", &format!("{at}.MetricStat.Stat"))?;
                QueryKind::Stat {
                    key: MetricKey::new(namespace, name, dimensions),
                    period,
                    stat: parse_stat(stat_name, &format!("{at}.MetricStat.Stat"))?,
                    unit: input::unit(stat, &format!("{at}.MetricStat.Unit"))?,
                }
            }
            (None, Some(expression)) => {
                input::check_len(expression, &format!("{at}.Expression"), 1, 2048)?;
                math::references(expression).map_err(|e| {
                    CloudWatchError::InvalidParameterValue(format!("Error in expression {id}: {e}"))
                    // guessed
                })?;
                QueryKind::Expression(expression.to_string())
            }
            _ => {
                return Err(CloudWatchError::InvalidParameterCombination(format!(
                    "Exactly one of {at}.MetricStat and {at}.Expression must be specified." // guessed
                )));
            }
        };
        out.push(DataQuery {
            id: id.to_string(),
            label: input::str(item, "Label").map(str::to_string),
            return_data: input::bool(item, "ReturnData").unwrap_or(true),
            period,
            kind,
        });
    }
    // Every reference must name a query, and references must not loop.
    let ids: HashSet<&str> = out.iter().map(|q| q.id.as_str()).collect();
    for q in &out {
        if let QueryKind::Expression(e) = &q.kind {
            for r in math::references(e).unwrap_or_default() {
                if !ids.contains(r.as_str()) {
                    return Err(CloudWatchError::InvalidParameterValue(format!(
                        "Error in expression {}: Unrecognized identifier {r}.", // guessed
                        q.id
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// One returned series.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSeries {
    pub id: String,
    pub label: String,
    /// Ascending by time.
    pub points: Vec<(i64, f64)>,
}

/// Every statistic series of the request, fetched up front.
struct Runner<'a> {
    queries: &'a [DataQuery],
    stats: HashMap<String, Series>,
    cache: HashMap<String, MathValue>,
    visiting: HashSet<String>,
    grid: Vec<i64>,
}

impl MathContext for Runner<'_> {
    fn resolve(&mut self, id: &str) -> std::result::Result<Option<MathValue>, MathError> {
        if let Some(s) = self.stats.get(id) {
            return Ok(Some(MathValue::Series(s.clone())));
        }
        if let Some(v) = self.cache.get(id) {
            return Ok(Some(v.clone()));
        }
        let Some(query) = self.queries.iter().find(|q| q.id == id) else {
            return Ok(None);
        };
        let QueryKind::Expression(expression) = &query.kind else {
            return Ok(None);
        };
        if !self.visiting.insert(id.to_string()) {
            return Err(MathError(format!("Circular reference involving {id}.")));
        }
        let value = math::evaluate(expression, self)?;
        self.visiting.remove(id);
        self.cache.insert(id.to_string(), value.clone());
        Ok(Some(value))
    }

    fn metrics(&mut self) -> std::result::Result<Vec<Series>, MathError> {
        Ok(self
            .queries
            .iter()
            .filter_map(|q| self.stats.get(&q.id).cloned())
            .collect())
    }

    fn grid(&self) -> Vec<i64> {
        self.grid.clone()
    }
}

/// Run the queries over `[start_ms, end_ms)`: the series of every query with `ReturnData`.
pub async fn run(
    ctx: &CloudWatchContext,
    queries: &[DataQuery],
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<ResultSeries>> {
    let mut stats = HashMap::new();
    for q in queries {
        if let QueryKind::Stat {
            key,
            period,
            stat,
            unit,
        } = &q.kind
        {
            let buckets =
                metrics::query(ctx, key.clone(), start_ms, end_ms, *period, unit.clone()).await?;
            let points = buckets
                .iter()
                .filter_map(|b| metrics::compute(stat, b).map(|v| (b.timestamp_ms, v)))
                .collect();
            let label = q.label.clone().unwrap_or_else(|| key.metric_name.clone());
            stats.insert(q.id.clone(), Series { label, points });
        }
    }
    let grid_period = queries
        .iter()
        .filter_map(|q| q.effective_period(queries))
        .min()
        .unwrap_or(60)
        * 1000;
    let first = start_ms.div_euclid(grid_period) * grid_period;
    let grid: Vec<i64> = (0..)
        .map(|i| first + i * grid_period)
        .take_while(|t| *t < end_ms)
        .take(DEFAULT_MAX_DATAPOINTS as usize)
        .collect();
    let mut runner = Runner {
        queries,
        stats,
        cache: HashMap::new(),
        visiting: HashSet::new(),
        grid,
    };
    let mut out = Vec::new();
    for q in queries.iter().filter(|q| q.return_data) {
        let value = runner
            .resolve(&q.id)
            .map_err(|e| {
                CloudWatchError::InvalidParameterValue(format!("Error in expression {}: {e}", q.id))
            })? // guessed
            .unwrap_or(MathValue::Array(Vec::new()));
        let label = |default: &str| q.label.clone().unwrap_or_else(|| default.to_string());
        match value {
            MathValue::Series(s) => out.push(ResultSeries {
                id: q.id.clone(),
                label: match &q.kind {
                    QueryKind::Stat { .. } => s.label.clone(),
                    QueryKind::Expression(_) => label(&q.id),
                },
                points: s.points.into_iter().collect(),
            }),
            // A scalar is drawn as a constant line over the request's periods.
            MathValue::Scalar(v) => out.push(ResultSeries {
                id: q.id.clone(),
                label: label(&q.id),
                points: if v.is_finite() {
                    runner.grid.iter().map(|t| (*t, v)).collect()
                } else {
                    Vec::new()
                },
            }),
            MathValue::Array(list) => out.extend(list.into_iter().map(|s| ResultSeries {
                id: q.id.clone(),
                label: match &q.label {
                    Some(l) => format!("{l} {}", s.label),
                    None => s.label.clone(),
                },
                points: s.points.into_iter().collect(),
            })),
        }
    }
    Ok(out)
}

pub async fn get_metric_data(ctx: &CloudWatchContext, request: &Value) -> Result<Value> {
    let items = input::list(request, "MetricDataQueries");
    if items.is_empty() {
        return Err(missing("MetricDataQueries"));
    }
    if items.len() > 500 {
        return Err(CloudWatchError::InvalidParameterValue(
            "The collection MetricDataQueries must not have a size greater than 500.".into(), // guessed
        ));
    }
    let start = input::time_ms(request, "StartTime").ok_or_else(|| missing("StartTime"))?;
    let end = input::time_ms(request, "EndTime").ok_or_else(|| missing("EndTime"))?;
    if start >= end {
        return Err(CloudWatchError::InvalidParameterValue(
            "The parameter StartTime must be less than the parameter EndTime.".into(), // guessed
        ));
    }
    let ascending = match input::str(request, "ScanBy") {
        None | Some("TimestampDescending") => false,
        Some("TimestampAscending") => true,
        Some(other) => return Err(invalid_value(other, "ScanBy")),
    };
    let max = input::int(request, "MaxDatapoints").unwrap_or(DEFAULT_MAX_DATAPOINTS);
    if max < 1 {
        return Err(invalid_value(max, "MaxDatapoints"));
    }
    let queries = parse_queries(items, "MetricDataQueries")?;
    // The token is bound to everything but itself and the page size.
    let mut scope_input = request.clone();
    if let Some(object) = scope_input.as_object_mut() {
        object.remove("NextToken");
        object.remove("MaxDatapoints");
    }
    let scope = format!("GetMetricData\0{scope_input}");
    let (mut result_index, mut point_index) = match input::str(request, "NextToken") {
        Some(token) => {
            let position = ctx.decode_token(&scope, token).await?;
            let parsed = position
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            parsed.ok_or_else(|| CloudWatchError::InvalidNextToken("Invalid NextToken".into()))?
        }
        None => (0, 0),
    };
    let mut results = run(ctx, &queries, start, end).await?;
    for r in &mut results {
        if !ascending {
            r.points.reverse();
        }
    }
    // Page through the concatenated points of all results.
    let mut budget = max as usize;
    let mut page = Vec::new();
    let mut next = None;
    while result_index < results.len() {
        let r = &results[result_index];
        let remaining = &r.points[point_index.min(r.points.len())..];
        let take = remaining.len().min(budget);
        if take > 0 || point_index == 0 {
            page.push(result_value(r, &remaining[..take]));
        }
        budget -= take;
        if take < remaining.len() {
            next = Some(format!("{result_index}:{}", point_index + take));
            break;
        }
        result_index += 1;
        point_index = 0;
        if budget == 0 && result_index < results.len() {
            next = Some(format!("{result_index}:0"));
            break;
        }
    }
    let mut out = json!({"MetricDataResults": page, "Messages": []});
    if let Some(position) = next {
        out["NextToken"] = json!(ctx.encode_token(&scope, &position).await?);
    }
    Ok(out)
}

fn result_value(r: &ResultSeries, points: &[(i64, f64)]) -> Value {
    let timestamps: Vec<Value> = points
        .iter()
        .map(|(t, _)| json!(*t as f64 / 1000.0))
        .collect();
    let values: Vec<Value> = points
        .iter()
        .map(|(_, v)| protocol::shape::double_value(*v))
        .collect();
    json!({
        "Id": r.id,
        "Label": r.label,
        "Timestamps": timestamps,
        "Values": values,
        "StatusCode": "Complete",
    })
}

/// Group ascending points by period start (used by alarm evaluation).
pub fn by_period(points: &[(i64, f64)], period_ms: i64) -> BTreeMap<i64, f64> {
    points
        .iter()
        .map(|(t, v)| (t.div_euclid(period_ms) * period_ms, *v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_validated() {
        let ok = parse_queries(
            &[
                json!({"Id": "m1", "MetricStat": {"Metric": {"Namespace": "A", "MetricName": "B"}, "Period": 60, "Stat": "p90"}, "ReturnData": false}),
                json!({"Id": "e1", "Expression": "m1 * 2"}),
            ],
            "MetricDataQueries",
        )
        .expect("valid");
        assert_eq!(ok.len(), 2);
        assert!(!ok[0].return_data);
        assert_eq!(ok[1].effective_period(&ok), Some(60));
        for bad in [
            json!([{"Id": "M1", "Expression": "1"}]),
            json!([{"Id": "e1"}]),
            json!([{"Id": "e1", "Expression": "x + 1"}]),
            json!([{"Id": "e1", "Expression": "1 +"}]),
            json!([{"Id": "m1", "MetricStat": {"Metric": {"Namespace": "A", "MetricName": "B"}, "Period": 45, "Stat": "Sum"}}]),
            json!([{"Id": "m1", "MetricStat": {"Metric": {"Namespace": "A", "MetricName": "B"}, "Period": 60, "Stat": "Median"}}]),
            json!([{"Id": "a", "Expression": "1"}, {"Id": "a", "Expression": "2"}]),
        ] {
            assert!(
                parse_queries(bad.as_array().unwrap(), "MetricDataQueries").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn points_group_by_period() {
        let grouped = by_period(&[(60_000, 1.0), (61_000, 2.0), (125_000, 3.0)], 60_000);
        assert_eq!(
            grouped.into_iter().collect::<Vec<_>>(),
            vec![(60_000, 2.0), (120_000, 3.0)]
        );
    }
}
