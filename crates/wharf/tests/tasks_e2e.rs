//! End-to-end: `wharf up` (server + local agent) on real Docker, driven by the aws CLI. Each
//! test runs its own `wharf up`; the agents share the engine and each touches only the
//! containers it labelled.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::json;
use support::{wait_for, Up, Wharf};

const IMAGE: &str = "wharf-test/busybox:latest";

#[test]
fn a_one_shot_task_stops_with_its_exit_code_and_essential_container_exited() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register(
        "oneshot",
        json!([{"name": "main", "image": IMAGE, "memory": 32, "command": ["sh", "-c", "exit 3"]}]),
    )?;
    let task = up.run("oneshot")?;
    up.wait("tasks-stopped", &task)?;
    let described = up.describe(&task)?;
    ensure!(described["lastStatus"] == "STOPPED", "{described}");
    ensure!(
        described["stopCode"] == "EssentialContainerExited",
        "{described}"
    );
    ensure!(described["containers"][0]["exitCode"] == 3, "{described}");
    ensure!(
        described["containers"][0]["runtimeId"].is_string(),
        "{described}"
    );
    for field in [
        "pullStartedAt",
        "pullStoppedAt",
        "startedAt",
        "stoppingAt",
        "stoppedAt",
        "executionStoppedAt",
    ] {
        ensure!(described[field].is_number(), "{field} missing: {described}");
    }
    Ok(())
}

#[test]
fn httpd_on_a_dynamic_host_port_answers_on_its_network_binding() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register(
        "web",
        json!([{"name": "httpd", "image": IMAGE, "memory": 32,
                "command": ["sh", "-c", "mkdir -p /www && echo hello-from-wharf > /www/index.html && exec httpd -f -p 8080 -h /www"],
                "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]),
    )?;
    let task = up.run("web")?;
    up.wait("tasks-running", &task)?;
    let described = up.describe(&task)?;
    let binding = &described["containers"][0]["networkBindings"][0];
    ensure!(binding["containerPort"] == 8080, "{described}");
    let port = binding["hostPort"].as_u64().context("a host port")?;
    ensure!(
        (49153..=65535).contains(&port),
        "dynamic port {port} outside the agent's range"
    );
    let body = wait_for(20, "httpd to answer", || Ok(http_get(port as u16).ok()))?;
    ensure!(body.contains("hello-from-wharf"), "{body}");
    up.wharf.aws_json(&["ecs", "stop-task", "--task", &task])?;
    up.wait("tasks-stopped", &task)?;
    Ok(())
}

fn http_get(port: u16) -> Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    ensure!(response.starts_with("HTTP/1."), "not HTTP: {response}");
    Ok(response)
}

#[test]
fn depends_on_healthy_holds_the_dependent_and_a_non_essential_exit_keeps_the_task() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register(
        "ordered",
        json!([
            {"name": "db", "image": IMAGE, "memory": 32,
             "command": ["sh", "-c", "sleep 3; touch /tmp/ready; exec sleep 600"],
             "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 5, "timeout": 2, "retries": 3, "startPeriod": 0}},
            {"name": "app", "image": IMAGE, "memory": 32, "command": ["sleep", "600"],
             "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
            {"name": "init", "image": IMAGE, "memory": 32, "essential": false, "command": ["sh", "-c", "exit 0"]}
        ]),
    )?;
    let task = up.run("ordered")?;
    // Until db is healthy, app must not have started: checked on every look until app runs.
    let running = wait_for(90, "app to run after db turned healthy", || {
        let t = up.describe(&task)?;
        if container(&t, "db")["healthStatus"] != "HEALTHY" {
            ensure!(
                container(&t, "app")["lastStatus"] == "PENDING",
                "app started before db was healthy: {t}"
            );
        }
        Ok((container(&t, "app")["lastStatus"] == "RUNNING").then_some(t))
    })?;
    up.wait("tasks-running", &task)?;
    ensure!(
        container(&running, "db")["healthStatus"] == "HEALTHY",
        "{running}"
    );
    // The non-essential init container exited 0; the task runs on.
    let after = wait_for(30, "init to stop", || {
        let t = up.describe(&task)?;
        Ok((container(&t, "init")["lastStatus"] == "STOPPED").then_some(t))
    })?;
    ensure!(container(&after, "init")["exitCode"] == 0, "{after}");
    ensure!(
        after["lastStatus"] == "RUNNING" && after["desiredStatus"] == "RUNNING",
        "{after}"
    );
    up.wharf.aws_json(&["ecs", "stop-task", "--task", &task])?;
    up.wait("tasks-stopped", &task)?;
    Ok(())
}

fn container<'a>(task: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    task["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn stop_task_waits_stop_timeout_for_a_container_that_ignores_sigterm() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register(
        "stubborn",
        json!([{"name": "main", "image": IMAGE, "memory": 32, "stopTimeout": 3,
                "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}]),
    )?;
    let task = up.run("stubborn")?;
    up.wait("tasks-running", &task)?;
    let asked = Instant::now();
    let stopped = up.wharf.aws_json(&[
        "ecs",
        "stop-task",
        "--task",
        &task,
        "--reason",
        "e2e says stop",
    ])?;
    ensure!(stopped["task"]["desiredStatus"] == "STOPPED", "{stopped}");
    up.wait("tasks-stopped", &task)?;
    // SIGTERM is ignored, so only SIGKILL after stopTimeout ends it: never sooner.
    ensure!(
        asked.elapsed() >= Duration::from_secs(3),
        "stopped after {:?}, before stopTimeout",
        asked.elapsed()
    );
    let described = up.describe(&task)?;
    ensure!(described["stopCode"] == "UserInitiated", "{described}");
    ensure!(described["stoppedReason"] == "e2e says stop", "{described}");
    ensure!(
        described["containers"][0]["exitCode"] == 137,
        "not SIGKILLed: {described}"
    );
    Ok(())
}

#[test]
fn unplaceable_tasks_and_missing_images_are_reported() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register(
        "huge",
        json!([{"name": "main", "image": IMAGE, "memory": 16_000_000}]),
    )?;
    let ran = up
        .wharf
        .aws_json(&["ecs", "run-task", "--task-definition", "huge"])?;
    ensure!(ran["tasks"].as_array().is_some_and(Vec::is_empty), "{ran}");
    ensure!(ran["failures"][0]["reason"] == "RESOURCE:MEMORY", "{ran}");
    ensure!(
        ran["failures"][0]["arn"] == up.instance_arn.as_str(),
        "{ran}"
    );

    up.register(
        "ghost",
        json!([{"name": "main", "image": "wharf-test/does-not-exist:1", "memory": 32}]),
    )?;
    let task = up.run("ghost")?;
    up.wait("tasks-stopped", &task)?;
    let described = up.describe(&task)?;
    let reason = described["stoppedReason"].as_str().unwrap_or("");
    let container_reason = described["containers"][0]["reason"].as_str().unwrap_or("");
    ensure!(
        reason.contains("CannotPullContainerError")
            || container_reason.contains("CannotPullContainerError"),
        "{described}"
    );
    ensure!(described["stopCode"] == "TaskFailedToStart", "{described}");
    Ok(())
}

#[test]
fn a_killed_and_restarted_wharf_re_adopts_running_containers_untouched() -> Result<()> {
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    up.register(
        "steady",
        json!([{"name": "main", "image": IMAGE, "memory": 32, "command": ["sleep", "600"]}]),
    )?;
    let task = up.run("steady")?;
    up.wait("tasks-running", &task)?;
    let before = up.describe(&task)?;
    let runtime_id = before["containers"][0]["runtimeId"]
        .as_str()
        .context("runtime id")?
        .to_string();
    let started = docker_started_at(&runtime_id)?;

    // kill -9 the whole `wharf up` (server and agent), then start it again on the same state.
    let Up {
        wharf,
        instance_arn,
        cleanup,
        fargate_cleanup,
    } = up;
    wharf.kill9()?;
    ensure!(
        docker_started_at(&runtime_id)? == started,
        "the container was touched while wharf was down"
    );
    let wharf = Wharf::start("up", data.path())?;
    let again = wait_for(60, "the agent to reconnect", || {
        let described = wharf.aws_json(&[
            "ecs",
            "describe-container-instances",
            "--container-instances",
            &instance_arn,
        ])?;
        Ok((described["containerInstances"][0]["agentConnected"] == true).then_some(described))
    })?;
    ensure!(
        again["containerInstances"][0]["runningTasksCount"] == 1,
        "{again}"
    );
    let after = wharf.aws_json(&["ecs", "describe-tasks", "--tasks", &task])?;
    ensure!(after["tasks"][0]["lastStatus"] == "RUNNING", "{after}");
    ensure!(
        after["tasks"][0]["containers"][0]["runtimeId"] == runtime_id.as_str(),
        "{after}"
    );
    ensure!(
        docker_started_at(&runtime_id)? == started,
        "the container was restarted"
    );
    // And it is still managed: StopTask reaches it.
    wharf.aws_json(&["ecs", "stop-task", "--task", &task])?;
    wait_for(60, "the re-adopted task to stop", || {
        let t = wharf.aws_json(&["ecs", "describe-tasks", "--tasks", &task])?;
        Ok((t["tasks"][0]["lastStatus"] == "STOPPED").then_some(()))
    })?;
    drop(cleanup);
    drop(fargate_cleanup);
    Ok(())
}

fn docker_started_at(id: &str) -> Result<String> {
    let output = std::process::Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.State.StartedAt}} {{.State.Running}}",
            id,
        ])
        .output()?;
    ensure!(
        output.status.success(),
        "docker inspect {id}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
