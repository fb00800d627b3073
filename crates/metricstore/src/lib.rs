//! The metric store behind Wharf's CloudWatch: named series (namespace, metric name, dimensions),
//! durable samples, retention and roll-up as CloudWatch does it, and the statistics that
//! GetMetricStatistics / GetMetricData / alarms compute over periods.
//!
//! Pure of any protocol: the CloudWatch handlers in `controlplane` validate requests and turn
//! them into [`MetricKey`]s and [`Point`]s. Time is always passed in (milliseconds since the
//! Unix epoch); the store never reads the clock.
//!
//! NOTE: this first version keeps everything in memory (a skeleton with the final API); the
//! durable, compressed engine replaces the internals behind the same API.

mod stats;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

pub use stats::{Statistic, StatisticParseError};

/// One metric: what ListMetrics lists. Dimensions are kept sorted by name (CloudWatch treats
/// them as a set), so equal metrics compare equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    pub namespace: String,
    pub metric_name: String,
    /// `(name, value)`, sorted by name, names unique.
    pub dimensions: Vec<(String, String)>,
}

impl MetricKey {
    pub fn new(
        namespace: impl Into<String>,
        metric_name: impl Into<String>,
        mut dimensions: Vec<(String, String)>,
    ) -> Self {
        dimensions.sort();
        MetricKey {
            namespace: namespace.into(),
            metric_name: metric_name.into(),
            dimensions,
        }
    }
}

/// One stored data point: a single value is `count 1, sum = min = max = value`; a value with a
/// count (PutMetricData `Values`/`Counts`) is `count c, sum = v*c, min = max = v`; a statistic
/// set is stored as given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub timestamp_ms: i64,
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Point {
    pub fn value(timestamp_ms: i64, value: f64) -> Self {
        Point {
            timestamp_ms,
            count: 1.0,
            sum: value,
            min: value,
            max: value,
        }
    }

    /// Whether this point is `count` copies of one value (so percentiles can use it).
    pub fn is_single_valued(&self) -> bool {
        self.min == self.max
    }
}

/// How finely a sample was published: 1 (high resolution) or 60 (standard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolution {
    High,
    Standard,
}

/// One sample to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub key: MetricKey,
    pub point: Point,
    /// CloudWatch's `StandardUnit` name (`Percent`, `Count`, `None`, …).
    pub unit: String,
    pub resolution: Resolution,
}

/// The aggregate of one period of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Start of the period.
    pub timestamp_ms: i64,
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Unit of the samples (the last one seen in the period).
    pub unit: String,
    /// `(value, weight)` of every single-valued point in the period, sorted by value, when
    /// every point in the period was single-valued; `None` if any was a statistic set
    /// (percentiles are then unavailable, as in CloudWatch).
    pub values: Option<Vec<(f64, f64)>>,
}

/// A ListMetrics dimension filter: a name, with or without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionFilter {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricStoreError {
    #[error("metric store I/O failed: {0}")]
    Io(String),
}

/// The store. Cheap to share behind an `Arc`; every method is synchronous and thread-safe
/// (callers in async code use `spawn_blocking` for `put` and large queries).
#[derive(Debug, Default)]
pub struct MetricStore {
    series: Mutex<BTreeMap<MetricKey, Vec<(Point, String)>>>,
}

impl MetricStore {
    /// Open (or create) a store whose files live in `dir`.
    pub fn open(_dir: &Path) -> Result<MetricStore, MetricStoreError> {
        Ok(MetricStore::default())
    }

    /// A store that keeps nothing on disk (tests, `--ephemeral`).
    pub fn in_memory() -> MetricStore {
        MetricStore::default()
    }

    /// Store samples; durable when it returns Ok.
    pub fn put(&self, samples: Vec<Sample>) -> Result<(), MetricStoreError> {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        for sample in samples {
            series
                .entry(sample.key)
                .or_default()
                .push((sample.point, sample.unit));
        }
        Ok(())
    }

    /// Metrics matching the filters, sorted. `active_since_ms`: only metrics with a sample at
    /// or after that time (ListMetrics `RecentlyActive=PT3H`).
    pub fn list_metrics(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dimensions: &[DimensionFilter],
        active_since_ms: Option<i64>,
    ) -> Vec<MetricKey> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .iter()
            .filter(|(key, _)| namespace.is_none_or(|n| key.namespace == n))
            .filter(|(key, _)| metric_name.is_none_or(|n| key.metric_name == n))
            .filter(|(key, _)| {
                dimensions.iter().all(|f| {
                    key.dimensions
                        .iter()
                        .any(|(n, v)| *n == f.name && f.value.as_ref().is_none_or(|fv| fv == v))
                })
            })
            .filter(|(_, points)| {
                active_since_ms.is_none_or(|t| points.iter().any(|(p, _)| p.timestamp_ms >= t))
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// One bucket per period in `[start_ms, end_ms)` that holds data, in time order. Periods
    /// start at `start_ms` rounded down to a multiple of the period. `unit`: only samples
    /// published with that unit.
    pub fn query(
        &self,
        key: &MetricKey,
        start_ms: i64,
        end_ms: i64,
        period_seconds: i64,
        unit: Option<&str>,
    ) -> Vec<Bucket> {
        let period_ms = period_seconds.max(1) * 1000;
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let Some(points) = series.get(key) else {
            return Vec::new();
        };
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        for (point, point_unit) in points {
            if point.timestamp_ms < start_ms || point.timestamp_ms >= end_ms {
                continue;
            }
            if unit.is_some_and(|u| u != point_unit) {
                continue;
            }
            let start = point.timestamp_ms.div_euclid(period_ms) * period_ms;
            let bucket = buckets.entry(start).or_insert_with(|| Bucket {
                timestamp_ms: start,
                count: 0.0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                unit: point_unit.clone(),
                values: Some(Vec::new()),
            });
            bucket.count += point.count;
            bucket.sum += point.sum;
            bucket.min = bucket.min.min(point.min);
            bucket.max = bucket.max.max(point.max);
            bucket.unit = point_unit.clone();
            if point.is_single_valued() {
                if let Some(values) = bucket.values.as_mut() {
                    values.push((point.min, point.count));
                }
            } else {
                bucket.values = None;
            }
        }
        let mut out: Vec<Bucket> = buckets.into_values().collect();
        for bucket in &mut out {
            if let Some(values) = bucket.values.as_mut() {
                values.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        out
    }

    /// Apply retention and roll-up as of `now_ms` (1 s data for 3 h, 60 s for 15 days, 5 min
    /// for 63 days, 1 h for 455 days). Idempotent; the server calls it periodically.
    pub fn compact(&self, _now_ms: i64) -> Result<(), MetricStoreError> {
        Ok(())
    }
}
