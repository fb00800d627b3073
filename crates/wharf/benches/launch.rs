//! Launch latency: RunTask → RUNNING (as DescribeTasks shows it) through a real `wharf up`,
//! against the floor of `docker run -d` of the same image, sampled interleaved (A B A B …) on
//! the same machine. Prints p50 and p99 of both and their ratios; never fails on timing.
//!
//! Run: `cargo bench -p wharf --bench launch` (`WHARF_BENCH_SAMPLES`, default 50).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_ecs::types::ContainerDefinition;

const IMAGE: &str = "wharf-test/busybox:latest";

fn main() -> Result<()> {
    agent::testing::ensure_test_image();
    let samples: usize = std::env::var("WHARF_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let data = tempfile::tempdir()?;
    let mut wharf = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("WHARF_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting wharf up")?;
    let stdout = wharf.stdout.take().context("stdout")?;
    let mut env = std::collections::HashMap::new();
    let mut lines = BufReader::new(stdout).lines();
    while !env.contains_key("AWS_ENDPOINT_URL") {
        let line = lines
            .next()
            .context("wharf up exited before printing its endpoint")??;
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            env.insert(k.to_string(), v.to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(measure(&env, samples));
    let _ = wharf.kill();
    let _ = wharf.wait();
    let _ = Command::new("sh")
        .args(["-c", "docker ps -aq --filter label=com.amazonaws.ecs.task-definition-family=bench-launch | xargs -r docker rm -f"])
        .output();
    result
}

async fn measure(env: &std::collections::HashMap<String, String>, samples: usize) -> Result<()> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(env["AWS_DEFAULT_REGION"].clone()))
        .endpoint_url(&env["AWS_ENDPOINT_URL"])
        .credentials_provider(aws_credential_types::Credentials::new(
            &env["AWS_ACCESS_KEY_ID"],
            &env["AWS_SECRET_ACCESS_KEY"],
            None,
            None,
            "bench",
        ))
        .load()
        .await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ecs
        .list_container_instances()
        .send()
        .await?
        .container_instance_arns()
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("the local agent did not register within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ecs.register_task_definition()
        .family("bench-launch")
        .container_definitions(
            ContainerDefinition::builder()
                .name("main")
                .image(IMAGE)
                .memory(16)
                .command("sleep")
                .command("3600")
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
            .args(["run", "-d", "--rm", IMAGE, "sleep", "3600"])
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
