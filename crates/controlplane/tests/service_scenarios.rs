//! The service scheduler's decisions on the in-process cluster (real server and agents, fake
//! container runtime, manual clock): scale out and in, replacement of failed and unhealthy
//! tasks, rolling deployments within minimumHealthyPercent and maximumPercent, the circuit
//! breaker with and without rollback, a server restart in the middle of a deployment, DAEMON
//! services following instances, and DRAINING instances.

mod cluster;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agent::runtime::fake::FakeBehavior;
use agent::runtime::HealthState;
use aws_sdk_ecs::types::{
    ContainerInstanceStatus, DeploymentCircuitBreaker, DeploymentConfiguration, DesiredStatus,
    PlacementConstraint, PlacementConstraintType, SchedulingStrategy, Task,
};
use cluster::Cluster;

fn configuration(min: i32, max: i32, breaker: Option<(bool, bool)>) -> DeploymentConfiguration {
    let mut builder = DeploymentConfiguration::builder()
        .minimum_healthy_percent(min)
        .maximum_percent(max);
    if let Some((enable, rollback)) = breaker {
        builder = builder.deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(enable)
                .rollback(rollback)
                .build(),
        );
    }
    builder.build()
}

fn running(tasks: &[Task]) -> usize {
    tasks
        .iter()
        .filter(|t| t.last_status() == Some("RUNNING"))
        .count()
}

fn started_by(tasks: &[Task], deployment: &str) -> usize {
    tasks
        .iter()
        .filter(|t| t.started_by() == Some(deployment))
        .count()
}

/// Wait until the service's primary deployment is COMPLETED with `count` RUNNING tasks and
/// nothing else left.
async fn wait_stable(cluster: &Cluster, name: &str, count: usize) -> aws_sdk_ecs::types::Service {
    cluster
        .wait_for(&format!("{name} to be stable at {count}"), || async {
            let service = cluster.service(name).await;
            let deployments = service.deployments();
            let ok = deployments.len() == 1
                && deployments[0].rollout_state()
                    == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed)
                && service.running_count() == count as i32
                && service.desired_count() == count as i32
                && service.pending_count() == 0;
            ok.then_some(service)
        })
        .await
}

#[tokio::test]
async fn a_replica_service_scales_out_and_in_and_balances_across_zones() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.add_agent("zone-b").await;
    cluster.register("web", "app", false).await;
    let created = cluster
        .ecs
        .create_service()
        .service_name("web")
        .task_definition("web")
        .desired_count(3)
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("team")
                .value("blue")
                .build(),
        )
        .propagate_tags(aws_sdk_ecs::types::PropagateTags::Service)
        .enable_ecs_managed_tags(true)
        .send()
        .await
        .unwrap();
    let service = created.service().unwrap();
    assert_eq!(service.status(), Some("ACTIVE"));
    assert!(service.deployments()[0]
        .id()
        .is_some_and(|id| id.starts_with("ecs-svc/") && id.len() == 8 + 19));

    let service = wait_stable(&cluster, "web", 3).await;
    let primary = service.deployments()[0].id().unwrap().to_string();
    let events = cluster.events("web").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("(service web) has started 3 tasks: (task ")),
        "{events:#?}"
    );
    assert!(events.contains(&format!(
        "(service web) (deployment {primary}) deployment completed."
    )));
    assert_eq!(
        events.last().map(String::as_str),
        Some("(service web) has reached a steady state.")
    );
    let tasks = cluster.tasks("web", DesiredStatus::Running).await;
    assert!(tasks
        .iter()
        .all(|t| t.group() == Some("service:web") && t.started_by() == Some(primary.as_str())));
    // propagateTags SERVICE and the managed tags.
    let tagged = cluster
        .ecs
        .describe_tasks()
        .tasks(tasks[0].task_arn().unwrap())
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<&str, &str> = tagged.tasks()[0]
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert_eq!(
        tags,
        BTreeMap::from([
            ("team", "blue"),
            ("aws:ecs:clusterName", "default"),
            ("aws:ecs:serviceName", "web")
        ])
    );
    let zones: BTreeMap<String, usize> = tasks.iter().fold(BTreeMap::new(), |mut m, t| {
        *m.entry(t.availability_zone().unwrap_or("").to_string())
            .or_default() += 1;
        m
    });
    assert_eq!(
        zones.values().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2])
    );

    cluster
        .ecs
        .update_service()
        .service("web")
        .desired_count(5)
        .send()
        .await
        .unwrap();
    let service = wait_stable(&cluster, "web", 5).await;
    assert_eq!(
        service.deployments().len(),
        1,
        "a count change is not a deployment"
    );
    assert_eq!(service.deployments()[0].id(), Some(primary.as_str()));

    cluster
        .ecs
        .update_service()
        .service("web")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "web", 1).await;
    let stopped = cluster.tasks("web", DesiredStatus::Stopped).await;
    assert_eq!(stopped.len(), 4);
    for task in &stopped {
        assert_eq!(
            task.stop_code(),
            Some(&aws_sdk_ecs::types::TaskStopCode::ServiceSchedulerInitiated)
        );
        assert_eq!(
            task.stopped_reason(),
            Some(format!("Scaling activity initiated by (deployment {primary})").as_str())
        );
    }
    let events = cluster.events("web").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("(service web) has stopped 4 running tasks: (task ")),
        "{events:#?}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn failed_and_unhealthy_tasks_are_replaced_after_the_grace_period() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register("checked", "app", true).await;
    cluster
        .ecs
        .create_service()
        .service_name("checked")
        .task_definition("checked")
        .desired_count(2)
        .health_check_grace_period_seconds(30)
        .send()
        .await
        .unwrap();
    // Health checks decide availability: RUNNING is not enough.
    let tasks = cluster
        .wait_for("two running tasks", || async {
            let tasks = cluster.tasks("checked", DesiredStatus::Running).await;
            (running(&tasks) == 2).then_some(tasks)
        })
        .await;
    let state = cluster.service("checked").await.deployments()[0]
        .rollout_state()
        .cloned();
    assert_eq!(
        state.as_ref().map(|s| s.as_str()),
        Some("IN_PROGRESS"),
        "not complete before the tasks are healthy"
    );
    for task in &tasks {
        assert!(cluster.set_health(task.task_arn().unwrap(), "app", HealthState::Healthy));
    }
    wait_stable(&cluster, "checked", 2).await;

    // A container that exits is replaced at once.
    let victim = tasks[0].task_arn().unwrap().to_string();
    assert!(cluster.exit(&victim, "app", 1));
    let running_now = cluster
        .wait_for("the replacement to run", || async {
            let tasks = cluster.tasks("checked", DesiredStatus::Running).await;
            (tasks.len() == 2
                && running(&tasks) == 2
                && tasks.iter().all(|t| t.task_arn() != Some(victim.as_str())))
            .then_some(tasks)
        })
        .await;
    for task in &running_now {
        cluster.set_health(task.task_arn().unwrap(), "app", HealthState::Healthy);
    }
    wait_stable(&cluster, "checked", 2).await;
    assert!(cluster
        .events("checked")
        .await
        .iter()
        .any(|e| e.starts_with("(service checked) has started 1 tasks: (task ")));

    // An UNHEALTHY task within the grace period stays; after it, it is replaced.
    let sick = running_now[0].task_arn().unwrap().to_string();
    assert!(cluster.set_health(&sick, "app", HealthState::Unhealthy));
    cluster
        .wait_for("the task to be reported UNHEALTHY", || async {
            let tasks = cluster.tasks("checked", DesiredStatus::Running).await;
            tasks
                .iter()
                .any(|t| {
                    t.task_arn() == Some(sick.as_str())
                        && t.health_status().map(|h| h.as_str()) == Some("UNHEALTHY")
                })
                .then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let tasks = cluster.tasks("checked", DesiredStatus::Running).await;
    assert!(
        tasks.iter().any(|t| t.task_arn() == Some(sick.as_str())),
        "not replaced within the grace period"
    );
    cluster.clock.advance(Duration::from_secs(31));
    let stopped = cluster
        .wait_for("the unhealthy task to be stopped", || async {
            let tasks = cluster.tasks("checked", DesiredStatus::Stopped).await;
            tasks
                .into_iter()
                .find(|t| t.task_arn() == Some(sick.as_str()))
        })
        .await;
    assert_eq!(
        stopped.stopped_reason(),
        Some("Task failed container health checks")
    );
    let events = cluster
        .wait_for("the replacement event", || async {
            let events = cluster.events("checked").await;
            events
                .iter()
                .any(|e| e.ends_with("Amazon ECS replaced 1 tasks due to an unhealthy status."))
                .then_some(events)
        })
        .await;
    let sick_id = sick.rsplit('/').next().unwrap();
    assert!(events.contains(&format!(
        "(service checked) (task {sick_id}) failed container health checks."
    )));
    cluster.shutdown().await;
}

/// Drive a rollout from `old` to `new` (whose container `app2` has a health check the test
/// turns healthy), checking at every observation that no more than `upper` tasks are live and
/// never fewer than `lower` are available.
async fn roll(cluster: &Cluster, name: &str, new_revision: &str, lower: usize, upper: usize) {
    cluster
        .ecs
        .update_service()
        .service(name)
        .task_definition(new_revision)
        .send()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + cluster::WAIT;
    loop {
        let tasks = cluster.tasks(name, DesiredStatus::Running).await;
        assert!(
            tasks.len() <= upper,
            "{} live tasks, more than {upper}",
            tasks.len()
        );
        let available = tasks
            .iter()
            .filter(|t| {
                t.last_status() == Some("RUNNING")
                    && (t.task_definition_arn() != Some(new_revision)
                        || t.health_status().map(|h| h.as_str()) == Some("HEALTHY"))
            })
            .count();
        assert!(
            available >= lower,
            "only {available} available, fewer than {lower}"
        );
        let service = cluster.service(name).await;
        if service.deployments().len() == 1
            && service.deployments()[0]
                .rollout_state()
                .is_some_and(|s| s.as_str() == "COMPLETED")
        {
            assert_eq!(service.task_definition(), Some(new_revision));
            return;
        }
        // New tasks pass their health check one observation after they run.
        for task in &tasks {
            if task.task_definition_arn() == Some(new_revision)
                && task.last_status() == Some("RUNNING")
            {
                cluster.set_health(task.task_arn().unwrap(), "app2", HealthState::Healthy);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout did not finish"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn rolling_deployments_stay_within_minimum_healthy_and_maximum_percent() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.add_agent("zone-b").await;
    cluster.register("roll", "app", false).await;
    cluster
        .ecs
        .create_service()
        .service_name("roll")
        .task_definition("roll")
        .desired_count(4)
        .deployment_configuration(configuration(50, 150, None))
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "roll", 4).await;
    // 4 tasks, min 50 % → 2 available at least, max 150 % → 6 live at most.
    let v2 = cluster.register("roll2", "app2", true).await;
    roll(&cluster, "roll", &v2, 2, 6).await;
    // And the strict configuration: min 100 %, max 200 %.
    cluster
        .ecs
        .update_service()
        .service("roll")
        .deployment_configuration(configuration(100, 200, None))
        .send()
        .await
        .unwrap();
    let v3 = cluster.register("roll3", "app2", true).await;
    roll(&cluster, "roll", &v3, 4, 8).await;
    let stopped = cluster.tasks("roll", DesiredStatus::Stopped).await;
    assert_eq!(stopped.len(), 8, "every old task was replaced exactly once");
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_circuit_breaker_fails_a_deployment_and_rolls_back_to_the_last_completed_one() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register("cb", "app", false).await;
    cluster
        .ecs
        .create_service()
        .service_name("cb")
        .task_definition("cb")
        .desired_count(3)
        .deployment_configuration(configuration(100, 200, Some((true, true))))
        .send()
        .await
        .unwrap();
    let stable = wait_stable(&cluster, "cb", 3).await;
    let good = stable.deployments()[0].id().unwrap().to_string();
    let good_tasks: BTreeSet<String> = cluster
        .tasks("cb", DesiredStatus::Running)
        .await
        .iter()
        .map(|t| t.task_arn().unwrap().to_string())
        .collect();

    cluster.behave_everywhere(
        "crash",
        FakeBehavior {
            exit_on_start: Some(1),
            ..Default::default()
        },
    );
    let bad = cluster.register("cb-bad", "crash", false).await;
    let updated = cluster
        .ecs
        .update_service()
        .service("cb")
        .task_definition(&bad)
        .send()
        .await
        .unwrap();
    let failing = updated.service().unwrap().deployments()[0]
        .id()
        .unwrap()
        .to_string();
    assert_ne!(failing, good);

    let events = cluster
        .wait_for("the rollback", || async {
            let events = cluster.events("cb").await;
            events
                .contains(&format!("(service cb) rolling back to deployment {good}."))
                .then_some(events)
        })
        .await;
    assert!(events.contains(&format!(
        "(service cb) (deployment {failing}) deployment failed: tasks failed to start."
    )));
    let service = wait_stable(&cluster, "cb", 3).await;
    assert_eq!(service.task_definition(), stable.task_definition());
    // The rollback re-adopted the old revision's tasks: nothing old was restarted.
    let now: BTreeSet<String> = cluster
        .tasks("cb", DesiredStatus::Running)
        .await
        .iter()
        .map(|t| t.task_arn().unwrap().to_string())
        .collect();
    assert_eq!(now, good_tasks);
    // The threshold (3 for 3 tasks) failed before the breaker tripped; replacements of the
    // first failures may have been under way, as in ECS.
    let failed = cluster.tasks("cb", DesiredStatus::Stopped).await;
    let failed_count = started_by(&failed, &failing);
    assert!((3..=6).contains(&failed_count), "{failed_count}");

    let listed = cluster
        .ecs
        .list_service_deployments()
        .service("cb")
        .send()
        .await
        .unwrap();
    let newest = &listed.service_deployments()[0];
    assert_eq!(
        newest.status().map(|s| s.as_str()),
        Some("ROLLBACK_SUCCESSFUL")
    );
    let described = cluster
        .ecs
        .describe_service_deployments()
        .service_deployment_arns(newest.service_deployment_arn().unwrap())
        .send()
        .await
        .unwrap();
    let deployment = &described.service_deployments()[0];
    let breaker = deployment.deployment_circuit_breaker().unwrap();
    assert_eq!(breaker.status().map(|s| s.as_str()), Some("TRIGGERED"));
    assert_eq!(breaker.threshold(), 3);
    assert!(breaker.failure_count() >= 3);
    assert!(deployment.rollback().is_some());
    cluster.shutdown().await;
}

#[tokio::test]
async fn without_rollback_a_failed_deployment_stays_failed_and_the_old_tasks_keep_running() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register("cbn", "app", false).await;
    cluster
        .ecs
        .create_service()
        .service_name("cbn")
        .task_definition("cbn")
        .desired_count(2)
        .deployment_configuration(configuration(100, 200, Some((true, false))))
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "cbn", 2).await;
    cluster.behave_everywhere(
        "crash",
        FakeBehavior {
            exit_on_start: Some(2),
            ..Default::default()
        },
    );
    let bad = cluster.register("cbn-bad", "crash", false).await;
    cluster
        .ecs
        .update_service()
        .service("cbn")
        .task_definition(&bad)
        .send()
        .await
        .unwrap();
    let service = cluster
        .wait_for("the deployment to fail", || async {
            let service = cluster.service("cbn").await;
            service.deployments()[0]
                .rollout_state()
                .is_some_and(|s| s.as_str() == "FAILED")
                .then_some(service)
        })
        .await;
    let failed = &service.deployments()[0];
    assert_eq!(failed.status(), Some("PRIMARY"));
    assert_eq!(
        failed.rollout_state_reason(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    assert!(failed.failed_tasks() >= 3, "the floor of the threshold");
    let failing = failed.id().unwrap().to_string();
    let all = |tasks: Vec<Task>, more: Vec<Task>| started_by(&[tasks, more].concat(), &failing);
    let started = all(
        cluster.tasks("cbn", DesiredStatus::Stopped).await,
        cluster.tasks("cbn", DesiredStatus::Running).await,
    );
    // Nothing more is started for it; the old deployment keeps its two tasks. Move past the
    // start-failure backoff first, so only the failed deployment's freeze can hold launches.
    cluster.clock.advance(Duration::from_secs(9));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let service = cluster.service("cbn").await;
    assert_eq!(service.deployments().len(), 2);
    assert_eq!(service.deployments()[1].running_count(), 2);
    let later = all(
        cluster.tasks("cbn", DesiredStatus::Stopped).await,
        cluster.tasks("cbn", DesiredStatus::Running).await,
    );
    assert_eq!(later, started);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_server_restart_mid_deployment_neither_double_starts_nor_loses_tasks() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.add_agent("zone-b").await;
    cluster.register("rs", "app", false).await;
    cluster
        .ecs
        .create_service()
        .service_name("rs")
        .task_definition("rs")
        .desired_count(4)
        .deployment_configuration(configuration(100, 150, None))
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "rs", 4).await;
    let v2 = cluster.register("rs2", "app2", true).await;
    let updated = cluster
        .ecs
        .update_service()
        .service("rs")
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    let new = updated.service().unwrap().deployments()[0]
        .id()
        .unwrap()
        .to_string();
    // Max 150 % of 4: two new tasks start; none is available until healthy.
    cluster
        .wait_for("two new tasks running", || async {
            let tasks = cluster.tasks("rs", DesiredStatus::Running).await;
            (tasks
                .iter()
                .filter(|t| {
                    t.started_by() == Some(new.as_str()) && t.last_status() == Some("RUNNING")
                })
                .count()
                == 2)
                .then_some(())
        })
        .await;

    cluster.restart_server().await;
    // Let the new server's scheduler look several times.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let tasks = cluster.tasks("rs", DesiredStatus::Running).await;
    assert_eq!(started_by(&tasks, &new), 2, "nothing started twice");
    assert_eq!(tasks.len(), 6, "nothing lost: four old and two new");

    roll_on(&cluster, "rs", &v2).await;
    let all: Vec<Task> = [
        cluster.tasks("rs", DesiredStatus::Running).await,
        cluster.tasks("rs", DesiredStatus::Stopped).await,
    ]
    .concat();
    assert_eq!(
        started_by(&all, &new),
        4,
        "exactly four tasks of the new revision ever"
    );
    cluster.shutdown().await;
}

/// Turn new tasks healthy until the deployment completes.
async fn roll_on(cluster: &Cluster, name: &str, revision: &str) {
    cluster
        .wait_for("the deployment to complete", || async {
            let tasks = cluster.tasks(name, DesiredStatus::Running).await;
            for task in &tasks {
                if task.task_definition_arn() == Some(revision)
                    && task.last_status() == Some("RUNNING")
                {
                    cluster.set_health(task.task_arn().unwrap(), "app2", HealthState::Healthy);
                }
            }
            let service = cluster.service(name).await;
            (service.deployments().len() == 1
                && service.deployments()[0]
                    .rollout_state()
                    .is_some_and(|s| s.as_str() == "COMPLETED")
                && service.running_count() == service.desired_count())
            .then_some(())
        })
        .await;
}

#[tokio::test]
async fn a_daemon_service_follows_instances_that_join_drain_and_leave() {
    let mut cluster = Cluster::start().await;
    let first = cluster.add_agent("zone-a").await;
    cluster.register("agentd", "app", false).await;
    cluster
        .ecs
        .create_service()
        .service_name("agentd")
        .task_definition("agentd")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "agentd", 1).await;

    let second = cluster.add_agent("zone-b").await;
    wait_stable(&cluster, "agentd", 2).await;
    let third = cluster.add_agent("zone-c").await;
    wait_stable(&cluster, "agentd", 3).await;
    let tasks = cluster.tasks("agentd", DesiredStatus::Running).await;
    let hosts: BTreeSet<&str> = tasks
        .iter()
        .filter_map(|t| t.container_instance_arn())
        .collect();
    assert_eq!(
        hosts,
        BTreeSet::from([first.as_str(), second.as_str(), third.as_str()])
    );

    // DRAINING: the daemon task there stops.
    cluster
        .ecs
        .update_container_instances_state()
        .container_instances(&second)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "agentd", 2).await;

    // Leaving: the agent goes and the instance is deregistered; its task is marked STOPPED.
    cluster.stop_agent(&third).await;
    cluster
        .ecs
        .deregister_container_instance()
        .container_instance(&third)
        .force(true)
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "agentd", 1).await;
    let tasks = cluster.tasks("agentd", DesiredStatus::Running).await;
    assert_eq!(tasks[0].container_instance_arn(), Some(first.as_str()));

    // A constraint narrows the instances: only zone-a... and zone-b once it is ACTIVE again.
    cluster
        .ecs
        .update_container_instances_state()
        .container_instances(&second)
        .status(ContainerInstanceStatus::Active)
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "agentd", 2).await;
    cluster
        .ecs
        .update_service()
        .service("agentd")
        .placement_constraints(
            PlacementConstraint::builder()
                .r#type(PlacementConstraintType::MemberOf)
                .expression("attribute:ecs.availability-zone == zone-b")
                .build(),
        )
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "agentd", 1).await;
    let tasks = cluster.tasks("agentd", DesiredStatus::Running).await;
    assert_eq!(tasks[0].container_instance_arn(), Some(second.as_str()));
    cluster.shutdown().await;
}

#[tokio::test]
async fn draining_an_instance_moves_its_tasks_starting_replacements_first() {
    let mut cluster = Cluster::start().await;
    let a = cluster.add_agent("zone-a").await;
    let b = cluster.add_agent("zone-b").await;
    cluster.register("mv", "app", false).await;
    cluster
        .ecs
        .create_service()
        .service_name("mv")
        .task_definition("mv")
        .desired_count(4)
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "mv", 4).await;
    cluster
        .ecs
        .update_container_instances_state()
        .container_instances(&a)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    // Min 100 %: never fewer than four RUNNING while the tasks move.
    cluster
        .wait_for("every task on the other instance", || async {
            let tasks = cluster.tasks("mv", DesiredStatus::Running).await;
            assert!(
                running(&tasks) >= 4,
                "dropped to {} running",
                running(&tasks)
            );
            let done = tasks.len() == 4
                && running(&tasks) == 4
                && tasks
                    .iter()
                    .all(|t| t.container_instance_arn() == Some(b.as_str()));
            done.then_some(())
        })
        .await;
    wait_stable(&cluster, "mv", 4).await;
    let stopped = cluster.tasks("mv", DesiredStatus::Stopped).await;
    assert_eq!(stopped.len(), 2);
    assert!(stopped
        .iter()
        .all(|t| t.container_instance_arn() == Some(a.as_str())));
    cluster.shutdown().await;
}

#[tokio::test]
async fn deleting_a_service_drains_it_to_inactive() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register("gone", "app", false).await;
    cluster
        .ecs
        .create_service()
        .service_name("gone")
        .task_definition("gone")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "gone", 2).await;
    let deleted = cluster
        .ecs
        .delete_service()
        .service("gone")
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.service().unwrap().status(), Some("DRAINING"));
    cluster
        .wait_for("the service to be INACTIVE", || async {
            (cluster.service("gone").await.status() == Some("INACTIVE")).then_some(())
        })
        .await;
    assert!(cluster
        .tasks("gone", DesiredStatus::Running)
        .await
        .is_empty());
    let listed = cluster.ecs.list_services().send().await.unwrap();
    assert!(listed.service_arns().is_empty());
    cluster.shutdown().await;
}

#[tokio::test]
async fn tasks_that_keep_failing_back_off_with_an_event() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.behave_everywhere(
        "crash",
        FakeBehavior {
            exit_on_start: Some(1),
            ..Default::default()
        },
    );
    cluster.register("loop", "crash", false).await;
    cluster
        .ecs
        .create_service()
        .service_name("loop")
        .task_definition("loop")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    let events = cluster
        .wait_for("the backoff event", || async {
            let events = cluster.events("loop").await;
            events
                .iter()
                .any(|e| e == "(service loop) is unable to consistently start tasks successfully. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.")
                .then_some(events)
        })
        .await;
    assert!(events.iter().filter(|e| e.contains("has started")).count() >= 3);
    // Backing off (2 s and doubling, on the manual clock): nothing new starts meanwhile.
    let before = cluster.tasks("loop", DesiredStatus::Stopped).await.len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = cluster.tasks("loop", DesiredStatus::Stopped).await.len()
        + cluster.tasks("loop", DesiredStatus::Running).await.len();
    assert!(
        after <= before + 1,
        "kept starting during the backoff: {before} → {after}"
    );
    // Past the longest backoff (8 s in these settings).
    cluster.clock.advance(Duration::from_secs(9));
    cluster
        .wait_for("a new attempt after the backoff", || async {
            let total = cluster.tasks("loop", DesiredStatus::Stopped).await.len()
                + cluster.tasks("loop", DesiredStatus::Running).await.len();
            (total > after).then_some(())
        })
        .await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_deployment_alarm_in_alarm_fails_the_deployment_and_rolls_back() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register("al", "app", false).await;
    let alarms = aws_sdk_ecs::types::DeploymentAlarms::builder()
        .alarm_names("al-errors")
        .enable(true)
        .rollback(true)
        .build()
        .unwrap();
    cluster
        .ecs
        .create_service()
        .service_name("al")
        .task_definition("al")
        .desired_count(2)
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .minimum_healthy_percent(100)
                .maximum_percent(200)
                .alarms(alarms)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // No alarm exists yet: a missing alarm does not fail anything.
    let stable = wait_stable(&cluster, "al", 2).await;
    let good = stable.deployments()[0].id().unwrap().to_string();

    // An alarm on a metric that breaches, and in ALARM now.
    let cloudwatch = crate::support::cloudwatch_client_at(
        &cluster.endpoint(),
        &cluster.credentials.access_key_id,
        &cluster.credentials.secret_access_key,
    )
    .await;
    use store::clock::Clock;
    // Two minutes back, in a finished period, so the evaluator also finds the alarm breaching
    // and keeps it in ALARM whatever SetAlarmState said.
    let now = cluster.clock.now_millis() / 1000 - 120;
    cloudwatch
        .put_metric_data()
        .namespace("App")
        .metric_data(
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("Errors")
                .value(100.0)
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(now))
                .build(),
        )
        .send()
        .await
        .unwrap();
    cloudwatch
        .put_metric_alarm()
        .alarm_name("al-errors")
        .namespace("App")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Maximum)
        .period(60)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    cloudwatch
        .set_alarm_state()
        .alarm_name("al-errors")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("errors")
        .send()
        .await
        .unwrap();

    let next = cluster.register("al-next", "app", false).await;
    let updated = cluster
        .ecs
        .update_service()
        .service("al")
        .task_definition(&next)
        .send()
        .await
        .unwrap();
    let failing = updated.service().unwrap().deployments()[0]
        .id()
        .unwrap()
        .to_string();
    let events = cluster
        .wait_for("the alarm rollback", || async {
            let events = cluster.events("al").await;
            events
                .contains(&format!("(service al) rolling back to deployment {good}."))
                .then_some(events)
        })
        .await;
    assert!(
        events.contains(&format!(
            "(service al) (deployment {failing}) deployment failed: alarm detected."
        )),
        "{events:?}"
    );
    let service = wait_stable(&cluster, "al", 2).await;
    assert_eq!(service.task_definition(), stable.task_definition());
    let listed = cluster
        .ecs
        .list_service_deployments()
        .service("al")
        .send()
        .await
        .unwrap();
    let newest = &listed.service_deployments()[0];
    let described = cluster
        .ecs
        .describe_service_deployments()
        .service_deployment_arns(newest.service_deployment_arn().unwrap())
        .send()
        .await
        .unwrap();
    let deployment = &described.service_deployments()[0];
    let alarms = deployment.alarms().unwrap();
    assert_eq!(alarms.status().map(|s| s.as_str()), Some("TRIGGERED"));
    assert_eq!(alarms.triggered_alarm_names(), ["al-errors".to_string()]);
    assert_eq!(
        deployment
            .deployment_circuit_breaker()
            .and_then(|b| b.status())
            .map(|s| s.as_str()),
        Some("DISABLED")
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn with_deployment_alarms_a_steady_deployment_bakes_before_it_completes() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register("bake", "app", false).await;
    let cloudwatch = crate::support::cloudwatch_client_at(
        &cluster.endpoint(),
        &cluster.credentials.access_key_id,
        &cluster.credentials.secret_access_key,
    )
    .await;
    // Period 60 × 1 evaluation period: a bake of 60 s plus the evaluator's delay.
    cloudwatch
        .put_metric_alarm()
        .alarm_name("bake-errors")
        .namespace("App")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Maximum)
        .period(60)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("notBreaching")
        .send()
        .await
        .unwrap();
    let alarms = aws_sdk_ecs::types::DeploymentAlarms::builder()
        .alarm_names("bake-errors")
        .enable(true)
        .rollback(true)
        .build()
        .unwrap();
    cluster
        .ecs
        .create_service()
        .service_name("bake")
        .task_definition("bake")
        .desired_count(2)
        .deployment_configuration(
            DeploymentConfiguration::builder()
                .minimum_healthy_percent(100)
                .maximum_percent(200)
                .alarms(alarms)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // All tasks run, yet the deployment stays IN_PROGRESS while it bakes.
    cluster
        .wait_for("two running tasks", || async {
            (cluster.service("bake").await.running_count() == 2).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baking = cluster.service("bake").await;
    assert_eq!(
        baking.deployments()[0].rollout_state(),
        Some(&aws_sdk_ecs::types::DeploymentRolloutState::InProgress),
        "{baking:?}"
    );
    // Once the bake time passed without an alarm, it completes.
    cluster.clock.advance(Duration::from_secs(80));
    let stable = wait_stable(&cluster, "bake", 2).await;
    let good = stable.deployments()[0].id().unwrap().to_string();

    // The next deployment: steady, baking, then the alarm fires: it fails and rolls back.
    let next = cluster.register("bake-next", "app", false).await;
    cluster
        .ecs
        .update_service()
        .service("bake")
        .task_definition(&next)
        .send()
        .await
        .unwrap();
    cluster
        .wait_for("the new revision's tasks running", || async {
            let tasks = cluster.tasks("bake", DesiredStatus::Running).await;
            let new = tasks
                .iter()
                .filter(|t| t.task_definition_arn() == Some(next.as_str()))
                .filter(|t| t.last_status() == Some("RUNNING"))
                .count();
            (new == 2 && running(&tasks) == 2).then_some(())
        })
        .await;
    use store::clock::Clock;
    let now = cluster.clock.now_millis() / 1000 - 120;
    cloudwatch
        .put_metric_data()
        .namespace("App")
        .metric_data(
            aws_sdk_cloudwatch::types::MetricDatum::builder()
                .metric_name("Errors")
                .value(100.0)
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from_secs(now))
                .build(),
        )
        .send()
        .await
        .unwrap();
    cloudwatch
        .set_alarm_state()
        .alarm_name("bake-errors")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("errors after the rollout")
        .send()
        .await
        .unwrap();
    cluster
        .wait_for("the rollback after the bake-time alarm", || async {
            cluster
                .events("bake")
                .await
                .contains(&format!(
                    "(service bake) rolling back to deployment {good}."
                ))
                .then_some(())
        })
        .await;
    let back = wait_stable(&cluster, "bake", 2).await;
    assert_eq!(back.task_definition(), stable.task_definition());
    cluster.shutdown().await;
}

// ---- Services behind load balancers ----

fn load_balancer(arn: &str) -> aws_sdk_ecs::types::LoadBalancer {
    aws_sdk_ecs::types::LoadBalancer::builder()
        .target_group_arn(arn)
        .container_name("app")
        .container_port(80)
        .build()
}

/// The group's targets still registered (not draining).
async fn registered(cluster: &Cluster, group: &str) -> Vec<model::elb::RegisteredTarget> {
    cluster
        .target_group_record(group)
        .await
        .targets
        .into_iter()
        .filter(|t| t.deregistered_at_ms.is_none())
        .collect()
}

async fn wait_registered(
    cluster: &Cluster,
    group: &str,
    count: usize,
) -> Vec<model::elb::RegisteredTarget> {
    cluster
        .wait_for(
            &format!("{count} targets registered in {group}"),
            || async {
                let targets = registered(cluster, group).await;
                (targets.len() == count).then_some(targets)
            },
        )
        .await
}

fn steady_events(events: &[String], name: &str) -> usize {
    let steady = format!("(service {name}) has reached a steady state.");
    events.iter().filter(|e| **e == steady).count()
}

#[tokio::test]
async fn tasks_are_registered_as_they_run_and_count_once_their_targets_are_healthy() {
    let mut cluster = Cluster::start().await;
    let instance = cluster.add_agent("zone-a").await;
    cluster.register_web("lbweb", false).await;
    let group = cluster.target_group("lbweb-tg", "instance", 30).await;
    let created = cluster
        .ecs
        .create_service()
        .service_name("lbweb")
        .task_definition("lbweb")
        .desired_count(2)
        .load_balancers(load_balancer(&group))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.service().unwrap().load_balancers()[0].target_group_arn(),
        Some(group.as_str())
    );

    // Bridge with a dynamic host port: the instance id and the host port Docker published.
    let targets = wait_registered(&cluster, "lbweb-tg", 2).await;
    let ec2_id = cluster
        .ecs
        .describe_container_instances()
        .container_instances(&instance)
        .send()
        .await
        .unwrap()
        .container_instances()[0]
        .ec2_instance_id()
        .unwrap()
        .to_string();
    let tasks = cluster.tasks("lbweb", DesiredStatus::Running).await;
    for task in &tasks {
        let binding = &task.containers()[0].network_bindings()[0];
        let target = targets
            .iter()
            .find(|t| t.task_arn.as_deref() == task.task_arn())
            .expect("every running task is a target");
        assert_eq!(target.id, ec2_id);
        assert_eq!(Some(target.port), binding.host_port());
        assert_ne!(target.port, 80, "a dynamic host port");
    }
    // Running is not enough: the deployment waits for the targets to be healthy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let service = cluster.service("lbweb").await;
    assert_eq!(service.running_count(), 2);
    assert_eq!(
        service.deployments()[0].rollout_state().map(|s| s.as_str()),
        Some("IN_PROGRESS")
    );
    assert_eq!(cluster.all_targets_healthy("lbweb-tg").await, 2);
    wait_stable(&cluster, "lbweb", 2).await;
    let events = cluster.events("lbweb").await;
    let registered_events: usize = events
        .iter()
        .filter_map(|e| {
            e.strip_prefix("(service lbweb) registered ")?
                .strip_suffix(&format!(" targets in (target-group {group})"))?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(registered_events, 2, "{events:#?}");

    // Scale 2 → 4: the new tasks are registered, and the service is steady only once their
    // targets are healthy.
    let steady_before = steady_events(&events, "lbweb");
    cluster
        .ecs
        .update_service()
        .service("lbweb")
        .desired_count(4)
        .send()
        .await
        .unwrap();
    wait_registered(&cluster, "lbweb-tg", 4).await;
    cluster
        .wait_for("four running tasks", || async {
            (cluster.service("lbweb").await.running_count() == 4).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        steady_events(&cluster.events("lbweb").await, "lbweb"),
        steady_before,
        "not steady while new targets are initial"
    );
    cluster.all_targets_healthy("lbweb-tg").await;
    cluster
        .wait_for("the steady-state event", || async {
            (steady_events(&cluster.events("lbweb").await, "lbweb") == steady_before + 1)
                .then_some(())
        })
        .await;

    // A task that crashes is deregistered (no drain needed) and replaced by a new target.
    let victim = cluster.tasks("lbweb", DesiredStatus::Running).await[0]
        .task_arn()
        .unwrap()
        .to_string();
    assert!(cluster.exit(&victim, "app", 1));
    cluster
        .wait_for("the crashed task's target deregistered", || async {
            let group = cluster.target_group_record("lbweb-tg").await;
            group
                .targets
                .iter()
                .any(|t| {
                    t.task_arn.as_deref() == Some(victim.as_str()) && t.deregistered_at_ms.is_some()
                })
                .then_some(())
        })
        .await;
    let targets = wait_registered(&cluster, "lbweb-tg", 4).await;
    assert!(targets
        .iter()
        .all(|t| t.task_arn.as_deref() != Some(victim.as_str())));
    let events = cluster.events("lbweb").await;
    assert!(
        events.contains(&format!(
            "(service lbweb) deregistered 1 targets in (target-group {group})"
        )),
        "{events:#?}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_deployment_waits_for_healthy_targets_then_drains_old_tasks_before_stopping_them() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register_web("drain", false).await;
    let group = cluster.target_group("drain-tg", "instance", 60).await;
    cluster
        .ecs
        .create_service()
        .service_name("drain")
        .task_definition("drain")
        .desired_count(2)
        .deployment_configuration(configuration(100, 200, None))
        .load_balancers(load_balancer(&group))
        .send()
        .await
        .unwrap();
    wait_registered(&cluster, "drain-tg", 2).await;
    cluster.all_targets_healthy("drain-tg").await;
    wait_stable(&cluster, "drain", 2).await;
    let old: BTreeSet<String> = cluster
        .tasks("drain", DesiredStatus::Running)
        .await
        .iter()
        .map(|t| t.task_arn().unwrap().to_string())
        .collect();

    let v2 = cluster.register_web("drain2", false).await;
    let updated = cluster
        .ecs
        .update_service()
        .service("drain")
        .task_definition(&v2)
        .send()
        .await
        .unwrap();
    let new_deployment = updated.service().unwrap().deployments()[0]
        .id()
        .unwrap()
        .to_string();
    // Max 200 %: both new tasks start and are registered; min 100 %: no old one goes before
    // the new targets are healthy.
    wait_registered(&cluster, "drain-tg", 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let live = registered(&cluster, "drain-tg").await;
    assert_eq!(live.len(), 4, "no old target deregistered yet");
    let running = cluster.tasks("drain", DesiredStatus::Running).await;
    assert_eq!(running.len(), 4);

    // Healthy: the old tasks are deregistered and drain, still running, for the delay.
    cluster.all_targets_healthy("drain-tg").await;
    cluster
        .wait_for("the old targets draining", || async {
            let group = cluster.target_group_record("drain-tg").await;
            let draining = group
                .targets
                .iter()
                .filter(|t| {
                    t.deregistered_at_ms.is_some()
                        && t.task_arn.as_ref().is_some_and(|a| old.contains(a))
                })
                .count();
            (draining == 2).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = cluster.tasks("drain", DesiredStatus::Running).await;
    assert_eq!(
        running.len(),
        4,
        "draining tasks keep running until the delay ends"
    );
    let service = cluster.service("drain").await;
    assert_eq!(
        service.deployments()[0].rollout_state().map(|s| s.as_str()),
        Some("IN_PROGRESS"),
        "not complete while old tasks drain"
    );
    let events = cluster.events("drain").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("(service drain) has begun draining connections on ")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("(service drain) deregistered ")
                && e.ends_with(&format!("targets in (target-group {group})"))),
        "{events:#?}"
    );
    assert!(!events.iter().any(|e| e.contains("has stopped")));

    // The delay ends: the old tasks stop, and the deployment completes.
    cluster.clock.advance(Duration::from_secs(61));
    wait_stable(&cluster, "drain", 2).await;
    let stopped = cluster.tasks("drain", DesiredStatus::Stopped).await;
    assert_eq!(stopped.len(), 2);
    for task in &stopped {
        assert!(old.contains(task.task_arn().unwrap()));
        assert_eq!(
            task.stopped_reason(),
            Some(format!("Scaling activity initiated by (deployment {new_deployment})").as_str())
        );
    }
    let events = cluster.events("drain").await;
    assert!(events
        .iter()
        .any(|e| e.starts_with("(service drain) has stopped ")));

    // Deleting the service drains its tasks the same way before it turns INACTIVE.
    cluster
        .ecs
        .delete_service()
        .service("drain")
        .force(true)
        .send()
        .await
        .unwrap();
    wait_registered(&cluster, "drain-tg", 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.service("drain").await.status(), Some("DRAINING"));
    assert_eq!(
        cluster.tasks("drain", DesiredStatus::Running).await.len(),
        2
    );
    cluster.clock.advance(Duration::from_secs(61));
    cluster
        .wait_for("the service to be INACTIVE", || async {
            (cluster.service("drain").await.status() == Some("INACTIVE")).then_some(())
        })
        .await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_target_unhealthy_after_the_grace_period_gets_its_task_drained_and_replaced() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register_web("sick", false).await;
    let group = cluster.target_group("sick-tg", "instance", 10).await;
    cluster
        .ecs
        .create_service()
        .service_name("sick")
        .task_definition("sick")
        .desired_count(1)
        .health_check_grace_period_seconds(30)
        .load_balancers(load_balancer(&group))
        .send()
        .await
        .unwrap();
    let target = wait_registered(&cluster, "sick-tg", 1).await.remove(0);
    cluster.all_targets_healthy("sick-tg").await;
    wait_stable(&cluster, "sick", 1).await;
    let sick = target.task_arn.clone().unwrap();

    // Unhealthy within the grace period: nothing happens.
    cluster
        .set_target_health("sick-tg", &target.id, target.port, "unhealthy")
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(registered(&cluster, "sick-tg").await.len(), 1);
    let running = cluster.tasks("sick", DesiredStatus::Running).await;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].task_arn(), Some(sick.as_str()));

    // After it: deregistered, drained for the delay while a replacement starts, then stopped.
    cluster.clock.advance(Duration::from_secs(31));
    cluster
        .wait_for(
            "the sick target draining and a replacement registered",
            || async {
                let group = cluster.target_group_record("sick-tg").await;
                let draining = group.targets.iter().any(|t| {
                    t.task_arn.as_deref() == Some(sick.as_str()) && t.deregistered_at_ms.is_some()
                });
                let replaced = group.targets.iter().any(|t| {
                    t.task_arn.as_deref() != Some(sick.as_str()) && t.deregistered_at_ms.is_none()
                });
                (draining && replaced).then_some(())
            },
        )
        .await;
    let running = cluster.tasks("sick", DesiredStatus::Running).await;
    assert!(
        running.iter().any(|t| t.task_arn() == Some(sick.as_str())),
        "still running while it drains"
    );
    cluster.clock.advance(Duration::from_secs(11));
    let stopped = cluster
        .wait_for("the sick task stopped", || async {
            cluster
                .tasks("sick", DesiredStatus::Stopped)
                .await
                .into_iter()
                .find(|t| t.task_arn() == Some(sick.as_str()))
        })
        .await;
    assert_eq!(
        stopped.stopped_reason(),
        Some(format!("Task failed ELB health checks in (target-group {group})").as_str())
    );
    let events = cluster.events("sick").await;
    assert!(
        events.contains(&format!(
            "(service sick) (instance {}) (port {}) is unhealthy in (target-group {group}) due to (reason Health checks failed with these codes: [502]).",
            target.id, target.port
        )),
        "{events:#?}"
    );
    assert!(
        events.contains(&"(service sick) has begun draining connections on 1 tasks.".to_string())
    );
    assert!(events.contains(&format!(
        "(service sick) deregistered 1 targets in (target-group {group})"
    )));
    // The replacement is started in the pass that decided the stop, or (when that pass lost a
    // placement race) in the next one; only the former carries ECS's "replaced" suffix.
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("(service sick) has started 1 tasks:")
                && !e.contains(sick.rsplit('/').next().unwrap())),
        "{events:#?}"
    );
    let sick_id = sick.rsplit('/').next().unwrap();
    assert!(events.contains(&format!(
        "(service sick) has stopped 1 running tasks: (task {sick_id})."
    )));
    cluster.shutdown().await;
}

#[tokio::test]
async fn awsvpc_tasks_are_registered_by_their_address_in_ip_target_groups() {
    let mut cluster = Cluster::start().await;
    cluster.add_agent("us-east-1a").await;
    cluster.register_web("vpcweb", true).await;
    let group = cluster.target_group("vpcweb-tg", "ip", 0).await;
    let subnet = cluster.default_subnet("us-east-1a").await;
    cluster
        .ecs
        .create_service()
        .service_name("vpcweb")
        .task_definition("vpcweb")
        .desired_count(1)
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .subnets(subnet)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .load_balancers(load_balancer(&group))
        .send()
        .await
        .unwrap();
    let target = wait_registered(&cluster, "vpcweb-tg", 1).await.remove(0);
    let task = cluster
        .tasks("vpcweb", DesiredStatus::Running)
        .await
        .remove(0);
    let address = task
        .attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
        .unwrap()
        .to_string();
    assert_eq!(target.id, address);
    assert_eq!(
        target.port, 80,
        "the container port in the task's own address"
    );
    assert_eq!(target.task_arn.as_deref(), task.task_arn());
    cluster.all_targets_healthy("vpcweb-tg").await;
    wait_stable(&cluster, "vpcweb", 1).await;

    // With no deregistration delay, scaling in deregisters and stops at once.
    cluster
        .ecs
        .update_service()
        .service("vpcweb")
        .desired_count(0)
        .send()
        .await
        .unwrap();
    wait_stable(&cluster, "vpcweb", 0).await;
    assert!(registered(&cluster, "vpcweb-tg").await.is_empty());
    cluster.shutdown().await;
}

/// The stored service record named `name`, as JSON, with its key and revision.
async fn service_record(cluster: &Cluster, name: &str) -> (String, serde_json::Value) {
    use store::Store;
    let response = cluster
        .store
        .range("ecs/service/", Default::default())
        .await
        .expect("reads");
    let kv = response
        .kvs
        .into_iter()
        .find(|kv| kv.key.ends_with(&format!("/{name}")))
        .expect("the service record");
    (kv.key, serde_json::from_slice(&kv.value).expect("decodes"))
}

#[tokio::test]
async fn a_target_deregistered_by_hand_is_registered_again_and_its_task_keeps_running() {
    use store::Store;
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register_web("byhand", false).await;
    let group = cluster.target_group("byhand-tg", "instance", 300).await;
    cluster
        .ecs
        .create_service()
        .service_name("byhand")
        .task_definition("byhand")
        .desired_count(1)
        .load_balancers(load_balancer(&group))
        .send()
        .await
        .unwrap();
    let target = wait_registered(&cluster, "byhand-tg", 1).await.remove(0);
    cluster.all_targets_healthy("byhand-tg").await;
    wait_stable(&cluster, "byhand", 1).await;
    let task = target.task_arn.clone().unwrap();

    // DeregisterTargets through the ELBv2 API, as a user would: the target drains (300 s).
    let mut record = cluster.target_group_record("byhand-tg").await;
    let at = {
        use store::clock::Clock;
        cluster.clock.now_millis()
    };
    cluster.clock.advance(Duration::from_millis(5));
    record.targets[0].deregistered_at_ms = Some(at);
    cluster
        .store
        .put(
            &model::elb::keys::target_group("byhand-tg"),
            serde_json::to_vec(&record).unwrap().into(),
        )
        .await
        .unwrap();

    // The scheduler did not decide that drain: the task is neither drained nor stopped (not
    // as "Scaling activity" after the delay either), and its target is registered afresh.
    let again = cluster
        .wait_for("the target registered again", || async {
            registered(&cluster, "byhand-tg")
                .await
                .into_iter()
                .find(|t| t.task_arn.as_deref() == Some(task.as_str()) && t.registered_at_ms > at)
        })
        .await;
    assert_eq!(
        (again.id.as_str(), again.port),
        (target.id.as_str(), target.port)
    );
    cluster.clock.advance(Duration::from_secs(301));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let running = cluster.tasks("byhand", DesiredStatus::Running).await;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].task_arn(), Some(task.as_str()));
    assert!(cluster
        .tasks("byhand", DesiredStatus::Stopped)
        .await
        .is_empty());
    let events = cluster.events("byhand").await;
    assert!(
        !events.iter().any(|e| e.contains("has begun draining")),
        "{events:#?}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_drain_decided_before_a_crash_is_finished_with_its_reason() {
    use store::Store;
    let mut cluster = Cluster::start().await;
    cluster.add_agent("zone-a").await;
    cluster.register_web("crashdrain", false).await;
    let group = cluster.target_group("crashdrain-tg", "instance", 20).await;
    cluster
        .ecs
        .create_service()
        .service_name("crashdrain")
        .task_definition("crashdrain")
        .desired_count(1)
        .load_balancers(load_balancer(&group))
        .send()
        .await
        .unwrap();
    let target = wait_registered(&cluster, "crashdrain-tg", 1)
        .await
        .remove(0);
    cluster.all_targets_healthy("crashdrain-tg").await;
    wait_stable(&cluster, "crashdrain", 1).await;
    let task = target.task_arn.clone().unwrap();
    let task_id = task.rsplit('/').next().unwrap().to_string();

    // The server goes down right after saving a drain decision, before it deregistered the
    // target (the decision is saved first precisely so that this order is the only one).
    cluster.stop_server().await;
    let reason = format!("Task failed ELB health checks in (target-group {group})");
    let (key, mut record) = service_record(&cluster, "crashdrain").await;
    record["wharfDraining"] = serde_json::json!({ task_id.clone(): reason.clone() });
    cluster
        .store
        .put(&key, serde_json::to_vec(&record).unwrap().into())
        .await
        .unwrap();
    cluster.restart_server().await;

    // The next server finishes the drain: deregisters the target, waits out the delay, and
    // stops the task for the reason decided, while a replacement is registered.
    cluster
        .wait_for("the target draining", || async {
            let group = cluster.target_group_record("crashdrain-tg").await;
            group
                .targets
                .iter()
                .any(|t| {
                    t.task_arn.as_deref() == Some(task.as_str()) && t.deregistered_at_ms.is_some()
                })
                .then_some(())
        })
        .await;
    let running = cluster.tasks("crashdrain", DesiredStatus::Running).await;
    assert!(running.iter().any(|t| t.task_arn() == Some(task.as_str())));
    cluster.clock.advance(Duration::from_secs(21));
    let stopped = cluster
        .wait_for("the drained task stopped", || async {
            cluster
                .tasks("crashdrain", DesiredStatus::Stopped)
                .await
                .into_iter()
                .find(|t| t.task_arn() == Some(task.as_str()))
        })
        .await;
    assert_eq!(stopped.stopped_reason(), Some(reason.as_str()));
    let replacement = wait_registered(&cluster, "crashdrain-tg", 1)
        .await
        .remove(0);
    assert_ne!(replacement.task_arn.as_deref(), Some(task.as_str()));
    cluster.shutdown().await;
}

#[tokio::test]
async fn target_health_wakes_only_through_the_watch_without_polling_or_resync() {
    // A resync that never comes within the test: the service must learn of its targets'
    // health from the watch on target health alone.
    let settings = controlplane::ServiceSettings {
        resync: Duration::from_secs(3600),
        ..cluster::fast_settings()
    };
    let mut cluster = Cluster::start_with(settings).await;
    cluster.add_agent("zone-a").await;
    cluster.register_web("woken", false).await;
    let group = cluster.target_group("woken-tg", "instance", 0).await;
    cluster
        .ecs
        .create_service()
        .service_name("woken")
        .task_definition("woken")
        .desired_count(1)
        .load_balancers(load_balancer(&group))
        .send()
        .await
        .unwrap();
    wait_registered(&cluster, "woken-tg", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cluster.service("woken").await.deployments()[0]
            .rollout_state()
            .map(|s| s.as_str()),
        Some("IN_PROGRESS")
    );
    cluster.all_targets_healthy("woken-tg").await;
    wait_stable(&cluster, "woken", 1).await;
    cluster.shutdown().await;
}
