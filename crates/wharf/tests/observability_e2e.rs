//! End-to-end observability with real Docker and real AWS clients:
//!
//! - a service whose container burns CPU shows rising `AWS/ECS` CPUUtilization in
//!   `aws cloudwatch get-metric-statistics`; an alarm on it goes to ALARM and back to OK when
//!   the load stops, with history; `aws-sdk-cloudwatch` (RPC v2 CBOR) and boto3 (JSON 1.0) read
//!   the same datapoints; `/metrics` parses with Prometheus' reference text parser;
//! - a task logging with the awslogs driver shows every line in `aws logs get-log-events` and
//!   `filter-log-events`, exactly once, although its agent is killed and restarted midway.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use support::{wait_for, ExtraAgent, Up, Wharf};

const IMAGE: &str = "wharf-test/busybox:latest";

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn venv_python() -> Result<PathBuf> {
    let aws = support::aws_cli()?;
    Ok(aws.with_file_name("python"))
}

/// Run a Python snippet (boto3 is in the test venv) with this server's environment; its stdout
/// is parsed as JSON.
fn python_json(wharf: &Wharf, script: &str) -> Result<Value> {
    let output = Command::new(venv_python()?)
        .args(["-c", script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ACCESS_KEY_ID", &wharf.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &wharf.secret_access_key)
        .env("AWS_DEFAULT_REGION", &wharf.region)
        .env("AWS_ENDPOINT_URL", &wharf.endpoint)
        .env("WHARF_ENDPOINT", &wharf.endpoint)
        .output()
        .context("running python")?;
    if !output.status.success() {
        bail!("python failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).context("python printed non-JSON")
}

async fn cloudwatch_client(wharf: &Wharf) -> aws_sdk_cloudwatch::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(wharf.region.clone()))
        .endpoint_url(&wharf.endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            &wharf.access_key_id,
            &wharf.secret_access_key,
            None,
            None,
            "wharf-tests",
        ))
        .load()
        .await;
    aws_sdk_cloudwatch::Client::new(&config)
}

fn service_dimensions() -> [&'static str; 2] {
    [
        "Name=ClusterName,Value=default",
        "Name=ServiceName,Value=burner",
    ]
}

/// Datapoints of the burner service's CPUUtilization over the last `window` seconds.
fn cpu_datapoints(up: &Up, window: i64, period: &str) -> Result<Vec<Value>> {
    let end = now_seconds();
    let start = (end - window).to_string();
    let end = end.to_string();
    let [cluster, service] = service_dimensions();
    let answer = up.wharf.aws_json(&[
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "AWS/ECS",
        "--metric-name",
        "CPUUtilization",
        "--dimensions",
        cluster,
        service,
        "--start-time",
        &start,
        "--end-time",
        &end,
        "--period",
        period,
        "--statistics",
        "Average",
        "Maximum",
    ])?;
    Ok(answer["Datapoints"].as_array().cloned().unwrap_or_default())
}

fn alarm_state(up: &Up) -> Result<String> {
    let alarms = up.wharf.aws_json(&[
        "cloudwatch",
        "describe-alarms",
        "--alarm-names",
        "burner-cpu",
    ])?;
    Ok(alarms["MetricAlarms"][0]["StateValue"]
        .as_str()
        .unwrap_or("")
        .to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_utilization_rises_an_alarm_fires_and_clears_and_every_protocol_reads_it() -> Result<()>
{
    let data = tempfile::tempdir()?;
    let up = tokio::task::block_in_place(|| Up::start(data.path()))?;
    // Burns one core for 75 s against a reservation of 256 units (a quarter core), then idles.
    let definition = json!({
        "family": "burner", "cpu": "256", "memory": "128",
        "containerDefinitions": [{
            "name": "burn", "image": IMAGE, "essential": true, "stopTimeout": 2,
            "command": ["sh", "-c", "timeout 75 sh -c 'while :; do :; done'; exec sleep 600"],
        }],
    });
    let wharf = &up.wharf;
    tokio::task::block_in_place(|| -> Result<()> {
        wharf.aws_json(&[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &definition.to_string(),
        ])?;
        wharf.aws_json(&[
            "ecs",
            "create-service",
            "--service-name",
            "burner",
            "--task-definition",
            "burner",
            "--desired-count",
            "1",
        ])?;
        let [cluster, service] = service_dimensions();
        wharf.aws_json(&[
            "cloudwatch",
            "put-metric-alarm",
            "--alarm-name",
            "burner-cpu",
            "--namespace",
            "AWS/ECS",
            "--metric-name",
            "CPUUtilization",
            "--dimensions",
            cluster,
            service,
            "--statistic",
            "Average",
            "--period",
            "10",
            "--evaluation-periods",
            "2",
            "--threshold",
            "50",
            "--comparison-operator",
            "GreaterThanThreshold",
        ])?;
        let state = alarm_state(&up)?;
        ensure!(
            state == "INSUFFICIENT_DATA",
            "a new alarm starts INSUFFICIENT_DATA, got {state}"
        );

        // Rising CPU within two minutes.
        let busy = wait_for(120, "CPUUtilization above 50 %", || {
            let points = cpu_datapoints(&up, 300, "10")?;
            Ok(points
                .iter()
                .any(|p| p["Average"].as_f64().unwrap_or(0.0) > 50.0)
                .then_some(points))
        })?;
        eprintln!("busy datapoints: {busy:?}");
        wait_for(90, "the alarm to go to ALARM", || {
            Ok((alarm_state(&up)? == "ALARM").then_some(()))
        })?;
        // The load stops after 75 s; the alarm returns to OK.
        wait_for(150, "the alarm to return to OK", || {
            Ok((alarm_state(&up)? == "OK").then_some(()))
        })?;
        let history = wharf.aws_json(&[
            "cloudwatch",
            "describe-alarm-history",
            "--alarm-name",
            "burner-cpu",
            "--history-item-type",
            "StateUpdate",
        ])?;
        let summaries: Vec<String> = history["AlarmHistoryItems"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i["HistorySummary"].as_str().map(str::to_string))
            .collect();
        ensure!(
            summaries.iter().any(|s| s.contains("to ALARM"))
                && summaries.iter().any(|s| s.contains("ALARM to OK")),
            "history: {summaries:?}"
        );
        Ok(())
    })?;

    // The same window through RPC v2 CBOR (the Rust SDK) and JSON 1.0 (boto3).
    // Whole minutes that ended more than the publishing lag ago, so nothing is added to them
    // between the two reads.
    let end = (now_seconds() - 20) / 60 * 60;
    let start = end - 600;
    let cloudwatch = cloudwatch_client(wharf).await;
    let cbor = cloudwatch
        .get_metric_statistics()
        .namespace("AWS/ECS")
        .metric_name("CPUUtilization")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("ClusterName")
                .value("default")
                .build(),
        )
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("ServiceName")
                .value("burner")
                .build(),
        )
        .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(start))
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(end))
        .period(60)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Average)
        .statistics(aws_sdk_cloudwatch::types::Statistic::SampleCount)
        .send()
        .await
        .context("GetMetricStatistics over CBOR")?;
    let mut from_cbor: Vec<(i64, String, String)> = cbor
        .datapoints()
        .iter()
        .map(|p| {
            (
                p.timestamp().map(|t| t.secs()).unwrap_or_default(),
                format!("{:.6}", p.average().unwrap_or_default()),
                format!("{:.1}", p.sample_count().unwrap_or_default()),
            )
        })
        .collect();
    from_cbor.sort();
    ensure!(!from_cbor.is_empty(), "no datapoints over CBOR");
    let script = format!(
        r#"
import boto3, json, datetime
cw = boto3.client("cloudwatch")
answer = cw.get_metric_statistics(
    Namespace="AWS/ECS", MetricName="CPUUtilization",
    Dimensions=[{{"Name": "ClusterName", "Value": "default"}}, {{"Name": "ServiceName", "Value": "burner"}}],
    StartTime=datetime.datetime.fromtimestamp({start}, datetime.timezone.utc),
    EndTime=datetime.datetime.fromtimestamp({end}, datetime.timezone.utc),
    Period=60, Statistics=["Average", "SampleCount"])
print(json.dumps([[int(p["Timestamp"].timestamp()), "%.6f" % p["Average"], "%.1f" % p["SampleCount"]] for p in answer["Datapoints"]]))
"#
    );
    let from_json = tokio::task::block_in_place(|| python_json(wharf, &script))?;
    let mut from_json: Vec<(i64, String, String)> = serde_json::from_value(from_json)?;
    from_json.sort();
    ensure!(
        from_cbor == from_json,
        "CBOR and JSON 1.0 disagree:\n{from_cbor:?}\n{from_json:?}"
    );

    // /metrics parses with Prometheus' reference parser.
    let families = tokio::task::block_in_place(|| {
        python_json(
            wharf,
            r#"
import json, os, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(os.environ["WHARF_ENDPOINT"] + "/metrics").read().decode()
print(json.dumps(sorted({f.name for f in text_string_to_metric_families(text)})))
"#,
        )
    })?;
    let names: Vec<String> = serde_json::from_value(families)?;
    ensure!(
        names.iter().any(|n| n.contains("task")),
        "no task families in /metrics: {names:?}"
    );
    Ok(())
}

/// The events of one stream, in order, through `aws logs get-log-events` (following forward
/// tokens until the same token comes back).
fn stream_messages(wharf: &Wharf, group: &str, stream: &str) -> Result<Vec<String>> {
    let mut messages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut args = vec![
            "logs",
            "get-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            stream,
            "--start-from-head",
        ];
        let token_arg;
        if let Some(t) = &token {
            token_arg = t.clone();
            args.extend(["--next-token", token_arg.as_str()]);
        }
        let page = wharf.aws_json(&args)?;
        for event in page["events"].as_array().cloned().unwrap_or_default() {
            messages.push(event["message"].as_str().unwrap_or("").to_string());
        }
        let next = page["nextForwardToken"].as_str().map(str::to_string);
        if next.is_none() || next == token {
            return Ok(messages);
        }
        token = next;
    }
}

fn restart_agent(
    wharf: &Wharf,
    data_dir: &Path,
    instance_arn: &str,
) -> Result<std::process::Child> {
    let child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["agent", "--server", &wharf.endpoint, "--cluster", "default"])
        .args(["--availability-zone", "us-east-1b", "--data-dir"])
        .arg(data_dir)
        .env("AWS_ACCESS_KEY_ID", &wharf.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &wharf.secret_access_key)
        .env("AWS_DEFAULT_REGION", &wharf.region)
        .env("WHARF_LOG", "warn")
        .spawn()
        .context("restarting wharf agent")?;
    wait_for(60, "the restarted agent to reconnect", || {
        let described = wharf.aws_json(&[
            "ecs",
            "describe-container-instances",
            "--container-instances",
            instance_arn,
        ])?;
        Ok((described["containerInstances"][0]["agentConnected"] == true).then_some(()))
    })?;
    Ok(child)
}

#[test]
fn awslogs_lines_reach_cloudwatch_logs_exactly_once_across_an_agent_restart() -> Result<()> {
    agent::testing::ensure_test_image();
    let data = tempfile::tempdir()?;
    let agent_dir = tempfile::tempdir()?;
    let wharf = Wharf::start("server", data.path())?;
    wharf.aws_json(&["ecs", "create-cluster", "--cluster-name", "default"])?;
    let mut extra = ExtraAgent::start(&wharf, agent_dir.path(), "us-east-1b")?;
    let instance_arn = extra.instance_arn.clone();
    let definition = json!({
        "family": "talker",
        "containerDefinitions": [{
            "name": "talk", "image": IMAGE, "memory": 32, "essential": true, "stopTimeout": 2,
            "command": ["sh", "-c",
                "i=1; while [ $i -le 60 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.2; done; echo '{\"level\":\"error\",\"n\":7}'; exec sleep 600"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/e2e/talker", "awslogs-create-group": "true",
                "awslogs-region": wharf.region, "awslogs-stream-prefix": "app"}},
        }],
    });
    wharf.aws_json(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &definition.to_string(),
    ])?;
    let ran = wharf.aws_json(&["ecs", "run-task", "--task-definition", "talker"])?;
    let task_arn = ran["tasks"][0]["taskArn"]
        .as_str()
        .context("run-task placed nothing")?
        .to_string();
    let task_id = task_arn.rsplit('/').next().unwrap_or_default().to_string();
    let stream = format!("app/talk/{task_id}");

    // Kill the agent once some lines have arrived, keep it down while the container logs on.
    wait_for(60, "the first lines in CloudWatch Logs", || {
        let messages = stream_messages(&wharf, "/e2e/talker", &stream).unwrap_or_default();
        Ok((messages.len() >= 5).then_some(()))
    })?;
    extra.kill();
    std::thread::sleep(Duration::from_secs(4));
    let mut restarted = restart_agent(&wharf, agent_dir.path(), &instance_arn)?;
    let result = (|| -> Result<()> {
        let messages = wait_for(90, "all 61 lines", || {
            let messages = stream_messages(&wharf, "/e2e/talker", &stream)?;
            Ok((messages.len() >= 61).then_some(messages))
        })?;
        let mut expected: Vec<String> = (1..=60).map(|i| format!("line {i}")).collect();
        expected.push(r#"{"level":"error","n":7}"#.to_string());
        ensure!(
            messages == expected,
            "lines lost, duplicated or reordered: {messages:?}"
        );

        let filtered = wharf.aws_json(&[
            "logs",
            "filter-log-events",
            "--log-group-name",
            "/e2e/talker",
            "--filter-pattern",
            "\"line 5\"",
        ])?;
        let hits: Vec<&str> = filtered["events"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["message"].as_str()).collect())
            .unwrap_or_default();
        let mut want = vec!["line 5".to_string()];
        want.extend((50..=59).map(|i| format!("line {i}")));
        ensure!(hits == want, "filter \"line 5\" gave {hits:?}");
        let json_hits = wharf.aws_json(&[
            "logs",
            "filter-log-events",
            "--log-group-name",
            "/e2e/talker",
            "--filter-pattern",
            "{ $.level = \"error\" && $.n > 5 }",
        ])?;
        ensure!(
            json_hits["events"].as_array().map(Vec::len) == Some(1)
                && json_hits["events"][0]["logStreamName"] == stream.as_str(),
            "JSON filter gave {json_hits}"
        );

        // What a restarted agent asks to tell whether its last batch landed (the stream's
        // newest events), through the agent's own client.
        use agent::logs::LogSink;
        let client = agent::client::ServerClient::new(
            &wharf.endpoint,
            agent::AgentCredentials {
                access_key_id: wharf.access_key_id.clone(),
                secret_access_key: wharf.secret_access_key.clone(),
            },
            &wharf.region,
        )?;
        let newest = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(client.newest_log_events("/e2e/talker", &stream, 2))?;
        let newest: Vec<&str> = newest.iter().map(|e| e.message.as_str()).collect();
        ensure!(
            newest == ["line 60", expected[60].as_str()],
            "the stream's newest events: {newest:?}"
        );
        Ok(())
    })();
    let _ = restarted.kill();
    let _ = restarted.wait();
    result
}
