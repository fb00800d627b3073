//! End-to-end placement: a `wharf server` and three real `wharf agent` processes on one Docker
//! engine in three availability zones, driven by the aws CLI: the default spread, binpack,
//! memberOf with a custom attribute, and distinctInstance.

mod support;

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use support::{ExtraAgent, Wharf};

fn per_instance(ran: &Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for task in ran["tasks"].as_array().into_iter().flatten() {
        *counts
            .entry(
                task["containerInstanceArn"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            .or_default() += 1;
    }
    counts
}

#[test]
fn strategies_and_constraints_on_three_real_agents() -> Result<()> {
    agent::testing::ensure_test_image();
    let data = tempfile::tempdir()?;
    let wharf = Wharf::start("server", &data.path().join("server"))?;
    wharf.aws_json(&["ecs", "create-cluster", "--cluster-name", "default"])?;
    let mut agents = Vec::new();
    for (i, zone) in ["us-east-1a", "us-east-1b", "us-east-1c"]
        .iter()
        .enumerate()
    {
        agents.push(ExtraAgent::start(
            &wharf,
            &data.path().join(format!("agent{i}")),
            zone,
        )?);
    }
    let definition = json!({"family": "small", "containerDefinitions": [
        {"name": "main", "image": "wharf-test/busybox:latest", "memory": 32, "command": ["sleep", "600"]}]});
    wharf.aws_json(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &definition.to_string(),
    ])?;

    // The default spreads across zones, then instances: ten tasks land 4/3/3.
    let ran = wharf.aws_json(&[
        "ecs",
        "run-task",
        "--task-definition",
        "small",
        "--count",
        "10",
    ])?;
    let mut counts: Vec<usize> = per_instance(&ran).into_values().collect();
    counts.sort_unstable();
    ensure!(counts == vec![3, 3, 4], "spread gave {counts:?}: {ran}");

    // Binpack on memory fills one instance first.
    let packed = wharf.aws_json(&[
        "ecs",
        "run-task",
        "--task-definition",
        "small",
        "--count",
        "3",
        "--group",
        "packed",
        "--placement-strategy",
        "type=binpack,field=memory",
    ])?;
    ensure!(
        per_instance(&packed).len() == 1,
        "binpack spread out: {packed}"
    );

    // memberOf: only the instance tagged stack=prod; none fits staging.
    let target = &agents[1].instance_arn;
    wharf.aws_json(&[
        "ecs",
        "put-attributes",
        "--attributes",
        &format!("name=stack,value=prod,targetId={target}"),
    ])?;
    let prod = wharf.aws_json(&[
        "ecs",
        "run-task",
        "--task-definition",
        "small",
        "--count",
        "2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:stack == prod",
    ])?;
    ensure!(
        per_instance(&prod).keys().collect::<Vec<_>>() == vec![target],
        "memberOf: {prod}"
    );
    let none = wharf.aws_json(&[
        "ecs",
        "run-task",
        "--task-definition",
        "small",
        "--placement-constraints",
        "type=memberOf,expression=attribute:stack == staging",
    ])?;
    ensure!(
        none["tasks"].as_array().is_some_and(Vec::is_empty),
        "{none}"
    );
    ensure!(
        none["failures"].as_array().map(Vec::len) == Some(3),
        "{none}"
    );
    ensure!(
        none["failures"][0]["reason"] == "MemberOf placement constraint unsatisfied.",
        "{none}"
    );

    // distinctInstance refuses a fourth task on three instances.
    let distinct = wharf.aws_json(&[
        "ecs",
        "run-task",
        "--task-definition",
        "small",
        "--count",
        "4",
        "--group",
        "one-each",
        "--placement-constraints",
        "type=distinctInstance",
    ])?;
    ensure!(per_instance(&distinct).len() == 3, "{distinct}");
    ensure!(
        distinct["tasks"].as_array().map(Vec::len) == Some(3),
        "{distinct}"
    );
    ensure!(
        distinct["failures"][0]["reason"] == "DistinctInstance placement constraint unsatisfied.",
        "{distinct}"
    );
    Ok(())
}
