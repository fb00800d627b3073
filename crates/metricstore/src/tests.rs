//! Tests of the store through its public API: the engine against a naive model (property
//! tests), durability across reopen and across a real `kill -9`, concurrent group commit,
//! retention and roll-up, and ListMetrics.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use proptest::prelude::*;

use crate::*;

// Midnight UTC, so hour and day periods line up with the data.
const T0: i64 = 1_699_920_000_000;
const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn key(i: usize) -> MetricKey {
    MetricKey::new(
        "Wharf/Test",
        format!("m{}", i % 3),
        vec![
            ("Task".to_string(), format!("t{i}")),
            ("Cluster".to_string(), "c".to_string()),
        ],
    )
}

fn sample(k: usize, point: Point, unit: &str, resolution: Resolution) -> Sample {
    Sample {
        key: key(k),
        point,
        unit: unit.to_string(),
        resolution,
    }
}

/// The skeleton's semantics, on a plain list: what `query` must return.
#[derive(Default)]
struct Model {
    samples: Vec<Sample>,
}

impl Model {
    fn query(
        &self,
        key: &MetricKey,
        start: i64,
        end: i64,
        period_s: i64,
        unit: Option<&str>,
    ) -> Vec<Bucket> {
        let period = period_s * 1000;
        let mut buckets: BTreeMap<i64, (Bucket, i64)> = BTreeMap::new();
        for s in &self.samples {
            let p = &s.point;
            if &s.key != key || p.timestamp_ms < start || p.timestamp_ms >= end {
                continue;
            }
            if unit.is_some_and(|u| u != s.unit) {
                continue;
            }
            let b0 = p.timestamp_ms.div_euclid(period) * period;
            let (b, unit_ts) = buckets.entry(b0).or_insert_with(|| {
                (
                    Bucket {
                        timestamp_ms: b0,
                        count: 0.0,
                        sum: 0.0,
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        unit: s.unit.clone(),
                        values: Some(Vec::new()),
                    },
                    i64::MIN,
                )
            });
            b.count += p.count;
            b.sum += p.sum;
            b.min = b.min.min(p.min);
            b.max = b.max.max(p.max);
            if p.timestamp_ms >= *unit_ts {
                *unit_ts = p.timestamp_ms;
                b.unit = s.unit.clone();
            }
            match (&mut b.values, p.is_single_valued()) {
                (Some(v), true) => v.push((p.min, p.count)),
                (v, _) => *v = None,
            }
        }
        buckets
            .into_values()
            .map(|(mut b, _)| {
                if let Some(v) = b.values.as_mut() {
                    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
                }
                b
            })
            .collect()
    }

    /// Units that are "latest" in the bucket (ties are allowed to go either way).
    fn latest_units(
        &self,
        key: &MetricKey,
        b: &Bucket,
        range: (i64, i64),
        period: i64,
    ) -> Vec<String> {
        let in_bucket = |s: &&Sample| {
            let t = s.point.timestamp_ms;
            &s.key == key
                && t >= b.timestamp_ms.max(range.0)
                && t < (b.timestamp_ms + period).min(range.1)
        };
        let latest = self
            .samples
            .iter()
            .filter(in_bucket)
            .map(|s| s.point.timestamp_ms)
            .max();
        self.samples
            .iter()
            .filter(in_bucket)
            .filter(|s| Some(s.point.timestamp_ms) == latest)
            .map(|s| s.unit.clone())
            .collect()
    }
}

fn normalized(mut buckets: Vec<Bucket>) -> Vec<Bucket> {
    for b in &mut buckets {
        if let Some(v) = b.values.as_mut() {
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        }
    }
    buckets
}

/// Values are integers (and counts small), so sums are exact in any order.
fn arb_point() -> impl Strategy<Value = Point> {
    let ts = prop_oneof![
        4 => 0i64..(2 * HOUR),
        1 => -(14 * DAY)..(2 * HOUR),
    ];
    (ts, -50i32..50, 1u8..4, 0u8..6).prop_map(|(t, v, c, kind)| {
        let v = f64::from(v);
        match kind {
            0 => Point {
                timestamp_ms: T0 + t,
                count: f64::from(c),
                sum: v * f64::from(c),
                min: v,
                max: v,
            },
            1 => Point {
                timestamp_ms: T0 + t,
                count: 3.0,
                sum: v * 3.0 + 3.0,
                min: v,
                max: v + 2.0,
            },
            _ => Point::value(T0 + t, v),
        }
    })
}

fn arb_sample() -> impl Strategy<Value = Sample> {
    (0usize..4, arb_point(), 0u8..5, any::<bool>()).prop_map(|(k, p, u, high)| {
        // Mostly one unit per series, sometimes a second one.
        let unit = if u == 0 { "Count" } else { "Percent" };
        let res = if high {
            Resolution::High
        } else {
            Resolution::Standard
        };
        sample(k, p, unit, res)
    })
}

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<Sample>),
    Query {
        key: usize,
        start: i64,
        len: i64,
        period_s: i64,
        unit: Option<&'static str>,
    },
    Flush,
    Reopen,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(arb_sample(), 1..40).prop_map(Op::Put),
        3 => (
            0usize..4,
            -(15 * DAY)..(2 * HOUR),
            1i64..(20 * DAY),
            prop_oneof![Just(1i64), Just(10), Just(60), Just(300), Just(3600)],
            prop_oneof![Just(None), Just(Some("Percent")), Just(Some("Count"))],
        )
            .prop_map(|(key, start, len, period_s, unit)| Op::Query {
                key,
                start: T0 + start,
                len,
                period_s,
                unit
            }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

fn check_query(
    store: &MetricStore,
    model: &Model,
    k: usize,
    start: i64,
    end: i64,
    period_s: i64,
    unit: Option<&str>,
) -> Result<(), TestCaseError> {
    let got = normalized(
        store
            .try_query(&key(k), start, end, period_s, unit)
            .unwrap(),
    );
    let want = model.query(&key(k), start, end, period_s, unit);
    prop_assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        prop_assert_eq!(g.timestamp_ms, w.timestamp_ms);
        prop_assert_eq!(
            (g.count, g.sum, g.min, g.max),
            (w.count, w.sum, w.min, w.max)
        );
        prop_assert_eq!(&g.values, &w.values);
        let units = model.latest_units(&key(k), w, (start, end), period_s * 1000);
        let units: Vec<String> = match unit {
            Some(u) => vec![u.to_string()],
            None => units,
        };
        prop_assert!(units.contains(&g.unit), "{} not in {:?}", g.unit, units);
    }
    Ok(())
}

fn run_ops(ops: Vec<Op>, on_disk: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        if on_disk {
            MetricStore::open(dir.path()).unwrap()
        } else {
            MetricStore::in_memory()
        }
    };
    let mut store = open();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Put(samples) => {
                model.samples.extend(samples.iter().cloned());
                store.put(samples).unwrap();
            }
            Op::Query {
                key,
                start,
                len,
                period_s,
                unit,
            } => check_query(&store, &model, key, start, start + len, period_s, unit)?,
            Op::Flush => store.flush().unwrap(),
            Op::Reopen if on_disk => {
                drop(store);
                store = open();
            }
            Op::Reopen => {}
        }
    }
    // Everything, whole range, at a few periods.
    for k in 0..4 {
        for period in [1, 60, 3600] {
            check_query(
                &store,
                &model,
                k,
                T0 - 15 * DAY,
                T0 + 3 * HOUR,
                period,
                None,
            )?;
        }
    }
    let mut keys: Vec<MetricKey> = model.samples.iter().map(|s| s.key.clone()).collect();
    keys.sort();
    keys.dedup();
    prop_assert_eq!(store.list_metrics(None, None, &[], None), keys);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The engine answers like the naive model, in memory.
    #[test]
    fn engine_matches_model_in_memory(ops in proptest::collection::vec(arb_op(), 1..30)) {
        run_ops(ops, false)?;
    }

    /// ... and on disk, across flushes and reopenings.
    #[test]
    fn engine_matches_model_on_disk(ops in proptest::collection::vec(arb_op(), 1..30)) {
        run_ops(ops, true)?;
    }

    /// Compaction preserves aggregates at whole-hour periods, except what is older than the
    /// last tier's retention, which is gone.
    #[test]
    fn compaction_preserves_hourly_aggregates(
        points in proptest::collection::vec(
            (0usize..2, 0i64..(500 * DAY), -20i32..20, any::<bool>()), 1..200),
        now_offset in 0i64..(600 * DAY),
    ) {
        let store = MetricStore::in_memory();
        let mut model = Model::default();
        let samples: Vec<Sample> = points.iter().map(|&(k, t, v, high)| {
            let res = if high { Resolution::High } else { Resolution::Standard };
            sample(k, Point::value(T0 + t, f64::from(v)), "Count", res)
        }).collect();
        store.put(samples.clone()).unwrap();
        let now = T0 + now_offset;
        store.compact(now).unwrap();
        let horizon = (now - 455 * DAY).div_euclid(HOUR) * HOUR;
        model.samples = samples.into_iter().filter(|s| s.point.timestamp_ms >= horizon).collect();
        for k in 0..2 {
            let got = store.query(&key(k), T0 - DAY, T0 + 600 * DAY, 3600, None);
            let want = model.query(&key(k), T0 - DAY, T0 + 600 * DAY, 3600, None);
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(
                    (g.timestamp_ms, g.count, g.sum, g.min, g.max),
                    (w.timestamp_ms, w.count, w.sum, w.min, w.max)
                );
            }
        }
        // Idempotent.
        let before = store.query(&key(0), T0 - DAY, T0 + 600 * DAY, 60, None);
        store.compact(now).unwrap();
        prop_assert_eq!(store.query(&key(0), T0 - DAY, T0 + 600 * DAY, 60, None), before);
    }
}

/// A regular 1 s series long enough to seal many chunks.
fn regular(k: usize, n: i64, start: i64) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            sample(
                k,
                Point::value(start + i * SEC, (100 + (i / 17) % 9) as f64),
                "Percent",
                Resolution::High,
            )
        })
        .collect()
}

#[test]
fn reopen_after_drop_keeps_heads_sealed_chunks_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricStore::open(dir.path()).unwrap();
    // Enough to seal several chunks per series, in batches like the server's.
    let mut all = Vec::new();
    for k in 0..3 {
        all.extend(regular(k, 9_000, T0));
    }
    for batch in all.chunks(500) {
        store.put(batch.to_vec()).unwrap();
    }
    store.flush().unwrap();
    // More after the checkpoint: these live only in the log and the heads.
    store.put(regular(0, 100, T0 + 9_000 * SEC)).unwrap();
    store
        .put(vec![sample(
            3,
            Point {
                timestamp_ms: T0 - DAY,
                count: 2.0,
                sum: 5.0,
                min: 2.0,
                max: 3.0,
            },
            "Count",
            Resolution::Standard,
        )])
        .unwrap();
    let before: Vec<Vec<Bucket>> = (0..4)
        .map(|k| store.query(&key(k), T0 - 2 * DAY, T0 + DAY, 60, None))
        .collect();
    let listed = store.list_metrics(None, None, &[], Some(T0));
    drop(store);

    let store = MetricStore::open(dir.path()).unwrap();
    let after: Vec<Vec<Bucket>> = (0..4)
        .map(|k| store.query(&key(k), T0 - 2 * DAY, T0 + DAY, 60, None))
        .collect();
    assert_eq!(before, after);
    assert_eq!(after[0].iter().map(|b| b.count).sum::<f64>(), 9_100.0);
    assert_eq!(after[3][0].values, None);
    assert_eq!(store.list_metrics(None, None, &[], Some(T0)), listed);
    assert_eq!(listed.len(), 3, "series 3 has no sample at or after T0");
    // And it keeps working after recovery.
    store.put(regular(1, 10, T0 + DAY)).unwrap();
    let n: f64 = store
        .query(&key(1), T0, T0 + 2 * DAY, 3600, None)
        .iter()
        .map(|b| b.count)
        .sum();
    assert_eq!(n, 9_010.0);
}

#[test]
fn concurrent_puts_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MetricStore::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let batch = (0..20)
                        .map(|j| {
                            sample(
                                t,
                                Point::value(T0 + (i * 20 + j) * SEC, j as f64),
                                "Count",
                                Resolution::High,
                            )
                        })
                        .collect();
                    store.put(batch).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(store);
    let store = MetricStore::open(dir.path()).unwrap();
    for t in 0..8 {
        let buckets = store.query(&key(t), T0, T0 + DAY, 86_400, None);
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].count, 1000.0);
        assert_eq!(buckets[0].sum, 50.0 * (0..20).sum::<i32>() as f64);
    }
}

/// The child half of `acknowledged_puts_survive_kill_9`: puts batches forever, printing the
/// number of each acknowledged batch.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("METRICSTORE_CRASH_DIR") else {
        return;
    };
    let store = MetricStore::open(std::path::Path::new(&dir)).unwrap();
    for batch in 0i64.. {
        let samples = (0..200)
            .map(|k| {
                sample(
                    k as usize,
                    Point::value(T0 + batch * SEC, batch as f64),
                    "Count",
                    Resolution::High,
                )
            })
            .collect();
        store.put(samples).unwrap();
        println!("acked {batch}");
    }
}

#[test]
fn acknowledged_puts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("METRICSTORE_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = -1i64;
    while acked < 300 {
        let line = lines.next().expect("child prints").unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let store = MetricStore::open(dir.path()).unwrap();
    for k in [0usize, 77, 199] {
        let buckets = store.query(&key(k), T0, T0 + DAY, 1, None);
        // Every acknowledged batch is there (later, unacknowledged ones may be too).
        assert!(buckets.len() as i64 > acked, "{} <= {acked}", buckets.len());
        for (i, b) in buckets.iter().enumerate() {
            assert_eq!((b.timestamp_ms, b.sum), (T0 + i as i64 * SEC, i as f64));
        }
    }
}

#[test]
fn high_resolution_data_rolls_up_after_three_hours() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricStore::open(dir.path()).unwrap();
    // Four hours of 1 s data, values 0..=9 repeating.
    let samples: Vec<Sample> = (0..4 * 3600)
        .map(|i| {
            sample(
                0,
                Point::value(T0 + i * SEC, (i % 10) as f64),
                "Count",
                Resolution::High,
            )
        })
        .collect();
    store.put(samples).unwrap();
    let now = T0 + 4 * HOUR;
    let at_1s_before = store.query(&key(0), T0, now, 1, None);
    assert_eq!(at_1s_before.len(), 4 * 3600);
    store.compact(now).unwrap();

    // The first hour is now one statistic set a minute.
    let early = store.query(&key(0), T0, T0 + HOUR, 1, None);
    assert_eq!(early.len(), 60);
    let cutoff = (now - 3 * HOUR).div_euclid(MIN) * MIN;
    for b in &early {
        assert_eq!(b.timestamp_ms % MIN, 0);
        assert_eq!((b.count, b.sum, b.min, b.max), (60.0, 270.0, 0.0, 9.0));
        assert_eq!(b.values, None);
        assert_eq!(Statistic::Percentile(50.0).compute(b), None);
        assert_eq!(Statistic::Average.compute(b), Some(4.5));
    }
    // The last three hours keep their 1 s points and percentiles.
    let late = store.query(&key(0), cutoff, now, 60, None);
    assert_eq!(late.len(), 180);
    assert!(late
        .iter()
        .all(|b| b.values.as_ref().map(Vec::len) == Some(60)));
    assert_eq!(Statistic::Percentile(50.0).compute(&late[0]), Some(4.0));
    // Aggregates over the whole range are unchanged by the roll-up.
    let whole = |s: &MetricStore| {
        let b = s.query(&key(0), T0, now, 4 * 3600, None);
        (b[0].count, b[0].sum, b[0].min, b[0].max)
    };
    assert_eq!(whole(&store), (14_400.0, 64_800.0, 0.0, 9.0));

    // Durable and idempotent.
    drop(store);
    let store = MetricStore::open(dir.path()).unwrap();
    assert_eq!(whole(&store), (14_400.0, 64_800.0, 0.0, 9.0));
    assert_eq!(store.query(&key(0), T0, T0 + HOUR, 1, None), early);
    store.compact(now).unwrap();
    assert_eq!(store.query(&key(0), T0, T0 + HOUR, 1, None), early);
}

#[test]
fn retention_cascades_through_every_tier_and_then_drops() {
    let store = MetricStore::in_memory();
    let samples: Vec<Sample> = (0..24 * 60)
        .map(|i| {
            sample(
                1,
                Point::value(T0 + i * MIN, (i % 5) as f64),
                "Count",
                Resolution::Standard,
            )
        })
        .collect();
    store.put(samples).unwrap();
    let day = |s: &MetricStore| s.query(&key(1), T0, T0 + DAY, 86_400, None);
    let total = day(&store);
    assert_eq!(total[0].count, 1440.0);

    // 16 days later the minutes are 5-minute statistic sets.
    store.compact(T0 + 16 * DAY).unwrap();
    assert_eq!(store.query(&key(1), T0, T0 + DAY, 60, None).len(), 288);
    assert_eq!(
        day(&store),
        vec![Bucket {
            values: None,
            ..total[0].clone()
        }]
    );
    // 64 days later, hours.
    store.compact(T0 + 64 * DAY).unwrap();
    let hours = store.query(&key(1), T0, T0 + DAY, 60, None);
    assert_eq!(hours.len(), 24);
    assert!(hours
        .iter()
        .all(|b| b.count == 60.0 && b.timestamp_ms % HOUR == 0));
    assert_eq!(day(&store)[0].sum, total[0].sum);
    // After 455 days, nothing; the metric stays listed but not as recently active.
    store.compact(T0 + 457 * DAY).unwrap();
    assert!(day(&store).is_empty());
    assert_eq!(store.list_metrics(None, None, &[], None), vec![key(1)]);
    assert!(store
        .list_metrics(None, None, &[], Some(T0 + 456 * DAY))
        .is_empty());

    // A single compaction far in the future cascades all the way at once.
    let store = MetricStore::in_memory();
    store.put(regular(2, 600, T0)).unwrap();
    store.compact(T0 + 100 * DAY).unwrap();
    let b = store.query(&key(2), T0, T0 + DAY, 60, None);
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].timestamp_ms, b[0].count), (T0, 600.0));
}

#[test]
fn rolled_up_single_values_keep_percentiles() {
    // One 60 s sample a minute: its roll-up to 5 minutes holds five different values, but a
    // minute with a single value (min = max) stays usable for percentiles.
    let store = MetricStore::in_memory();
    store
        .put(vec![sample(
            0,
            Point::value(T0, 7.0),
            "Count",
            Resolution::Standard,
        )])
        .unwrap();
    store.compact(T0 + 20 * DAY).unwrap();
    let b = store.query(&key(0), T0 - DAY, T0 + DAY, 86_400, None);
    assert_eq!(b[0].values, Some(vec![(7.0, 1.0)]));
    assert_eq!(Statistic::Percentile(99.0).compute(&b[0]), Some(7.0));
}

#[test]
fn out_of_order_and_duplicate_timestamps_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetricStore::open(dir.path()).unwrap();
    let mut samples = regular(0, 5_000, T0);
    samples.reverse();
    samples.extend(regular(0, 5_000, T0 - 14 * DAY));
    samples.extend(regular(0, 10, T0)); // duplicates of the first ten seconds
    samples.push(sample(
        0,
        Point::value(T0 + 2 * HOUR, 1.0),
        "Percent",
        Resolution::High,
    ));
    for batch in samples.chunks(777) {
        store.put(batch.to_vec()).unwrap();
    }
    drop(store);
    let store = MetricStore::open(dir.path()).unwrap();
    let b = store.query(&key(0), T0 - 15 * DAY, T0 + 3 * HOUR, 1, None);
    assert_eq!(b.len(), 10_001);
    assert_eq!(b[0].timestamp_ms, T0 - 14 * DAY);
    let first = b.iter().find(|b| b.timestamp_ms == T0).unwrap();
    assert_eq!(first.count, 2.0);
    assert_eq!(first.values, Some(vec![(100.0, 1.0), (100.0, 1.0)]));
}

#[test]
fn list_metrics_filters() {
    let store = MetricStore::in_memory();
    let a = MetricKey::new(
        "AWS/ECS",
        "CPUUtilization",
        vec![
            ("ServiceName".into(), "web".into()),
            ("ClusterName".into(), "prod".into()),
        ],
    );
    let b = MetricKey::new(
        "AWS/ECS",
        "MemoryUtilization",
        vec![("ClusterName".into(), "dev".into())],
    );
    let c = MetricKey::new("Custom", "Queue", vec![]);
    for (k, t) in [(&a, T0), (&b, T0 - DAY), (&c, T0)] {
        store
            .put(vec![Sample {
                key: k.clone(),
                point: Point::value(t, 1.0),
                unit: "Percent".into(),
                resolution: Resolution::Standard,
            }])
            .unwrap();
    }
    let f = |name: &str, value: Option<&str>| DimensionFilter {
        name: name.into(),
        value: value.map(Into::into),
    };
    assert_eq!(
        store.list_metrics(None, None, &[], None),
        vec![a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(
        store.list_metrics(Some("AWS/ECS"), None, &[], None),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        store.list_metrics(None, Some("Queue"), &[], None),
        vec![c.clone()]
    );
    assert_eq!(
        store.list_metrics(None, None, &[f("ClusterName", None)], None),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        store.list_metrics(
            None,
            None,
            &[f("ClusterName", Some("prod")), f("ServiceName", None)],
            None
        ),
        vec![a.clone()]
    );
    assert_eq!(
        store.list_metrics(None, None, &[], Some(T0 - HOUR)),
        vec![a, c]
    );
}

#[test]
fn units_are_separate_lanes_and_filterable() {
    let store = MetricStore::in_memory();
    store
        .put(vec![
            sample(0, Point::value(T0, 1.0), "Count", Resolution::Standard),
            sample(
                0,
                Point::value(T0 + SEC, 2.0),
                "Percent",
                Resolution::Standard,
            ),
            sample(
                0,
                Point::value(T0 + 2 * SEC, 4.0),
                "Count",
                Resolution::High,
            ),
        ])
        .unwrap();
    let all = store.query(&key(0), T0, T0 + MIN, 60, None);
    assert_eq!((all[0].sum, all[0].unit.as_str()), (7.0, "Count"));
    let pct = store.query(&key(0), T0, T0 + MIN, 60, Some("Percent"));
    assert_eq!((pct[0].sum, pct[0].unit.as_str()), (2.0, "Percent"));
    assert!(store
        .query(&key(0), T0, T0 + MIN, 60, Some("Bytes"))
        .is_empty());
    assert!(store.query(&key(9), T0, T0 + MIN, 60, None).is_empty());
}
