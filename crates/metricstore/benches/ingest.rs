//! Ingest benchmark: the metric store against Prometheus's TSDB on the same series.
//!
//! Run with `cargo bench -p metricstore --bench ingest`. It generates 1,000 series × 3,600
//! samples at 1 s (a slow random walk, below), then alternates, at least three times each:
//! - A (us): `MetricStore::put` in batches of 1,000 samples (one PutMetricData-sized request per
//!   second of data, time-major like live traffic) from one thread into a fresh directory,
//!   then `flush` (seal every head chunk) and `compact`; bytes on disk are every file in the
//!   directory afterwards.
//! - B (Prometheus): `promtool tsdb create-blocks-from openmetrics <file> <dir>` on the same
//!   series written as an OpenMetrics file; bytes are every file of the blocks it writes.
//!
//! What the two sides measure is not the same work, and the comparison is meant to be read that
//! way: promtool is *offline block creation* — it parses a text file, appends into an in-memory
//! head without a write-ahead log or any fsync per batch, and writes finished, compacted
//! blocks (index + chunks). We measure the *online durable path*: every batch of 1,000 samples
//! is fsynced (group commit with a single caller degenerates to one fsync per put) before
//! `put` returns, plus the final sealing. Parsing is on their side only (our samples arrive as
//! structs; building them — cloning keys — is inside our timing). Prometheus's live scrape path
//! with its WAL is not measured here.
//!
//! "Per core": samples ÷ CPU seconds consumed (user + system, from /proc, for us our own
//! process, for promtool the waited-for child), so promtool's use of both cores is accounted
//! for; wall-clock rates are printed beside it. This benchmark never fails on timing.
//!
//! Values: by default a slow random walk on a binary-exact grid (each second, with probability
//! 1/4, the value moves by ±0.5), which is what gauges and counters mostly look like.
//! `WHARF_BENCH_VALUES=noisy` makes every step a full-precision float (worst case for both
//! XOR encoders). `WHARF_BENCH_ROUNDS=N` changes the number of A/B rounds (default 3);
//! `WHARF_BENCH_KEEP=path` leaves a copy of our last database there for inspection.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use metricstore::{MetricKey, MetricStore, Point, Resolution, Sample};

const SERIES: usize = 1_000;
const SAMPLES: usize = 3_600;
const BATCH: usize = 1_000;
const START_MS: i64 = 1_700_000_000_000;
/// At least three of each; `WHARF_BENCH_ROUNDS` can ask for more (or fewer, for a quick look).
const ROUNDS: usize = 3;

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `values[series][i]`.
fn generate(noisy: bool) -> Vec<Vec<f64>> {
    let mut rng = Rng(42);
    (0..SERIES)
        .map(|s| {
            let mut v = 20.0 + (s % 60) as f64;
            (0..SAMPLES)
                .map(|_| {
                    if noisy {
                        v += (rng.unit() - 0.5) * 0.2;
                    } else {
                        let r = rng.next() % 8;
                        v += match r {
                            0 => 0.5,
                            1 => -0.5,
                            _ => 0.0,
                        };
                    }
                    v
                })
                .collect()
        })
        .collect()
}

fn keys() -> Vec<MetricKey> {
    (0..SERIES)
        .map(|s| {
            MetricKey::new(
                "Wharf/Bench",
                "Gauge",
                vec![
                    ("ClusterName".to_string(), "bench".to_string()),
                    ("TaskId".to_string(), format!("task-{s:04}")),
                ],
            )
        })
        .collect()
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn file_sizes(dir: &Path) -> String {
    let mut out: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            Some(format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                e.metadata().ok()?.len()
            ))
        })
        .collect();
    out.sort();
    out.join(", ")
}

/// `(own user+system, waited-for children's user+system)` CPU seconds, from /proc/self/stat.
fn cpu_seconds() -> (f64, f64) {
    let tick = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14 ... cstime 17.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let get = |field: usize| f.get(field - 3).copied().unwrap_or(0.0) / tick;
    (get(14) + get(15), get(16) + get(17))
}

struct Run {
    samples_per_s_wall: f64,
    samples_per_cpu_s: f64,
    bytes_per_sample: f64,
    detail: String,
}

fn run_ours(keys: &[MetricKey], values: &[Vec<f64>], scratch: &Path) -> Result<Run, String> {
    let dir = scratch.join("ours");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let store = MetricStore::open(&dir).map_err(|e| e.to_string())?;
    let total = (SERIES * SAMPLES) as f64;
    let (cpu0, _) = cpu_seconds();
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..SAMPLES {
        for (key, series) in keys.iter().zip(values) {
            batch.push(Sample {
                key: key.clone(),
                point: Point::value(START_MS + i as i64 * 1000, series[i]),
                unit: "None".to_string(),
                resolution: Resolution::High,
            });
            if batch.len() == BATCH {
                store
                    .put(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    if !batch.is_empty() {
        store.put(batch).map_err(|e| e.to_string())?;
    }
    let ingest = t0.elapsed().as_secs_f64();
    store.flush().map_err(|e| e.to_string())?;
    store
        .compact(START_MS + SAMPLES as i64 * 1000)
        .map_err(|e| e.to_string())?;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, _) = cpu_seconds();
    drop(store);
    let bytes = dir_bytes(&dir);
    let files = file_sizes(&dir.join("metrics"));
    if let Some(keep) = std::env::var_os("WHARF_BENCH_KEEP") {
        // Leave a copy of the database for inspection.
        let _ = fs::copy(dir.join("metrics/metrics.db"), keep);
    }
    let _ = fs::remove_dir_all(&dir);
    let cpu = (cpu1 - cpu0).max(0.01);
    Ok(Run {
        samples_per_s_wall: total / wall,
        samples_per_cpu_s: total / cpu,
        bytes_per_sample: bytes as f64 / total,
        detail: format!(
            "puts {ingest:.2} s + flush/compact {:.2} s = {wall:.2} s wall, {cpu:.2} s CPU, {bytes} bytes: {files}",
            wall - ingest
        ),
    })
}

fn write_openmetrics(values: &[Vec<f64>], path: &Path) -> std::io::Result<()> {
    let mut out = BufWriter::new(fs::File::create(path)?);
    writeln!(out, "# TYPE wharf_bench_gauge gauge")?;
    // Series-major: OpenMetrics wants each series' samples together and in time order.
    for (s, series) in values.iter().enumerate() {
        for (i, v) in series.iter().enumerate() {
            let ms = START_MS + i as i64 * 1000;
            writeln!(
                out,
                "wharf_bench_gauge{{cluster_name=\"bench\",task_id=\"task-{s:04}\"}} {v:?} {}.{:03}",
                ms / 1000,
                ms % 1000
            )?;
        }
    }
    writeln!(out, "# EOF")?;
    out.flush()
}

fn run_promtool(promtool: &Path, input: &Path, scratch: &Path) -> Result<Run, String> {
    let dir = scratch.join("prom");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let total = (SERIES * SAMPLES) as f64;
    let (_, c0) = cpu_seconds();
    let t0 = Instant::now();
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(input)
        .arg(&dir)
        .output()
        .map_err(|e| format!("run promtool: {e}"))?;
    let wall = t0.elapsed().as_secs_f64();
    let (_, c1) = cpu_seconds();
    if !out.status.success() {
        return Err(format!(
            "promtool failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bytes = dir_bytes(&dir);
    let _ = fs::remove_dir_all(&dir);
    let cpu = (c1 - c0).max(0.01);
    Ok(Run {
        samples_per_s_wall: total / wall,
        samples_per_cpu_s: total / cpu,
        bytes_per_sample: bytes as f64 / total,
        detail: format!("{wall:.2} s wall, {cpu:.2} s CPU, {bytes} bytes"),
    })
}

fn find_promtool() -> Option<PathBuf> {
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|c| c.is_file())
        })
    };
    if let Some(p) = on_path("promtool") {
        return Some(p);
    }
    let root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        println!("promtool not found; installing Debian's prometheus package (apt-get install -y prometheus)");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-q", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            println!(
                "apt-get install failed; try `apt-get update && apt-get install -y prometheus`"
            );
        }
        return on_path("promtool");
    }
    println!(
        "promtool not found: install it with `sudo apt-get install -y prometheus` (Debian) to \
         get the comparison; reporting our figures only"
    );
    None
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let noisy = std::env::var("WHARF_BENCH_VALUES").is_ok_and(|v| v == "noisy");
    println!(
        "metricstore ingest: {SERIES} series × {SAMPLES} samples at 1 s = {} samples, batches of {BATCH}, values: {}",
        SERIES * SAMPLES,
        if noisy {
            "noisy full-precision random walk"
        } else {
            "slow random walk on a 0.5 grid"
        }
    );
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            println!("cannot create a scratch directory: {e}");
            return;
        }
    };
    let values = generate(noisy);
    let keys = keys();
    let promtool = find_promtool();
    let input = scratch.path().join("series.om");
    let promtool = promtool.filter(|_| match write_openmetrics(&values, &input) {
        Ok(()) => true,
        Err(e) => {
            println!("cannot write the OpenMetrics file: {e}");
            false
        }
    });

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let rounds = std::env::var("WHARF_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    for round in 1..=rounds {
        match run_ours(&keys, &values, scratch.path()) {
            Ok(r) => {
                println!(
                    "  A{round} metricstore: {:>10.0} samples/s wall, {:>10.0} samples/CPU-s, {:.3} B/sample ({})",
                    r.samples_per_s_wall, r.samples_per_cpu_s, r.bytes_per_sample, r.detail
                );
                ours.push(r);
            }
            Err(e) => println!("  A{round} metricstore failed: {e}"),
        }
        if let Some(p) = &promtool {
            match run_promtool(p, &input, scratch.path()) {
                Ok(r) => {
                    println!(
                        "  B{round} promtool:    {:>10.0} samples/s wall, {:>10.0} samples/CPU-s, {:.3} B/sample ({})",
                        r.samples_per_s_wall, r.samples_per_cpu_s, r.bytes_per_sample, r.detail
                    );
                    theirs.push(r);
                }
                Err(e) => println!("  B{round} promtool failed: {e}"),
            }
        }
    }

    let med = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let (a_wall, a_cpu, a_bytes) = (
        med(&ours, |r| r.samples_per_s_wall),
        med(&ours, |r| r.samples_per_cpu_s),
        med(&ours, |r| r.bytes_per_sample),
    );
    println!("medians:");
    println!(
        "  metricstore: {a_wall:.0} samples/s wall (one thread = per core), {a_cpu:.0} samples/CPU-s, {a_bytes:.3} B/sample"
    );
    if theirs.is_empty() {
        println!("  promtool:    not measured");
        return;
    }
    let (b_wall, b_cpu, b_bytes) = (
        med(&theirs, |r| r.samples_per_s_wall),
        med(&theirs, |r| r.samples_per_cpu_s),
        med(&theirs, |r| r.bytes_per_sample),
    );
    println!("  promtool:    {b_wall:.0} samples/s wall, {b_cpu:.0} samples/CPU-s, {b_bytes:.3} B/sample");
    println!("ratios (goal: per-core rate ≥ 1.0×, ≤ 2 B/sample):");
    println!(
        "  samples per CPU-second: {:.2}× promtool's   (wall-clock, our 1 thread vs promtool: {:.2}×)",
        a_cpu / b_cpu,
        a_wall / b_wall
    );
    println!(
        "  bytes per sample:       {a_bytes:.3} vs Prometheus {b_bytes:.3} ({:.2}×)",
        a_bytes / b_bytes
    );
}
