//! End-to-end: the aws CLI from PyPI against a real `wharf server` process on SQLite, including
//! a refused signature and a `kill -9` restart that must lose nothing acknowledged.

mod support;

use anyhow::{ensure, Result};
use support::{fixture, Wharf};

#[test]
fn aws_cli_drives_clusters_and_task_definitions_and_survives_kill_9() -> Result<()> {
    let data = tempfile::tempdir()?;
    let wharf = Wharf::start("server", data.path())?;

    let created = wharf.aws_json(&["ecs", "create-cluster", "--cluster-name", "e2e"])?;
    ensure!(
        created["cluster"]["status"] == "ACTIVE",
        "create-cluster: {created}"
    );
    ensure!(
        created["cluster"]["clusterArn"]
            == format!("arn:aws:ecs:{}:000000000000:cluster/e2e", wharf.region),
        "cluster ARN: {created}"
    );

    let file = format!("file://{}", fixture("web-app.json").display());
    let registered =
        wharf.aws_json(&["ecs", "register-task-definition", "--cli-input-json", &file])?;
    let definition = &registered["taskDefinition"];
    ensure!(
        definition["family"] == "web-app" && definition["revision"] == 1,
        "{registered}"
    );
    ensure!(definition["status"] == "ACTIVE", "{registered}");
    ensure!(
        definition["containerDefinitions"].as_array().map(Vec::len) == Some(2),
        "{registered}"
    );
    let compatibilities = definition["compatibilities"].to_string();
    ensure!(
        compatibilities.contains("FARGATE"),
        "compatibilities: {compatibilities}"
    );

    let described = wharf.aws_json(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        "web-app",
    ])?;
    ensure!(described["taskDefinition"]["revision"] == 1, "{described}");
    ensure!(
        described["taskDefinition"]["containerDefinitions"][1]["command"]
            == serde_json::json!(["run"]),
        "{described}"
    );

    let listed = wharf.aws_json(&["ecs", "list-task-definitions", "--family-prefix", "web-app"])?;
    let arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/web-app:1";
    ensure!(
        listed["taskDefinitionArns"] == serde_json::json!([arn]),
        "{listed}"
    );

    let deregistered = wharf.aws_json(&[
        "ecs",
        "deregister-task-definition",
        "--task-definition",
        "web-app:1",
    ])?;
    ensure!(
        deregistered["taskDefinition"]["status"] == "INACTIVE",
        "{deregistered}"
    );

    // A request signed with the wrong secret is refused and changes nothing.
    let refused = wharf.aws_with_secret(
        "wrong-secret-wrong-secret-wrong-secret00",
        &["ecs", "create-cluster", "--cluster-name", "intruder"],
    )?;
    ensure!(
        !refused.status.success(),
        "a wrongly signed request succeeded"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        stderr.contains("InvalidSignatureException"),
        "unexpected refusal: {stderr}"
    );

    // Everything acknowledged so far must survive a SIGKILL.
    wharf.kill9()?;
    let wharf = Wharf::start("server", data.path())?;
    let clusters =
        wharf.aws_json(&["ecs", "describe-clusters", "--clusters", "e2e", "intruder"])?;
    ensure!(
        clusters["clusters"][0]["clusterName"] == "e2e",
        "{clusters}"
    );
    ensure!(
        clusters["failures"][0]["reason"] == "MISSING",
        "intruder exists: {clusters}"
    );
    let after = wharf.aws_json(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        "web-app:1",
    ])?;
    ensure!(after["taskDefinition"]["status"] == "INACTIVE", "{after}");
    let again = wharf.aws_json(&["ecs", "register-task-definition", "--cli-input-json", &file])?;
    ensure!(
        again["taskDefinition"]["revision"] == 2,
        "revision counter lost: {again}"
    );
    Ok(())
}
