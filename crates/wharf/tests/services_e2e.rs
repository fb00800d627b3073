//! End-to-end services: `wharf up` on real Docker driven by the aws CLI. A service reaches its
//! desired count and `aws ecs wait services-stable` returns; a killed container is replaced
//! with a service event; scaling out and in; a rolling update with minimumHealthyPercent 100 /
//! maximumPercent 200 never drops below the desired count of healthy tasks; a revision whose
//! container exits at once trips the circuit breaker and rolls back; a DAEMON service follows
//! instances (extra `wharf agent` processes) that join and leave; DRAINING moves tasks.
//!
//! Health checks run every 5 s (ECS's minimum) and containers stop within 2 s, so each test
//! takes well under a minute.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use support::{wait_for, ExtraAgent, Up};

const IMAGE: &str = "wharf-test/busybox:latest";

/// A long-running container that stops within 2 s, optionally with a health check.
fn sleeper(version: &str, health_check: bool) -> Value {
    let mut container = json!({
        "name": "app", "image": IMAGE, "memory": 32, "stopTimeout": 2,
        "command": ["sleep", "600"],
        "environment": [{"name": "VERSION", "value": version}],
    });
    if health_check {
        container["healthCheck"] = json!({
            "command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 2, "retries": 1
        });
    }
    json!([container])
}

fn arns(tasks: &[Value]) -> BTreeSet<String> {
    tasks
        .iter()
        .filter_map(|t| t["taskArn"].as_str().map(str::to_string))
        .collect()
}

fn running(tasks: &[Value]) -> usize {
    tasks
        .iter()
        .filter(|t| t["lastStatus"] == "RUNNING")
        .count()
}

#[test]
fn a_service_keeps_its_count_replaces_a_killed_container_and_scales() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register("web", sleeper("1", false))?;
    let created = up.wharf.aws_json(&[
        "ecs",
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "web",
        "--desired-count",
        "3",
    ])?;
    ensure!(created["service"]["status"] == "ACTIVE", "{created}");
    up.wait_stable("web", 3, 60)?;
    // The botocore waiter tools use: one deployment and runningCount == desiredCount.
    let waited = up
        .wharf
        .aws(&["ecs", "wait", "services-stable", "--services", "web"])?;
    ensure!(
        waited.status.success(),
        "services-stable: {}",
        String::from_utf8_lossy(&waited.stderr)
    );

    // docker kill one task's container: a replacement starts, and the service says so.
    let before = up.service_tasks("web", "RUNNING")?;
    let victim = before[0]["taskArn"]
        .as_str()
        .context("task ARN")?
        .to_string();
    let container = before[0]["containers"][0]["runtimeId"]
        .as_str()
        .context("runtime id")?
        .to_string();
    let killed = std::process::Command::new("docker")
        .args(["kill", &container])
        .output()?;
    ensure!(killed.status.success(), "docker kill failed");
    let since = Instant::now();
    let replaced = wait_for(60, "a replacement task", || {
        let tasks = up.service_tasks("web", "RUNNING")?;
        let ok = tasks.len() == 3 && running(&tasks) == 3 && !arns(&tasks).contains(&victim);
        Ok(ok.then_some(tasks))
    })?;
    println!(
        "replacement RUNNING {:?} after docker kill",
        since.elapsed()
    );
    let new: Vec<String> = arns(&replaced)
        .difference(&arns(&before))
        .cloned()
        .collect();
    ensure!(new.len() == 1, "{new:?}");
    let new_id = new[0].rsplit('/').next().unwrap_or("");
    let events = up.service_events("web")?;
    ensure!(
        events.contains(&format!(
            "(service web) has started 1 tasks: (task {new_id})."
        )),
        "{events:#?}"
    );
    let stopped = up.describe(&victim)?;
    ensure!(stopped["lastStatus"] == "STOPPED", "{stopped}");

    up.wharf.aws_json(&[
        "ecs",
        "update-service",
        "--service",
        "web",
        "--desired-count",
        "5",
    ])?;
    up.wait_stable("web", 5, 60)?;
    up.wharf.aws_json(&[
        "ecs",
        "update-service",
        "--service",
        "web",
        "--desired-count",
        "1",
    ])?;
    up.wait_stable("web", 1, 60)?;
    ensure!(up.service_tasks("web", "RUNNING")?.len() == 1);
    let events = up.service_events("web")?;
    ensure!(
        events
            .iter()
            .any(|e| e.starts_with("(service web) has stopped 4 running tasks: ")),
        "{events:#?}"
    );
    // Delete: DRAINING, then INACTIVE once its task is gone (the waiter tools use).
    up.wharf
        .aws_json(&["ecs", "delete-service", "--service", "web", "--force"])?;
    let inactive = up
        .wharf
        .aws(&["ecs", "wait", "services-inactive", "--services", "web"])?;
    ensure!(
        inactive.status.success(),
        "services-inactive: {}",
        String::from_utf8_lossy(&inactive.stderr)
    );
    Ok(())
}

#[test]
fn a_rolling_update_keeps_every_task_healthy_and_a_crashing_revision_rolls_back() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register("roll", sleeper("1", true))?;
    up.wharf.aws_json(&[
        "ecs",
        "create-service",
        "--service-name",
        "roll",
        "--task-definition",
        "roll",
        "--desired-count",
        "3",
        "--deployment-configuration",
        "minimumHealthyPercent=100,maximumPercent=200,deploymentCircuitBreaker={enable=true,rollback=true}",
    ])?;
    up.wait_stable("roll", 3, 90)?;

    let v2 = up.register("roll", sleeper("2", true))?;
    let v2 = v2["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .context("v2 ARN")?
        .to_string();
    up.wharf.aws_json(&[
        "ecs",
        "update-service",
        "--service",
        "roll",
        "--task-definition",
        &v2,
    ])?;
    // Poll through the rollout: never fewer than three RUNNING and HEALTHY tasks.
    let mut fewest = usize::MAX;
    let mut most_live = 0;
    wait_for(120, "the rollout to v2", || {
        let tasks = up.service_tasks("roll", "RUNNING")?;
        let healthy = tasks
            .iter()
            .filter(|t| t["lastStatus"] == "RUNNING" && t["healthStatus"] == "HEALTHY")
            .count();
        fewest = fewest.min(healthy);
        most_live = most_live.max(tasks.len());
        ensure!(
            healthy >= 3,
            "only {healthy} healthy tasks during the rollout"
        );
        ensure!(
            tasks.len() <= 6,
            "{} tasks, above maximumPercent",
            tasks.len()
        );
        let service = up.service("roll")?;
        let done = service["taskDefinition"] == v2.as_str()
            && service["deployments"].as_array().map(Vec::len) == Some(1)
            && service["deployments"][0]["rolloutState"] == "COMPLETED"
            && service["runningCount"] == 3;
        Ok(done.then_some(()))
    })?;
    println!("rollout: at least {fewest} healthy, at most {most_live} live tasks");
    ensure!(
        up.service_tasks("roll", "RUNNING")?
            .iter()
            .all(|t| t["taskDefinitionArn"] == v2.as_str()),
        "old tasks left"
    );
    let good = up.service("roll")?["deployments"][0]["id"]
        .as_str()
        .context("deployment id")?
        .to_string();

    // A revision whose container exits at once: the circuit breaker fails it and rolls back.
    let mut crashing = sleeper("3", true);
    crashing[0]["command"] = json!(["sh", "-c", "exit 1"]);
    let v3 = up.register("roll", crashing)?;
    let v3 = v3["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .context("v3 ARN")?
        .to_string();
    let updated = up.wharf.aws_json(&[
        "ecs",
        "update-service",
        "--service",
        "roll",
        "--task-definition",
        &v3,
    ])?;
    let failing = updated["service"]["deployments"][0]["id"]
        .as_str()
        .context("deployment id")?
        .to_string();
    let events = wait_for(120, "the circuit breaker to roll back", || {
        let events = up.service_events("roll")?;
        Ok(events
            .contains(&format!(
                "(service roll) rolling back to deployment {good}."
            ))
            .then_some(events))
    })?;
    ensure!(
        events.contains(&format!(
            "(service roll) (deployment {failing}) deployment failed: tasks failed to start."
        )),
        "{events:#?}"
    );
    let service = up.wait_stable("roll", 3, 60)?;
    ensure!(service["taskDefinition"] == v2.as_str(), "{service}");
    let waited = up
        .wharf
        .aws(&["ecs", "wait", "services-stable", "--services", "roll"])?;
    ensure!(
        waited.status.success(),
        "services-stable after the rollback"
    );
    let history = up
        .wharf
        .aws_json(&["ecs", "list-service-deployments", "--service", "roll"])?;
    ensure!(
        history["serviceDeployments"][0]["status"] == "ROLLBACK_SUCCESSFUL",
        "{history}"
    );
    Ok(())
}

#[test]
fn a_daemon_service_follows_instances_and_draining_moves_replica_tasks() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register("daemon", sleeper("1", false))?;
    up.wharf.aws_json(&[
        "ecs",
        "create-service",
        "--service-name",
        "daemon",
        "--task-definition",
        "daemon",
        "--scheduling-strategy",
        "DAEMON",
    ])?;
    up.wait_stable("daemon", 1, 60)?;

    // An instance joins: the daemon runs there too.
    let second_dir = tempfile::tempdir()?;
    let mut second = ExtraAgent::start(&up.wharf, second_dir.path(), "us-east-1b")?;
    up.wait_stable("daemon", 2, 60)?;
    let hosts: BTreeSet<String> = up
        .service_tasks("daemon", "RUNNING")?
        .iter()
        .filter_map(|t| t["containerInstanceArn"].as_str().map(str::to_string))
        .collect();
    ensure!(
        hosts == BTreeSet::from([up.instance_arn.clone(), second.instance_arn.clone()]),
        "{hosts:?}"
    );

    // It leaves: the agent dies and the instance is deregistered.
    second.kill();
    up.wharf.aws_json(&[
        "ecs",
        "deregister-container-instance",
        "--container-instance",
        &second.instance_arn,
        "--force",
    ])?;
    up.wait_stable("daemon", 1, 60)?;
    second.cleanup.clean();

    // DRAINING moves a replica service's tasks to the other instance.
    let third_dir = tempfile::tempdir()?;
    let third = ExtraAgent::start(&up.wharf, third_dir.path(), "us-east-1c")?;
    up.wait_stable("daemon", 2, 60)?;
    up.register("spread", sleeper("1", false))?;
    up.wharf.aws_json(&[
        "ecs",
        "create-service",
        "--service-name",
        "spread",
        "--task-definition",
        "spread",
        "--desired-count",
        "2",
    ])?;
    up.wait_stable("spread", 2, 60)?;
    up.wharf.aws_json(&[
        "ecs",
        "update-container-instances-state",
        "--container-instances",
        &up.instance_arn,
        "--status",
        "DRAINING",
    ])?;
    wait_for(60, "the tasks to move off the draining instance", || {
        let tasks = up.service_tasks("spread", "RUNNING")?;
        ensure!(
            running(&tasks) >= 2,
            "dropped below 2 RUNNING while draining"
        );
        let moved = tasks.len() == 2
            && running(&tasks) == 2
            && tasks
                .iter()
                .all(|t| t["containerInstanceArn"] == third.instance_arn.as_str());
        Ok(moved.then_some(()))
    })?;
    up.wait_stable("spread", 2, 60)?;
    // The daemon left the draining instance as well.
    up.wait_stable("daemon", 1, 60)?;
    Ok(())
}
