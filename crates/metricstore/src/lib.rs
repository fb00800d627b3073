//! The metric store behind Wharf's CloudWatch: named series (namespace, metric name, dimensions),
//! durable samples, retention and roll-up as CloudWatch does it, and the statistics that
//! GetMetricStatistics / GetMetricData / alarms compute over periods.
//!
//! Pure of any protocol: the CloudWatch handlers in `controlplane` validate requests and turn
//! them into [`MetricKey`]s and [`Point`]s. Time is always passed in (milliseconds since the
//! Unix epoch); the store never reads the clock.
//!
//! How it stores (see `engine` for the details): series keys are interned to ids; each series'
//! points of one unit and tier form a *lane* whose open head chunk lives in memory, encoded
//! Gorilla-style (`codec`), and is sealed into SQLite at ~2 KB. `put` is durable through a
//! write-ahead log in the same SQLite file, committed once for all concurrent callers (group
//! commit); checkpoints move sealed chunks and head snapshots into tables and empty the log.
//! `compact` applies CloudWatch's retention, rolling expired points up into statistic sets of
//! the next period (`tiers`).

mod codec;
mod db;
mod engine;
mod stats;
mod tiers;
mod wal;

#[cfg(test)]
mod tests;

use std::path::Path;

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

#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricStoreError {
    #[error("metric store I/O failed: {0}")]
    Io(String),
}

/// The store. Cheap to share behind an `Arc`; every method is synchronous and thread-safe
/// (callers in async code use `spawn_blocking` for `put` and large queries).
#[derive(Debug)]
pub struct MetricStore {
    engine: engine::Engine,
}

impl Default for MetricStore {
    fn default() -> Self {
        MetricStore::in_memory()
    }
}

impl MetricStore {
    /// Open (or create) a store whose files live in `dir` (in `dir/metrics/`). Recovers
    /// everything acknowledged before a crash.
    pub fn open(dir: &Path) -> Result<MetricStore, MetricStoreError> {
        Ok(MetricStore {
            engine: engine::Engine::open(db::Location::file_in(dir)?)?,
        })
    }

    /// A store that keeps nothing on disk (tests, `--ephemeral`).
    pub fn in_memory() -> MetricStore {
        let engine = engine::Engine::open(db::Location::fresh_memory())
            // An in-memory SQLite database only fails to open when memory is exhausted.
            .expect("in-memory metric store opens");
        MetricStore { engine }
    }

    /// Store samples; durable when it returns Ok. Concurrent callers share one log commit.
    /// Samples may arrive in any time order, within and across calls.
    pub fn put(&self, samples: Vec<Sample>) -> Result<(), MetricStoreError> {
        self.engine.put(samples)
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
        self.engine
            .list_metrics(namespace, metric_name, dimensions, active_since_ms)
    }

    /// One bucket per period in `[start_ms, end_ms)` that holds data, in time order. Periods
    /// start at `start_ms` rounded down to a multiple of the period. `unit`: only samples
    /// published with that unit. Data that has been rolled up (see [`MetricStore::compact`])
    /// contributes its statistic sets, so a bucket over them has `values: None` unless every
    /// point in it was single-valued. A bucket's `unit` is that of its latest sample.
    ///
    /// A storage failure is logged and yields no buckets; [`MetricStore::try_query`] returns it.
    pub fn query(
        &self,
        key: &MetricKey,
        start_ms: i64,
        end_ms: i64,
        period_seconds: i64,
        unit: Option<&str>,
    ) -> Vec<Bucket> {
        self.try_query(key, start_ms, end_ms, period_seconds, unit)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "metric query failed");
                Vec::new()
            })
    }

    /// [`MetricStore::query`], reporting storage failures.
    pub fn try_query(
        &self,
        key: &MetricKey,
        start_ms: i64,
        end_ms: i64,
        period_seconds: i64,
        unit: Option<&str>,
    ) -> Result<Vec<Bucket>, MetricStoreError> {
        self.engine
            .query(key, start_ms, end_ms, period_seconds, unit)
    }

    /// Apply retention and roll-up as of `now_ms` (1 s data for 3 h, 60 s for 15 days, 5 min
    /// for 63 days, 1 h for 455 days). Idempotent; the server calls it periodically.
    /// Expired points become one statistic set per period of the next tier; from the last
    /// tier they are dropped.
    pub fn compact(&self, now_ms: i64) -> Result<(), MetricStoreError> {
        self.engine.compact(now_ms)
    }

    /// Seal every open head chunk and checkpoint, leaving the write-ahead log empty (for a
    /// clean shutdown and for measuring what the data costs on disk). Not needed for
    /// durability: `put` already is.
    pub fn flush(&self) -> Result<(), MetricStoreError> {
        self.engine.flush()
    }
}
