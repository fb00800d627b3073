//! Durable commit throughput: (a) raw one-row SQLite commits with `synchronous=FULL` in WAL
//! mode straight through rusqlite, the floor any SQLite-backed store sits on; (b) durable
//! transactions through `SqliteStore` from one writer; (c) from 64 concurrent writers, where
//! group commit folds many transactions into one fsync.
//!
//! The three are interleaved over several rounds so a noisy neighbour hits all of them alike;
//! it prints every raw number, the medians and the ratios (b)/(a) and (c)/(a). It only
//! reports: it never fails on timing.
//!
//! Run with `cargo bench -p store --bench commits`. Set `COMMITS_BENCH_SECS` to change the
//! time per measurement (default 1.0 s; 5 rounds of 3 measurements).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use store::clock::SystemClock;
use store::{SqliteStore, Store};

const ROUNDS: usize = 5;
const CONCURRENT_WRITERS: usize = 64;
const VALUE: &[u8] = &[b'x'; 256];

/// (a): one INSERT per autocommit transaction, each one a WAL fsync.
fn raw_sqlite(path: &Path, window: Duration) -> anyhow::Result<f64> {
    let conn = rusqlite::Connection::open(path)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
    )?;
    let mut insert = conn.prepare("INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)")?;
    let mut value = VALUE.to_vec();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        // The value must differ from the row it replaces: SQLite skips rewriting a cell whose
        // bytes are unchanged, and a commit that dirtied no page does not touch the WAL or
        // fsync at all, which would turn this floor into a measure of nothing.
        value[..8].copy_from_slice(&n.to_le_bytes());
        insert.execute(rusqlite::params![format!("key/{}", n % 1024), value])?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// (b) and (c): `writers` tasks doing unconditional puts for `window`; returns txns/s and
/// the average number of transactions per SQLite commit.
async fn through_store(
    path: &Path,
    writers: usize,
    window: Duration,
) -> anyhow::Result<(f64, f64)> {
    let store = Arc::new(SqliteStore::open(path, Arc::new(SystemClock))?);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                store
                    .put(&format!("w{w}/{}", i % 64), Bytes::from_static(VALUE))
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("writer task")??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = store.stats();
    let per_commit = stats.revisions as f64 / stats.sqlite_commits.max(1) as f64;
    let rate = done.load(Ordering::Relaxed) as f64 / elapsed;
    Arc::into_inner(store)
        .context("store still shared")?
        .close()
        .await?;
    Ok((rate, per_commit))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn show(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> anyhow::Result<()> {
    let secs: f64 = std::env::var("COMMITS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let window = Duration::from_secs_f64(secs.clamp(0.05, 60.0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    println!(
        "durable commit throughput in {} ({ROUNDS} rounds x {secs:.1}s each)",
        dir.path().display()
    );

    let (mut raw, mut single, mut many, mut batch) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Rotate the order each round so no variant always runs first (or last).
        for step in 0..3 {
            let path = dir.path().join(format!("round{round}-step{step}.db"));
            match (round + step) % 3 {
                0 => raw.push(raw_sqlite(&path, window)?),
                1 => single.push(runtime.block_on(through_store(&path, 1, window))?.0),
                _ => {
                    let (rate, per_commit) =
                        runtime.block_on(through_store(&path, CONCURRENT_WRITERS, window))?;
                    many.push(rate);
                    batch.push(per_commit);
                }
            }
        }
    }

    let (a, b, c) = (median(&raw), median(&single), median(&many));
    println!(
        "(a) raw rusqlite commits/s          median {a:>9.0}   runs: {}",
        show(&raw)
    );
    println!(
        "(b) SqliteStore, 1 writer, txns/s    median {b:>9.0}   runs: {}",
        show(&single)
    );
    println!(
        "(c) SqliteStore, {CONCURRENT_WRITERS} writers, txns/s  median {c:>9.0}   runs: {}",
        show(&many)
    );
    println!(
        "    (c) txns per SQLite commit      median {:>9.1}   runs: {}",
        median(&batch),
        {
            batch
                .iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!("ratio (b)/(a) = {:.2}", b / a);
    println!("ratio (c)/(a) = {:.2}", c / a);
    Ok(())
}
