//! `wharf bench placement`: simulated container instances and tasks through the same code path
//! RunTask uses (handlers, the cluster's placer and its batching committer), down to durable
//! SQLite commits, at two fleet sizes; prints placements/s, time-to-place percentiles and the
//! ratio between the sizes. It never fails on timing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use controlplane::ecs::{self, EcsContext};
use serde_json::{json, Value};
use store::clock::SystemClock;
use store::SqliteStore;

#[derive(Args, Clone)]
pub struct PlacementArgs {
    /// Simulated container instances in the measured run.
    #[arg(long, default_value_t = 10_000)]
    instances: usize,
    /// Tasks to place in each run.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// The smaller fleet the rate is compared against (0: skip).
    #[arg(long, default_value_t = 1_000)]
    baseline_instances: usize,
    /// Concurrent RunTask callers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

async fn call(ctx: &EcsContext, operation: &str, input: Value) -> Result<Value> {
    let result = match ecs::dispatch(ctx, operation, input.clone()).await {
        Some(result) => result,
        None => ecs::agent_service::dispatch(ctx, operation, input)
            .await
            .with_context(|| format!("unknown operation {operation}"))?,
    };
    result.map_err(|error| anyhow::anyhow!("{operation}: {error}"))
}

struct Run {
    instances: usize,
    placed: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    failures: usize,
}

async fn run(instances: usize, tasks: usize, concurrency: usize) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(SystemClock);
    let store = SqliteStore::open(&dir.path().join("bench.db"), clock.clone())?;
    let ctx = Arc::new(EcsContext::new(
        Arc::new(store),
        clock,
        "us-east-1",
        "000000000000",
        b"bench",
    ));
    call(&ctx, "CreateCluster", json!({"clusterName": "bench"})).await?;
    // Room for every task with a quarter to spare, spread evenly.
    let per_instance = tasks.div_ceil(instances) as i64 * 5 / 4 + 1;
    eprintln!("registering {instances} simulated instances…");
    let started = Instant::now();
    let mut arns = Vec::with_capacity(instances);
    for chunk in (0..instances).collect::<Vec<_>>().chunks(256) {
        let mut calls = tokio::task::JoinSet::new();
        for &i in chunk {
            let ctx = ctx.clone();
            calls.spawn(async move {
                let identity = json!({"instanceId": format!("i-{i:017x}"), "availabilityZone": ZONES[i % 3], "instanceType": "wharf.bench"});
                let stack = if i % 10 == 9 { "dev" } else { "prod" };
                let registered = call(&ctx, "RegisterContainerInstance", json!({
                    "cluster": "bench",
                    "instanceIdentityDocument": identity.to_string(),
                    "totalResources": [
                        {"name": "CPU", "type": "INTEGER", "integerValue": per_instance * 64},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": per_instance * 128},
                    ],
                    "attributes": [{"name": "stack", "value": stack}],
                })).await?;
                let arn = registered["containerInstance"]["containerInstanceArn"].as_str().context("arn")?.to_string();
                call(&ctx, "Heartbeat", json!({"cluster": "bench", "containerInstanceArn": arn})).await?;
                Ok::<_, anyhow::Error>(arn)
            });
        }
        while let Some(arn) = calls.join_next().await {
            arns.push(arn??);
        }
    }
    eprintln!("registered in {:.1} s", started.elapsed().as_secs_f64());
    // Sessions last 30 s without heartbeats; keep them alive for the whole run.
    // Held in a JoinSet so it stops when this run ends, however it ends.
    let mut keep_alive = tokio::task::JoinSet::new();
    {
        let ctx = ctx.clone();
        let arns = arns.clone();
        keep_alive.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                for arn in &arns {
                    let _ = call(
                        &ctx,
                        "Heartbeat",
                        json!({"cluster": "bench", "containerInstanceArn": arn}),
                    )
                    .await;
                }
            }
        });
    }
    call(&ctx, "RegisterTaskDefinition", json!({
        "family": "bench",
        "containerDefinitions": [{"name": "app", "image": "wharf-test/busybox:latest", "cpu": 64, "memory": 128}],
    }))
    .await?;
    let request = json!({
        "cluster": "bench",
        "taskDefinition": "bench",
        "count": 10,
        "placementStrategy": [
            {"type": "spread", "field": "attribute:ecs.availability-zone"},
            {"type": "binpack", "field": "memory"},
        ],
        "placementConstraints": [{"type": "memberOf", "expression": "attribute:stack == prod"}],
    });
    // Warm the cluster's placer (its first use reads the cluster); not measured.
    let mut warm = request.clone();
    warm["count"] = json!(1);
    call(&ctx, "RunTask", warm).await?;
    let calls_total = tasks.div_ceil(10);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    // A JoinSet owns the workers: an error returns early and dropping the set aborts the rest.
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let ctx = ctx.clone();
        let next = next.clone();
        let request = request.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let (mut placed, mut failures) = (0usize, 0usize);
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < calls_total {
                let begun = Instant::now();
                let answer = call(&ctx, "RunTask", request.clone()).await?;
                latencies.push(begun.elapsed());
                placed += answer["tasks"].as_array().map(Vec::len).unwrap_or(0);
                failures += answer["failures"].as_array().map(Vec::len).unwrap_or(0);
            }
            Ok::<_, anyhow::Error>((latencies, placed, failures))
        });
    }
    let (mut latencies, mut placed, mut failures) = (Vec::new(), 0, 0);
    while let Some(worker) = workers.join_next().await {
        let (l, p, f) = worker??;
        latencies.extend(l);
        placed += p;
        failures += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    keep_alive.abort_all();
    latencies.sort();
    if latencies.is_empty() {
        bail!("no RunTask calls were made");
    }
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(Run {
        instances,
        placed,
        seconds,
        p50: at(0.5),
        p99: at(0.99),
        failures,
    })
}

fn print(run: &Run) {
    println!(
        "{:>6} instances: {:>7} tasks placed in {:>6.2} s   placements/s: {:.0}   time to place (10 per RunTask) p50 {:.1} ms p99 {:.1} ms   unplaced answers {}",
        run.instances,
        run.placed,
        run.seconds,
        run.placed as f64 / run.seconds,
        run.p50.as_secs_f64() * 1000.0,
        run.p99.as_secs_f64() * 1000.0,
        run.failures,
    );
}

pub async fn placement(args: PlacementArgs) -> Result<()> {
    println!(
        "placement bench: {} tasks, RunTask count 10, spread(az)+binpack(memory)+memberOf, {} concurrent callers, durable SQLite commits",
        args.tasks, args.concurrency
    );
    let baseline = if args.baseline_instances > 0 {
        let run = run(args.baseline_instances, args.tasks, args.concurrency).await?;
        print(&run);
        Some(run)
    } else {
        None
    };
    let measured = run(args.instances, args.tasks, args.concurrency).await?;
    print(&measured);
    println!(
        "placements/s: {:.0}",
        measured.placed as f64 / measured.seconds
    );
    if let Some(baseline) = baseline {
        let ratio = (measured.placed as f64 / measured.seconds)
            / (baseline.placed as f64 / baseline.seconds);
        println!(
            "ratio {} ÷ {} instances: {ratio:.2} (goal ≥ 0.8); goal at {} instances: ≥ 10000 placements/s",
            args.instances, args.baseline_instances, args.instances
        );
    }
    Ok(())
}
