//! GetMetricData: metric queries (`MetricStat`) and metric math (`Expression`) over one time
//! range, with `ReturnData`, `Label`, `ScanBy`, `MaxDatapoints` and `NextToken`. The same query
//! runner evaluates the alarms defined with `Metrics`.

use std::collections::{BTreeMap, HashMap};

use metricstore::{MetricKey, Statistic};
use serde_json::{json, Value};

use super::error::{invalid_value, missing, CloudWatchError, Result};
use super::math::{self, MathContext, MathError, MathValue, Series};
use super::{input, metrics, CloudWatchContext};

/// GetMetricData's default (and largest) number of datapoints per call.
const DEFAULT_MAX_DATAPOINTS: i64 = 100_800;

/// How many datapoints metric math may produce in one run (copies of other queries' series,
/// `FILL` output, scalars drawn over the period grid): ten times what AWS answers in one call,
/// room for the intermediate results of any full-size answer, yet a bound (tens of MB) on what
/// hundreds of `FILL`s over a 100,800-period grid would otherwise allocate.
const MAX_MATH_POINTS: usize = 10 * DEFAULT_MAX_DATAPOINTS as usize;

/// How many expressions may wait on one another (`e1` refers to `e2`, which refers to `e3`…).
/// Each waiting expression holds stack frames of its evaluation. Wharf's limit: AWS documents
/// none, and real requests chain a handful.
const MAX_REFERENCE_DEPTH: usize = 16;

/// The stack budget of one evaluation: the nesting (`math::Parsed::nesting`) of every
/// expression on a chain of references, summed. Together with `math::MAX_NESTING` and
/// `MAX_REFERENCE_DEPTH` this bounds the recursion so it fits a 2 MiB thread stack (tokio's
/// workers') with a wide margin, also in debug builds.
const MAX_EVALUATION_DEPTH: usize = 2 * math::MAX_NESTING;

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
                math::parse(expression).map_err(|e| {
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
    check_references(&out)?;
    Ok(out)
}

/// Every reference must name a query, references must not loop, and chains of references must
/// stay within what the runner evaluates (`MAX_REFERENCE_DEPTH`, `MAX_EVALUATION_DEPTH`), so
/// that an alarm is refused when it is put rather than failing at every evaluation.
fn check_references(queries: &[DataQuery]) -> Result<()> {
    let index: HashMap<&str, usize> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| (q.id.as_str(), i))
        .collect();
    let error = |id: &str, message: String| {
        CloudWatchError::InvalidParameterValue(format!("Error in expression {id}: {message}"))
        // guessed
    };
    // For each query: its own nesting and the expression queries it refers to.
    let mut nesting = vec![0usize; queries.len()];
    let mut depends_on: Vec<Vec<usize>> = vec![Vec::new(); queries.len()];
    for (i, q) in queries.iter().enumerate() {
        let QueryKind::Expression(e) = &q.kind else {
            continue;
        };
        let parsed = math::parse(e).map_err(|e| error(&q.id, e.to_string()))?;
        nesting[i] = parsed.nesting();
        for r in parsed.references() {
            let Some(&j) = index.get(r.as_str()) else {
                return Err(error(&q.id, format!("Unrecognized identifier {r}.")));
            };
            if matches!(queries[j].kind, QueryKind::Expression(_)) && !depends_on[i].contains(&j) {
                depends_on[i].push(j);
            }
        }
    }
    // Kahn's algorithm, dependencies first (no recursion: there may be 500 queries). `depth`:
    // the evaluation depth of a query including everything it waits on; `chain`: how many
    // expressions that is.
    let mut waiting: Vec<usize> = depends_on.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); queries.len()];
    for (i, deps) in depends_on.iter().enumerate() {
        for &j in deps {
            dependents[j].push(i);
        }
    }
    let mut depth = vec![0usize; queries.len()];
    let mut chain = vec![0usize; queries.len()];
    let mut ready: Vec<usize> = (0..queries.len()).filter(|&i| waiting[i] == 0).collect();
    let mut done = 0;
    while let Some(j) = ready.pop() {
        done += 1;
        if nesting[j] > 0 {
            depth[j] += nesting[j];
            chain[j] += 1;
        }
        if depth[j] > MAX_EVALUATION_DEPTH || chain[j] > MAX_REFERENCE_DEPTH {
            return Err(error(
                &queries[j].id,
                "Expressions refer to each other too deeply.".into(), // guessed
            ));
        }
        for &i in &dependents[j] {
            depth[i] = depth[i].max(depth[j]);
            chain[i] = chain[i].max(chain[j]);
            waiting[i] -= 1;
            if waiting[i] == 0 {
                ready.push(i);
            }
        }
    }
    if done < queries.len() {
        let looping = (0..queries.len()).find(|&i| waiting[i] > 0).unwrap_or(0);
        return Err(error(
            &queries[looping].id,
            "Circular reference between expressions.".into(), // guessed
        ));
    }
    Ok(())
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
    /// The expressions being evaluated, innermost last.
    visiting: Vec<String>,
    /// The summed nesting of `visiting` (see `MAX_EVALUATION_DEPTH`).
    depth: usize,
    /// Datapoints metric math may still produce (see `MAX_MATH_POINTS`).
    budget: usize,
    grid: Vec<i64>,
}

impl Runner<'_> {
    fn new<'a>(
        queries: &'a [DataQuery],
        stats: HashMap<String, Series>,
        grid: Vec<i64>,
    ) -> Runner<'a> {
        Runner {
            queries,
            stats,
            cache: HashMap::new(),
            visiting: Vec::new(),
            depth: 0,
            budget: MAX_MATH_POINTS,
            grid,
        }
    }
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
        if self.visiting.iter().any(|v| v == id) {
            return Err(MathError(format!("Circular reference involving {id}.")));
        }
        let parsed = math::parse(expression)?;
        // Validation refuses these; an alarm stored before it did must fail, not crash.
        if self.visiting.len() >= MAX_REFERENCE_DEPTH
            || self.depth + parsed.nesting() > MAX_EVALUATION_DEPTH
        {
            return Err(MathError(
                "Expressions refer to each other too deeply.".into(), // guessed
            ));
        }
        self.visiting.push(id.to_string());
        self.depth += parsed.nesting();
        let value = parsed.evaluate(self);
        self.depth -= parsed.nesting();
        self.visiting.pop();
        let value = value?;
        self.cache.insert(id.to_string(), value.clone());
        Ok(Some(value))
    }

    fn charge(&mut self, points: usize) -> std::result::Result<(), MathError> {
        self.budget = self.budget.checked_sub(points).ok_or_else(|| {
            MathError(format!(
                "The request's metric math produces more than {MAX_MATH_POINTS} datapoints; narrow the time range, raise the period or use fewer queries." // guessed
            ))
        })?;
        Ok(())
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
    // Periods are validated (at most `i32::MAX` seconds) and times clamped to years 0–9999,
    // so none of this overflows; checked all the same, as these are client values.
    let grid_period = queries
        .iter()
        .filter_map(|q| q.effective_period(queries))
        .min()
        .unwrap_or(60)
        .clamp(1, i64::from(i32::MAX))
        * 1000;
    let first = start_ms.div_euclid(grid_period) * grid_period;
    let grid: Vec<i64> = (0..DEFAULT_MAX_DATAPOINTS)
        .map_while(|i| first.checked_add(i.checked_mul(grid_period)?))
        .take_while(|t| *t < end_ms)
        .collect();
    let mut runner = Runner::new(queries, stats, grid);
    let failed = |q: &DataQuery, e: MathError| {
        CloudWatchError::InvalidParameterValue(format!("Error in expression {}: {e}", q.id))
        // guessed
    };
    let mut out = Vec::new();
    for q in queries.iter().filter(|q| q.return_data) {
        let value = runner
            .resolve(&q.id)
            .map_err(|e| failed(q, e))?
            .unwrap_or(MathValue::Array(Vec::new()));
        if let QueryKind::Expression(_) = &q.kind {
            // The answer is one more copy; a scalar becomes a point per period.
            let points = match &value {
                MathValue::Scalar(_) => runner.grid.len(),
                other => math::point_count(other),
            };
            runner.charge(points).map_err(|e| failed(q, e))?;
        }
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

    fn stat(id: &str) -> Value {
        json!({"Id": id, "MetricStat": {"Metric": {"Namespace": "A", "MetricName": id}, "Period": 60, "Stat": "Sum"}, "ReturnData": false})
    }

    fn expression(id: &str, e: &str) -> Value {
        json!({"Id": id, "Expression": e})
    }

    fn parse(items: Vec<Value>) -> Result<Vec<DataQuery>> {
        parse_queries(&items, "MetricDataQueries")
    }

    /// `e0 = e1 + 1`, `e1 = e2 + 1`, …, `e{n-1} = {last}`, unvalidated.
    fn chain(n: usize, last: &str) -> Vec<DataQuery> {
        (0..n)
            .map(|i| DataQuery {
                id: format!("e{i}"),
                label: None,
                return_data: i == 0,
                period: Some(60),
                kind: QueryKind::Expression(if i + 1 == n {
                    last.to_string()
                } else {
                    format!("e{} + 1", i + 1)
                }),
            })
            .collect()
    }

    fn runner(queries: &[DataQuery], grid: usize) -> Runner<'_> {
        let stats = queries
            .iter()
            .filter(|q| matches!(q.kind, QueryKind::Stat { .. }))
            .map(|q| {
                let points = BTreeMap::from([(0, 1.0)]);
                (
                    q.id.clone(),
                    Series {
                        label: q.id.clone(),
                        points,
                    },
                )
            })
            .collect();
        Runner::new(
            queries,
            stats,
            (0..grid as i64).map(|i| i * 60_000).collect(),
        )
    }

    #[test]
    fn cycles_are_refused_at_validation() {
        let err = parse(vec![expression("e1", "e2 + 1"), expression("e2", "e1 * 2")]).unwrap_err();
        assert!(err.to_string().contains("Circular reference"), "{err}");
        assert!(parse(vec![expression("e1", "e1")]).is_err());
        // A diamond is no cycle.
        parse(vec![
            stat("m1"),
            expression("a", "m1 * 2"),
            expression("b", "a + 1"),
            expression("c", "a - 1"),
            expression("d", "b + c"),
        ])
        .expect("diamond");
    }

    #[test]
    fn reference_chains_are_bounded_at_validation() {
        let items = |n: usize| -> Vec<Value> {
            (0..n)
                .map(|i| {
                    if i + 1 == n {
                        expression(&format!("e{i}"), "1")
                    } else {
                        expression(&format!("e{i}"), &format!("e{} + 1", i + 1))
                    }
                })
                .collect()
        };
        parse(items(MAX_REFERENCE_DEPTH)).expect("at the limit");
        let err = parse(items(MAX_REFERENCE_DEPTH + 1)).unwrap_err();
        assert!(err.to_string().contains("too deeply"), "{err}");
        // Summed nesting: three expressions of nesting 30 are too deep together.
        let deep = |inner: &str| format!("{}{inner}{}", "(".repeat(29), ")".repeat(29));
        parse(vec![
            expression("a", &deep("b")),
            expression("b", &deep("1")),
        ])
        .expect("60");
        assert!(parse(vec![
            expression("a", &deep("b")),
            expression("b", &deep("c")),
            expression("c", &deep("1")),
        ])
        .is_err());
    }

    #[test]
    fn the_runner_bounds_what_validation_did_not_see() {
        // Stored before validation refused them: an error, not a stack overflow.
        let long = chain(5_000, "1");
        let err = runner(&long, 3).resolve("e0").unwrap_err();
        assert!(err.0.contains("too deeply"), "{err}");
        let looping = chain(3, "e0");
        assert!(runner(&looping, 3).resolve("e0").is_err());
        let at_limit = chain(MAX_REFERENCE_DEPTH, "7");
        assert_eq!(
            runner(&at_limit, 3).resolve("e0").unwrap(),
            Some(MathValue::Scalar(7.0 + (MAX_REFERENCE_DEPTH - 1) as f64))
        );
    }

    #[test]
    fn the_deepest_evaluation_fits_a_small_stack() {
        // The worst the bounds allow: two expressions nested MAX_NESTING deep, one waiting on
        // the other, through calls (the costliest frames). 1 MiB is half a tokio worker's
        // stack; debug builds' frames are the largest.
        let levels = math::MAX_NESTING - 1;
        let deep = |inner: &str| format!("{}{inner}{}", "ABS(".repeat(levels), ")".repeat(levels));
        let queries = vec![
            DataQuery {
                id: "a".into(),
                label: None,
                return_data: true,
                period: Some(60),
                kind: QueryKind::Expression(deep("b")),
            },
            DataQuery {
                id: "b".into(),
                label: None,
                return_data: false,
                period: Some(60),
                kind: QueryKind::Expression(deep("-3")),
            },
        ];
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || runner(&queries, 3).resolve("a").map_err(|e| e.0))
            .unwrap();
        assert_eq!(handle.join().unwrap(), Ok(Some(MathValue::Scalar(3.0))));
    }

    #[test]
    fn fill_over_many_series_runs_out_of_budget() {
        let mut items: Vec<Value> = (0..500).map(|i| stat(&format!("m{i}"))).collect();
        items.pop();
        items.push(expression("e1", "FILL(METRICS(), 0)"));
        let queries = parse(items).expect("valid");
        // 499 series over a 100,800-period grid would be 50 million points.
        let err = runner(&queries, DEFAULT_MAX_DATAPOINTS as usize)
            .resolve("e1")
            .unwrap_err();
        assert!(err.0.contains("datapoints"), "{err}");
        // A few series over the same grid are fine.
        let queries = parse(vec![
            stat("m1"),
            stat("m2"),
            expression("e1", "FILL(METRICS(), 0)"),
        ])
        .unwrap();
        match runner(&queries, DEFAULT_MAX_DATAPOINTS as usize).resolve("e1") {
            Ok(Some(MathValue::Array(list))) => {
                assert_eq!(list.len(), 2);
                assert_eq!(list[0].points.len(), DEFAULT_MAX_DATAPOINTS as usize);
            }
            other => panic!("{other:?}"),
        }
        // Copies count too: `[e1, e1, …]` cannot multiply memory without bound.
        let refs = vec!["a"; 600].join(", ");
        let queries = parse(vec![
            stat("m1"),
            expression("a", "FILL(m1, 0)"),
            expression("b", &format!("[{refs}]")),
            expression("c", &format!("[{}]", vec!["b"; 600].join(", "))),
        ])
        .unwrap();
        assert!(runner(&queries, 10_000).resolve("c").is_err());
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
