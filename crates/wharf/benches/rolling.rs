//! Rolling deployment: the wall time of a 10-task rolling deployment through a real `wharf up`
//! (UpdateService → one COMPLETED deployment with every task of the new revision RUNNING and
//! the old ones STOPPED, as DescribeServices shows it), divided by the floor its health checks
//! imply: every wave of replacements must pass one health check (the first check runs one
//! `interval` after the container starts), and with `minimumHealthyPercent` 100 a wave is
//! what `maximumPercent` leaves room for, so the floor is `waves × interval`. There is no load
//! balancer yet, so no deregistration delay. Containers stop on SIGTERM at once. Rounds
//! alternate between two revisions; prints every round, the median and the ratio; never
//! fails on timing.
//!
//! Run: `cargo bench -p wharf --bench rolling` (`WHARF_BENCH_ROUNDS`, default 3;
//! `WHARF_BENCH_MAX_PERCENT`, default 200).

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;

use anyhow::{bail, Context, Result};
use aws_sdk_ecs::types::{ContainerDefinition, DeploymentConfiguration, HealthCheck, KeyValuePair};

const IMAGE: &str = "wharf-test/busybox:latest";
const TASKS: i32 = 10;
/// ECS's shortest health check interval.
const INTERVAL_SECONDS: i32 = 5;

fn main() -> Result<()> {
    agent::testing::ensure_test_image();
    let rounds: usize = std::env::var("WHARF_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let max_percent: i32 = std::env::var("WHARF_BENCH_MAX_PERCENT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let data = tempfile::tempdir()?;
    let wharf = support::Wharf::start("up", data.path())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let ecs = wharf.ecs_client_with_agent().await?;
        measure(&ecs, rounds, max_percent).await
    });
    drop(wharf);
    let _ = Command::new("sh")
        .args(["-c", "docker ps -aq --filter label=com.amazonaws.ecs.task-definition-family=bench-rolling | xargs -r docker rm -f"])
        .output();
    result
}

fn container(version: usize) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name("main")
        .image(IMAGE)
        .memory(16)
        .stop_timeout(2)
        // Exits on SIGTERM at once, so stopping costs nothing beyond the engine's own work.
        .command("sh")
        .command("-c")
        .command("trap 'exit 0' TERM; sleep 3600 & wait")
        .environment(
            KeyValuePair::builder()
                .name("VERSION")
                .value(version.to_string())
                .build(),
        )
        .health_check(
            HealthCheck::builder()
                .command("CMD-SHELL")
                .command("true")
                .interval(INTERVAL_SECONDS)
                .timeout(2)
                .retries(1)
                .build()
                .expect("health check"),
        )
        .build()
}

async fn measure(ecs: &aws_sdk_ecs::Client, rounds: usize, max_percent: i32) -> Result<()> {
    let mut revisions = Vec::new();
    for version in 1..=2 {
        let registered = ecs
            .register_task_definition()
            .family("bench-rolling")
            .container_definitions(container(version))
            .send()
            .await?;
        revisions.push(
            registered
                .task_definition()
                .and_then(|d| d.task_definition_arn())
                .context("an ARN")?
                .to_string(),
        );
    }
    ecs.create_service()
        .service_name("bench-rolling")
        .task_definition(&revisions[0])
        .desired_count(TASKS)
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .minimum_healthy_percent(100)
                .maximum_percent(max_percent)
                .build(),
        )
        .send()
        .await?;
    wait_completed(ecs, &revisions[0]).await?;
    // With min 100 %, each wave is the room maximumPercent leaves above the desired count.
    let batch = (TASKS * (max_percent - 100) / 100).max(1);
    let waves = (TASKS + batch - 1) / batch;
    let floor = Duration::from_secs((waves * INTERVAL_SECONDS) as u64);
    println!(
        "rolling bench: {TASKS} tasks, min 100 % / max {max_percent} %, health check every {INTERVAL_SECONDS} s → {waves} wave(s), floor {:.1} s",
        floor.as_secs_f64()
    );
    let mut times = Vec::new();
    for round in 0..rounds {
        let target = &revisions[(round + 1) % 2];
        let started = Instant::now();
        ecs.update_service()
            .service("bench-rolling")
            .task_definition(target)
            .send()
            .await?;
        let phases = wait_completed(ecs, target).await?;
        let took = started.elapsed();
        println!(
            "  round {}: {:.2} s  ({:.2}× the floor); new tasks all RUNNING at {:.2} s, all HEALTHY at {:.2} s",
            round + 1,
            took.as_secs_f64(),
            took.as_secs_f64() / floor.as_secs_f64(),
            phases.0.as_secs_f64(),
            phases.1.as_secs_f64(),
        );
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "median {:.2} s ÷ floor {:.2} s = {:.2}×   (goal ≤ 1.1×; raw: {:?})",
        median.as_secs_f64(),
        floor.as_secs_f64(),
        median.as_secs_f64() / floor.as_secs_f64(),
        times
            .iter()
            .map(|t| format!("{:.2}s", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    ecs.delete_service()
        .service("bench-rolling")
        .force(true)
        .send()
        .await?;
    Ok(())
}

/// Until the service runs `revision` only, in one COMPLETED deployment with every task RUNNING.
/// Returns when the new tasks were first all RUNNING and all HEALTHY (the phases).
async fn wait_completed(ecs: &aws_sdk_ecs::Client, revision: &str) -> Result<(Duration, Duration)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let (mut all_running, mut all_healthy) = (None, None);
    loop {
        let described = ecs
            .describe_services()
            .services("bench-rolling")
            .send()
            .await?;
        let service = described.services().first().context("the service")?;
        let deployments = service.deployments();
        let done = deployments.len() == 1
            && deployments[0].task_definition() == Some(revision)
            && deployments[0]
                .rollout_state()
                .is_some_and(|s| s.as_str() == "COMPLETED")
            && service.running_count() == TASKS;
        if done {
            let now = started.elapsed();
            return Ok((all_running.unwrap_or(now), all_healthy.unwrap_or(now)));
        }
        if all_healthy.is_none() {
            let arns = ecs
                .list_tasks()
                .service_name("bench-rolling")
                .send()
                .await?
                .task_arns()
                .to_vec();
            if !arns.is_empty() {
                let tasks = ecs.describe_tasks().set_tasks(Some(arns)).send().await?;
                let new: Vec<_> = tasks
                    .tasks()
                    .iter()
                    .filter(|t| t.task_definition_arn() == Some(revision))
                    .collect();
                let count = |f: &dyn Fn(&&aws_sdk_ecs::types::Task) -> bool| {
                    new.iter().filter(|t| f(t)).count() as i32
                };
                if all_running.is_none() && count(&|t| t.last_status() == Some("RUNNING")) == TASKS
                {
                    all_running = Some(started.elapsed());
                }
                if count(&|t| t.health_status().is_some_and(|h| h.as_str() == "HEALTHY")) == TASKS {
                    all_healthy = Some(started.elapsed());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the deployment to {revision} did not complete within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
