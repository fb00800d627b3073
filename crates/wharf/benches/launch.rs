//! Launch latency: RunTask → RUNNING (as DescribeTasks shows it) through a real `wharf up`,
//! against the floor of `docker run -d` of the same image, sampled interleaved (A B A B …) on
//! the same machine. Prints p50 and p99 of both and their ratios; never fails on timing.
//!
//! Run: `cargo bench -p wharf --bench launch` (`WHARF_BENCH_SAMPLES`, default 50).

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;

use anyhow::{bail, Context, Result};
use aws_sdk_ecs::types::ContainerDefinition;

const IMAGE: &str = "wharf-test/busybox:latest";
/// Stops at once on SIGTERM (a bare `sleep` as PID 1 ignores it and would take the full stop
/// timeout, overlapping the next samples).
const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

fn main() -> Result<()> {
    agent::testing::ensure_test_image();
    let samples: usize = std::env::var("WHARF_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
        .max(1);
    let data = tempfile::tempdir()?;
    // `docker run -d` of a local image does not pull; neither does the agent here.
    std::env::set_var("WHARF_AGENT_IMAGE_PULL_BEHAVIOR", "prefer-cached");
    let wharf = support::Wharf::start("up", data.path())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let ecs = wharf.ecs_client_with_agent().await?;
        measure(&ecs, samples).await
    });
    drop(wharf);
    let _ = Command::new("sh")
        .args(["-c", "docker ps -aq --filter label=com.amazonaws.ecs.task-definition-family=bench-launch | xargs -r docker rm -f"])
        .output();
    result
}

async fn measure(ecs: &aws_sdk_ecs::Client, samples: usize) -> Result<()> {
    ecs.register_task_definition()
        .family("bench-launch")
        .container_definitions(
            ContainerDefinition::builder()
                .name("main")
                .image(IMAGE)
                .memory(16)
                .command("sh")
                .command("-c")
                .command(SLEEPER)
                .build(),
        )
        .send()
        .await?;
    let (mut wharf, mut docker) = (Vec::new(), Vec::new());
    println!("launch bench: {samples} interleaved samples of RunTask→RUNNING and `docker run -d {IMAGE}`");
    for i in 0..samples {
        // A: the floor.
        let started = Instant::now();
        let output = Command::new("docker")
            .args(["run", "-d", "--rm", IMAGE, "sh", "-c", SLEEPER])
            .output()?;
        docker.push(started.elapsed());
        if !output.status.success() {
            bail!(
                "docker run failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        // B: Wharf.
        let started = Instant::now();
        let ran = ecs
            .run_task()
            .task_definition("bench-launch")
            .send()
            .await?;
        let arn = ran
            .tasks()
            .first()
            .and_then(|t| t.task_arn())
            .context("placed")?
            .to_string();
        loop {
            let described = ecs.describe_tasks().tasks(&arn).send().await?;
            let status = described
                .tasks()
                .first()
                .and_then(|t| t.last_status())
                .unwrap_or("");
            if status == "RUNNING" {
                break;
            }
            if status == "STOPPED" || started.elapsed() > Duration::from_secs(60) {
                bail!("task {arn} did not reach RUNNING (last {status})");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wharf.push(started.elapsed());
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        ecs.stop_task().task(&arn).send().await?;
        if (i + 1) % 10 == 0 {
            println!("  {} samples", i + 1);
        }
    }
    let (w50, w99) = (percentile(&mut wharf, 0.50), percentile(&mut wharf, 0.99));
    let (d50, d99) = (percentile(&mut docker, 0.50), percentile(&mut docker, 0.99));
    println!("{:<34} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "{:<34} {:>8.1}ms {:>8.1}ms",
        "wharf RunTask → RUNNING",
        ms(w50),
        ms(w99)
    );
    println!(
        "{:<34} {:>8.1}ms {:>8.1}ms",
        "docker run -d",
        ms(d50),
        ms(d99)
    );
    println!(
        "ratio p50: {:.2}x   ratio p99: {:.2}x   (goal: ≤ 1.2x and ≤ 1.5x)",
        ms(w50) / ms(d50),
        ms(w99) / ms(d99)
    );
    Ok(())
}

fn percentile(values: &mut [Duration], q: f64) -> Duration {
    values.sort();
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[index.min(values.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
