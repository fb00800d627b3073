//! End-to-end awsvpc networking and the Fargate launch type with real Docker and the aws CLI,
//! against `wharf up` (whose local agent offers EC2 and Fargate capacity):
//!
//! - the foundation issue's two-container Fargate task definition (backend on 8080, frontend
//!   on 8000), pointed at the local image, runs on FARGATE: both containers RUNNING, the
//!   frontend reaches the backend over localhost, the task's private IP answers from the host,
//!   and the ENI shows in `aws ec2 describe-network-interfaces` until the task stops;
//! - two awsvpc tasks get distinct addresses;
//! - a security group without an ingress rule for a port blocks it, and adding the rule opens it;
//! - a Fargate task whose container exceeds the task memory stops with OutOfMemory;
//! - the task metadata endpoint v4 answers inside a container;
//! - invalid network configurations get AWS's errors.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use support::{wait_for, Up};

const IMAGE: &str = "wharf-test/busybox:latest";

/// Every `wharf up` has a default VPC with the same ranges (172.31.0.0/16), which one Docker
/// engine can back only once at a time: these tests take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The default subnet of `us-east-1a` and the default security group, from the EC2 API.
fn default_network(up: &Up) -> Result<(String, String)> {
    let subnets = up.wharf.aws_json(&[
        "ec2",
        "describe-subnets",
        "--filters",
        "Name=default-for-az,Values=true",
        "Name=availability-zone,Values=us-east-1a",
    ])?;
    let subnet = subnets["Subnets"][0]["SubnetId"]
        .as_str()
        .context("no default subnet in us-east-1a")?
        .to_string();
    let groups = up.wharf.aws_json(&[
        "ec2",
        "describe-security-groups",
        "--filters",
        "Name=group-name,Values=default",
    ])?;
    let group = groups["SecurityGroups"][0]["GroupId"]
        .as_str()
        .context("no default security group")?
        .to_string();
    Ok((subnet, group))
}

fn network_configuration(subnet: &str, group: &str) -> String {
    format!("awsvpcConfiguration={{subnets=[{subnet}],securityGroups=[{group}],assignPublicIp=DISABLED}}")
}

/// `GET /` on `ip:port` from the host, with a short timeout; the body when it answers.
fn http_get(ip: &str, port: u16) -> Option<String> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split("\r\n\r\n").nth(1).map(str::to_string)
}

fn run_task(up: &Up, args: &[&str]) -> Result<Value> {
    let mut all = vec!["ecs", "run-task"];
    all.extend_from_slice(args);
    let ran = up.wharf.aws_json(&all)?;
    ensure!(
        ran["failures"].as_array().is_none_or(Vec::is_empty),
        "run-task failures: {ran}"
    );
    Ok(ran["tasks"][0].clone())
}

fn private_ip(task: &Value) -> Option<String> {
    task["attachments"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "ElasticNetworkInterface")?["details"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == "privateIPv4Address")?["value"]
        .as_str()
        .map(str::to_string)
}

fn eni_id(task: &Value) -> Option<String> {
    task["attachments"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "ElasticNetworkInterface")?["details"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == "networkInterfaceId")?["value"]
        .as_str()
        .map(str::to_string)
}

fn container_logs(up: &Up, task: &Value, container: &str) -> Result<String> {
    let runtime_id = task["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == container))
        .and_then(|c| c["runtimeId"].as_str())
        .context("container has no runtimeId")?
        .to_string();
    let output = std::process::Command::new("docker")
        .args(["logs", &runtime_id])
        .output()?;
    let _ = up;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[test]
fn the_foundation_fargate_task_runs_with_its_own_address_and_security_groups_apply() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let (subnet, default_group) = default_network(&up)?;

    // The foundation issue's definition, images and commands pointed at the local image.
    let mut definition: Value =
        serde_json::from_slice(&std::fs::read(support::fixture("web-app.json"))?)?;
    definition["containerDefinitions"][0]["image"] = json!(IMAGE);
    definition["containerDefinitions"][0]["command"] = json!([
        "sh",
        "-c",
        "echo backend > /index.html && exec httpd -f -p 8080 -h /"
    ]);
    definition["containerDefinitions"][1]["image"] = json!(IMAGE);
    definition["containerDefinitions"][1]["command"] = json!(["sh", "-c",
        "mkdir -p /www && while ! wget -qO /www/index.html http://127.0.0.1:8080/; do sleep 0.2; done; exec httpd -f -p 8000 -h /www"]);
    up.wharf.aws_json(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &definition.to_string(),
    ])?;

    // A security group that lets the host reach 8000 only.
    let group = up.wharf.aws_json(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "web",
        "--description",
        "web frontend",
    ])?["GroupId"]
        .as_str()
        .context("no GroupId")?
        .to_string();
    up.wharf.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &group,
        "--protocol",
        "tcp",
        "--port",
        "8000",
        "--cidr",
        "0.0.0.0/0",
    ])?;

    let task = run_task(
        &up,
        &[
            "--task-definition",
            "web-app",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            &network_configuration(&subnet, &group),
        ],
    )?;
    let arn = task["taskArn"].as_str().context("no taskArn")?.to_string();
    ensure!(task["launchType"] == "FARGATE", "{task}");
    up.wait("tasks-running", &arn)?;
    let task = up.describe(&arn)?;
    ensure!(
        task["containers"]
            .as_array()
            .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["lastStatus"] == "RUNNING")),
        "{task}"
    );
    ensure!(
        task.get("containerInstanceArn").is_none(),
        "Fargate tasks show no instance: {task}"
    );
    ensure!(task["platformVersion"] == "1.4.0", "{task}");
    let ip = private_ip(&task).context("no privateIPv4Address")?;
    let eni = eni_id(&task).context("no networkInterfaceId")?;

    // The frontend fetched the backend over localhost and serves it on the task's address.
    let body = wait_for(60, "the frontend on the task's address", || {
        Ok(http_get(&ip, 8000))
    })?;
    ensure!(body.trim() == "backend", "frontend answered {body:?}");
    // 8080 has no ingress rule: blocked. Adding the rule opens it.
    ensure!(
        http_get(&ip, 8080).is_none(),
        "8080 answered without a rule"
    );
    up.wharf.aws_json(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &group,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "0.0.0.0/0",
    ])?;
    let direct = wait_for(30, "8080 to open after the rule", || {
        Ok(http_get(&ip, 8080))
    })?;
    ensure!(direct.trim() == "backend", "{direct:?}");

    // The ENI is listed while the task lives.
    let enis = up.wharf.aws_json(&[
        "ec2",
        "describe-network-interfaces",
        "--network-interface-ids",
        &eni,
    ])?;
    ensure!(
        enis["NetworkInterfaces"][0]["PrivateIpAddress"] == ip.as_str(),
        "{enis}"
    );

    // A second awsvpc task gets another address.
    let other = run_task(
        &up,
        &[
            "--task-definition",
            "web-app",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            &network_configuration(&subnet, &default_group),
        ],
    )?;
    let other_ip = private_ip(&other).context("second task has no address")?;
    ensure!(other_ip != ip, "two tasks share {ip}");

    // Stopping releases the ENI.
    let other_arn = other["taskArn"].as_str().unwrap_or_default().to_string();
    up.wharf
        .aws_json(&["ecs", "stop-task", "--task", &other_arn])?;
    up.wharf.aws_json(&["ecs", "stop-task", "--task", &arn])?;
    up.wait("tasks-stopped", &arn)?;
    let gone = up.wharf.aws(&[
        "ec2",
        "describe-network-interfaces",
        "--network-interface-ids",
        &eni,
    ])?;
    ensure!(
        !gone.status.success()
            && String::from_utf8_lossy(&gone.stderr).contains("InvalidNetworkInterfaceID.NotFound"),
        "the ENI outlived its task: {}",
        String::from_utf8_lossy(&gone.stdout)
    );
    Ok(())
}

#[test]
fn fargate_memory_limits_metadata_and_invalid_configurations() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let data = tempfile::tempdir()?;
    let up = Up::start(data.path())?;
    let (subnet, group) = default_network(&up)?;
    let network = network_configuration(&subnet, &group);

    // The task metadata endpoint v4 answers inside a container; then the container holds 900 MiB
    // in a shell variable, far more than the task's 512 MiB.
    let definition = json!({
        "family": "hungry", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{
            "name": "eat", "image": IMAGE, "essential": true,
            "command": ["sh", "-c",
                "wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task; echo; sleep 3; x=$(head -c 900m /dev/zero | tr '\\0' a); sleep 600"],
        }],
    });
    up.wharf.aws_json(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &definition.to_string(),
    ])?;
    let task = run_task(
        &up,
        &[
            "--task-definition",
            "hungry",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            &network,
        ],
    )?;
    let arn = task["taskArn"].as_str().context("no taskArn")?.to_string();
    up.wait("tasks-stopped", &arn)?;
    let stopped = up.describe(&arn)?;
    let reasons = format!(
        "{} {}",
        stopped["stoppedReason"], stopped["containers"][0]["reason"]
    );
    ensure!(
        reasons.contains("OutOfMemory"),
        "stopped without OutOfMemory: {stopped}"
    );
    let logs = container_logs(&up, &stopped, "eat")?;
    let document: Value = logs
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("no metadata document in the container's output: {logs}"))?;
    ensure!(document["TaskARN"] == arn.as_str(), "{document}");
    ensure!(document["LaunchType"] == "FARGATE", "{document}");

    // Invalid network configurations get AWS's errors.
    let refused = |args: &[&str], expected: &str| -> Result<()> {
        let mut all = vec!["ecs", "run-task"];
        all.extend_from_slice(args);
        let output = up.wharf.aws(&all)?;
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        if output.status.success() || !stderr.contains(expected) {
            bail!("expected {expected:?}, got: {stderr}");
        }
        Ok(())
    };
    refused(
        &[
            "--task-definition",
            "hungry",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            "awsvpcConfiguration={subnets=[subnet-00000000000000000]}",
        ],
        "InvalidParameterException",
    )?;
    refused(
        &["--task-definition", "hungry", "--launch-type", "FARGATE"],
        "InvalidParameterException",
    )?;
    let bridge = json!({
        "family": "bridged", "requiresCompatibilities": ["EC2"], "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "a", "image": IMAGE, "command": ["sleep", "60"]}],
    });
    up.wharf.aws_json(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &bridge.to_string(),
    ])?;
    refused(
        &[
            "--task-definition",
            "bridged",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            &network,
        ],
        "InvalidParameterException",
    )?;
    let bad_size = json!({
        "family": "oddsize", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "4096",
        "containerDefinitions": [{"name": "a", "image": IMAGE}],
    });
    let output = up.wharf.aws(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &bad_size.to_string(),
    ])?;
    ensure!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("ClientException"),
        "an invalid Fargate cpu/memory pair registered"
    );
    Ok(())
}
