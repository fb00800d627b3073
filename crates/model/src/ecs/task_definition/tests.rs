//! Data-driven tests: each case is a RegisterTaskDefinition request in JSON and the first
//! problem ECS would report for it (or none).

use serde_json::{json, Value};

use super::*;
use crate::validation::ProblemKind;

/// Parse `fixture` as a RegisterTaskDefinition request and compare the first problem found
/// with `expected` (`Ok(())` for a valid request).
fn check(fixture: Value, expected: Result<(), &str>) {
    let input: RegisterTaskDefinitionInput =
        serde_json::from_value(fixture.clone()).expect("fixture parses");
    let first = validate(&input)
        .err()
        .and_then(|problems| problems.first().cloned());
    match (expected, first) {
        (Ok(()), None) => {}
        (Ok(()), Some(problem)) => panic!("expected valid, got {problem:?} for {fixture}"),
        (Err(message), None) => panic!("expected {message:?}, got valid for {fixture}"),
        (Err(message), Some(problem)) => {
            assert_eq!(problem.message, message, "for {fixture}")
        }
    }
}

/// One EC2 container with enough set to be valid.
fn ec2(container: Value) -> Value {
    let mut base = json!({"name": "web", "image": "nginx", "memory": 128});
    merge(&mut base, container);
    json!({"family": "web", "containerDefinitions": [base]})
}

/// A valid Fargate task around the given containers.
fn fargate(containers: Value) -> Value {
    json!({
        "family": "app",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": containers,
    })
}

/// Shallow-merge `patch` into `target`; `null` members remove the key.
fn merge(target: &mut Value, patch: Value) {
    if let (Some(target), Value::Object(patch)) = (target.as_object_mut(), patch) {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(&key);
            } else {
                target.insert(key, value);
            }
        }
    }
}

fn with(mut fixture: Value, patch: Value) -> Value {
    merge(&mut fixture, patch);
    fixture
}

#[test]
fn web_app_fixture_is_valid() {
    check(
        fargate(json!([
            {"name": "backend", "image": "backend:1", "portMappings": [{"containerPort": 8080}]},
            {"name": "frontend", "image": "frontend:1", "portMappings": [{"containerPort": 8000}],
             "command": ["run"], "environment": []}
        ])),
        Ok(()),
    );
}

#[test]
fn family_and_container_list() {
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (ec2(json!({})), Ok(())),
        (
            with(ec2(json!({})), json!({"family": null})),
            Err("Family can not be blank."),
        ),
        (
            with(ec2(json!({})), json!({"family": ""})),
            Err("Family can not be blank."),
        ),
        (
            with(ec2(json!({})), json!({"family": "web app"})),
            Err("Family contains invalid characters."),
        ),
        (
            with(ec2(json!({})), json!({"family": "web:1"})),
            Err("Family contains invalid characters."),
        ),
        (
            with(ec2(json!({})), json!({"family": "a".repeat(255)})),
            Ok(()),
        ),
        (
            with(ec2(json!({})), json!({"family": "a".repeat(256)})),
            Err("Family should be 255 characters or less."),
        ),
        (with(ec2(json!({})), json!({"family": "Web_App-2"})), Ok(())),
        (
            json!({"family": "web"}),
            Err("Container list cannot be empty."),
        ),
        (
            json!({"family": "web", "containerDefinitions": []}),
            Err("Container list cannot be empty."),
        ),
        (
            json!({"family": "web", "containerDefinitions": (0..11)
                .map(|i| json!({"name": format!("c{i}"), "image": "x", "memory": 64}))
                .collect::<Vec<_>>()}),
            Err("Too many containers."),
        ),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn container_names_and_images() {
    let two = |a: &str, b: &str| {
        json!({"family": "web", "containerDefinitions": [
            {"name": a, "image": "x", "memory": 64}, {"name": b, "image": "y", "memory": 64}]})
    };
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (
            ec2(json!({"name": null})),
            Err("Container.name should not be null or empty."),
        ),
        (
            ec2(json!({"name": ""})),
            Err("Container.name should not be null or empty."),
        ),
        (
            ec2(json!({"name": "my web"})),
            Err("Container.name contains invalid characters."),
        ),
        (
            ec2(json!({"image": null})),
            Err("Container.image should not be null or empty."),
        ),
        (
            ec2(json!({"image": ""})),
            Err("Container.image should not be null or empty."),
        ),
        (
            ec2(json!({"image": "i".repeat(256)})),
            Err("Container.image should be 255 characters or less"),
        ),
        (
            two("a", "a"),
            Err("Container names must be unique within a Task Definition."),
        ),
        (two("a", "b"), Ok(())),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn essential_containers_and_dependencies() {
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (ec2(json!({"essential": false})), Err("Task definition must have at least one essential container.")),
        (ec2(json!({"essential": true})), Ok(())),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "app", "image": "x", "memory": 64, "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
                {"name": "init", "image": "y", "memory": 64, "essential": false}]}),
            Ok(()),
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "app", "image": "x", "memory": 64, "dependsOn": [{"containerName": "init", "condition": "COMPLETE"}]},
                {"name": "init", "image": "y", "memory": 64}]}),
            Err("A dependency container with SUCCESS or COMPLETE condition cannot be an essential container"),
        ),
        (
            ec2(json!({"dependsOn": [{"containerName": "db", "condition": "START"}]})),
            Err("Invalid 'dependsOn' setting for container 'web'. Container 'db' does not exist in the task definition."),
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "app", "image": "x", "memory": 64, "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
                {"name": "db", "image": "y", "memory": 64}]}),
            Err("Invalid 'dependsOn' setting for container 'app'. The HEALTHY condition requires container 'db' to have a health check."),
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "app", "image": "x", "memory": 64, "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
                {"name": "db", "image": "y", "memory": 64, "healthCheck": {"command": ["CMD", "true"]}}]}),
            Ok(()),
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "app", "image": "x", "memory": 64, "dependsOn": [{"containerName": "db", "condition": "READY"}]},
                {"name": "db", "image": "y", "memory": 64}]}),
            Err("Invalid value 'READY' for dependsOn.condition. Valid values are: START, COMPLETE, SUCCESS, HEALTHY."),
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "a", "image": "x", "memory": 64, "dependsOn": [{"containerName": "b", "condition": "START"}]},
                {"name": "b", "image": "y", "memory": 64, "dependsOn": [{"containerName": "a", "condition": "START"}]}]}),
            Err("Invalid 'dependsOn' setting for container 'a'. Container dependencies must not form a cycle."),
        ),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn container_memory() {
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (
            ec2(json!({"memory": null})),
            Err("Invalid setting for container 'web'. At least one of 'memory' or 'memoryReservation' must be specified."),
        ),
        (ec2(json!({"memory": null, "memoryReservation": 64})), Ok(())),
        (with(ec2(json!({"memory": null})), json!({"memory": "512"})), Ok(())),
        (
            with(ec2(json!({"memory": null})), json!({"requiresCompatibilities": ["EC2"]})),
            Err("Invalid setting for container 'web'. At least one of 'memory' or 'memoryReservation' must be specified."),
        ),
        (
            ec2(json!({"memory": 5})),
            Err("Invalid 'memory' setting for container 'web'. The minimum memory for a container is 6 MiB."),
        ),
        (ec2(json!({"memory": 6})), Ok(())),
        (
            ec2(json!({"memory": 128, "memoryReservation": 256})),
            Err("Invalid 'memoryReservation' setting for container 'web'. 'memoryReservation' must be less than or equal to 'memory'."),
        ),
        (ec2(json!({"memory": 128, "memoryReservation": 128})), Ok(())),
        (
            with(ec2(json!({"memory": 1024})), json!({"memory": "512"})),
            Err("The 'memory' setting for container 'web' is greater than for the task."),
        ),
        (
            with(ec2(json!({"memory": null, "memoryReservation": 1024})), json!({"memory": "512"})),
            Err("The sum of all container 'memoryReservation' values cannot be greater than the value of the task 'memory'."),
        ),
        (
            with(ec2(json!({"cpu": 512})), json!({"cpu": "256"})),
            Err("The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'."),
        ),
        (ec2(json!({"cpu": -1})), Err("Invalid 'cpu' setting for container 'web'.")),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn task_cpu_and_memory_forms() {
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (
            with(ec2(json!({})), json!({"cpu": "1 vCPU", "memory": "2 GB"})),
            Ok(()),
        ),
        (
            with(
                ec2(json!({})),
                json!({"cpu": "0.25 vcpu", "memory": "0.5GB"}),
            ),
            Ok(()),
        ),
        (
            with(ec2(json!({})), json!({"cpu": "lots"})),
            Err("Invalid 'cpu' setting for task."),
        ),
        (
            with(ec2(json!({})), json!({"cpu": "64"})),
            Err("Invalid 'cpu' setting for task."),
        ),
        (
            with(ec2(json!({})), json!({"cpu": "0.3 vCPU"})),
            Err("Invalid 'cpu' setting for task."),
        ),
        (
            with(ec2(json!({})), json!({"memory": "a lot"})),
            Err("Invalid 'memory' setting for task."),
        ),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
    assert_eq!(parse_task_cpu("1 vCPU"), Some(1024));
    assert_eq!(parse_task_cpu("2vcpu"), Some(2048));
    assert_eq!(parse_task_cpu(".5 vCPU"), Some(512));
    assert_eq!(parse_task_cpu("256"), Some(256));
    assert_eq!(parse_task_cpu("-256"), None);
    assert_eq!(parse_task_memory("1 GB"), Some(1024));
    assert_eq!(parse_task_memory("0.5gb"), Some(512));
    assert_eq!(parse_task_memory("3072"), Some(3072));
    assert_eq!(parse_task_memory("1 TB"), None);
}

#[test]
fn fargate_rules() {
    let one = json!([{"name": "app", "image": "x"}]);
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (fargate(one.clone()), Ok(())),
        (
            with(fargate(one.clone()), json!({"networkMode": "bridge"})),
            Err("Fargate only supports network mode \u{2018}awsvpc\u{2019}."),
        ),
        (
            with(fargate(one.clone()), json!({"networkMode": null})),
            Err("Fargate only supports network mode \u{2018}awsvpc\u{2019}."),
        ),
        (
            with(fargate(one.clone()), json!({"cpu": null})),
            Err("Fargate requires that 'cpu' be defined at the task level."),
        ),
        (
            with(fargate(one.clone()), json!({"memory": null})),
            Err("Fargate requires that 'memory' be defined at the task level."),
        ),
        (
            with(fargate(one.clone()), json!({"cpu": "512", "memory": "512"})),
            Err("No Fargate configuration exists for given values: 512 CPU, 512 memory. See the Amazon ECS documentation for the valid values."),
        ),
        (with(fargate(one.clone()), json!({"cpu": "1 vCPU", "memory": "2 GB"})), Ok(())),
        (
            with(fargate(one.clone()), json!({"cpu": "1024", "memory": "9216"})),
            Err("No Fargate configuration exists for given values: 1024 CPU, 9216 memory. See the Amazon ECS documentation for the valid values."),
        ),
        (
            with(fargate(one.clone()), json!({"ipcMode": "task"})),
            Err("Tasks using the Fargate launch type do not support ipcMode."),
        ),
        (with(fargate(one.clone()), json!({"pidMode": "task"})), Ok(())),
        (
            with(fargate(one.clone()), json!({"volumes": [{"name": "v", "host": {"sourcePath": "/data"}}]})),
            Err("Fargate compatible task definitions do not support sourcePath"),
        ),
        (
            fargate(json!([{"name": "app", "image": "x", "logConfiguration": {"logDriver": "awslogs"}}])),
            Err("Fargate requires task definition to have execution role ARN to support log driver awslogs."),
        ),
        (
            with(
                fargate(json!([{"name": "app", "image": "x", "logConfiguration": {"logDriver": "awslogs"}}])),
                json!({"executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"}),
            ),
            Ok(()),
        ),
        (
            fargate(json!([{"name": "app", "image": "x", "memory": 1024}])),
            Err("The 'memory' setting for container 'app' is greater than for the task."),
        ),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn fargate_size_table() {
    let valid = [
        (256, 512),
        (256, 2048),
        (512, 1024),
        (512, 4096),
        (1024, 8192),
        (2048, 4096),
        (2048, 16384),
        (4096, 30720),
        (8192, 16384),
        (8192, 61440),
        (16384, 32768),
        (16384, 122880),
    ];
    for (cpu, memory) in valid {
        assert!(fargate_size_is_valid(cpu, memory), "{cpu}/{memory}");
    }
    let invalid = [
        (256, 256),
        (256, 3072),
        (512, 512),
        (512, 5120),
        (1024, 1024),
        (2048, 17408),
        (4096, 31744),
        (8192, 17408),
        (8192, 65536),
        (16384, 36864),
        (128, 512),
        (3072, 8192),
    ];
    for (cpu, memory) in invalid {
        assert!(!fargate_size_is_valid(cpu, memory), "{cpu}/{memory}");
    }
}

#[test]
fn port_mappings() {
    let awsvpc = |containers: Value| json!({"family": "web", "networkMode": "awsvpc", "containerDefinitions": containers});
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (ec2(json!({"portMappings": [{"containerPort": 80, "hostPort": 8080}]})), Ok(())),
        (ec2(json!({"portMappings": [{"hostPort": 8080}]})), Err("Invalid 'containerPort' setting for container 'web'.")),
        (ec2(json!({"portMappings": [{"containerPort": 70000}]})), Err("Invalid 'containerPort' setting for container 'web'.")),
        (ec2(json!({"portMappings": [{"containerPort": 80, "hostPort": -1}]})), Err("Invalid 'hostPort' setting for container 'web'.")),
        (
            ec2(json!({"portMappings": [{"containerPort": 80, "protocol": "sctp"}]})),
            Err("Invalid value 'sctp' for portMappings.protocol. Valid values are: tcp, udp."),
        ),
        (ec2(json!({"portMappings": [{"containerPort": 53, "protocol": "udp"}, {"containerPort": 53, "protocol": "tcp"}]})), Ok(())),
        (
            awsvpc(json!([{"name": "web", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 8080}]}])),
            Err("When networkMode=awsvpc, the host ports and container ports in port mappings must match."),
        ),
        (awsvpc(json!([{"name": "web", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 80}]}])), Ok(())),
        (
            awsvpc(json!([
                {"name": "a", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80}]},
                {"name": "b", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80}]}])),
            Err("Invalid 'portMappings' setting for container 'b'. Container port 80/tcp is mapped more than once."),
        ),
        (
            ec2(json!({"portMappings": [{"containerPort": 80}, {"containerPort": 80}]})),
            Err("Invalid 'portMappings' setting for container 'web'. Container port 80/tcp is mapped more than once."),
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "a", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80}]},
                {"name": "b", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80}]}]}),
            Ok(()),
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "a", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 8080}]},
                {"name": "b", "image": "x", "memory": 64, "portMappings": [{"containerPort": 81, "hostPort": 8080}]}]}),
            Err("Invalid 'portMappings' setting for container 'b'. Host port 8080/tcp is mapped more than once."),
        ),
        (
            with(ec2(json!({"portMappings": [{"containerPort": 80}]})), json!({"networkMode": "none"})),
            Err("Port mappings are not supported when networkMode=none."),
        ),
        (
            with(ec2(json!({"portMappings": [{"containerPort": 80, "hostPort": 81}]})), json!({"networkMode": "host"})),
            Err("When networkMode=host, the host ports and container ports in port mappings must match."),
        ),
        (ec2(json!({"portMappings": [{"containerPortRange": "8000-8010"}]})), Ok(())),
        (
            ec2(json!({"portMappings": [{"containerPortRange": "8010-8000"}]})),
            Err("Invalid 'containerPortRange' setting for container 'web'."),
        ),
        (
            awsvpc(json!([{"name": "web", "image": "x", "memory": 64, "hostname": "web"}])),
            Err("hostname is not supported on container when networkMode=awsvpc."),
        ),
        (
            with(ec2(json!({})), json!({"networkMode": "overlay"})),
            Err("Invalid value 'overlay' for networkMode. Valid values are: bridge, host, awsvpc, none."),
        ),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn health_checks() {
    let hc = |check: Value| ec2(json!({"healthCheck": check}));
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (hc(json!({"command": ["CMD-SHELL", "curl -f localhost"], "interval": 5, "timeout": 2, "retries": 1, "startPeriod": 0})), Ok(())),
        (hc(json!({"command": ["CMD", "true"], "interval": 300, "timeout": 60, "retries": 10, "startPeriod": 300})), Ok(())),
        (hc(json!({"command": []})), Err("Invalid 'healthCheck' setting for container 'web'. 'command' must not be empty.")),
        (hc(json!({"command": ["CMD", "true"], "interval": 4})), Err("Invalid 'healthCheck' setting for container 'web'. 'interval' must be between 5 and 300.")),
        (hc(json!({"command": ["CMD", "true"], "interval": 301})), Err("Invalid 'healthCheck' setting for container 'web'. 'interval' must be between 5 and 300.")),
        (hc(json!({"command": ["CMD", "true"], "timeout": 1})), Err("Invalid 'healthCheck' setting for container 'web'. 'timeout' must be between 2 and 60.")),
        (hc(json!({"command": ["CMD", "true"], "timeout": 61})), Err("Invalid 'healthCheck' setting for container 'web'. 'timeout' must be between 2 and 60.")),
        (hc(json!({"command": ["CMD", "true"], "retries": 0})), Err("Invalid 'healthCheck' setting for container 'web'. 'retries' must be between 1 and 10.")),
        (hc(json!({"command": ["CMD", "true"], "retries": 11})), Err("Invalid 'healthCheck' setting for container 'web'. 'retries' must be between 1 and 10.")),
        (hc(json!({"command": ["CMD", "true"], "startPeriod": -1})), Err("Invalid 'healthCheck' setting for container 'web'. 'startPeriod' must be between 0 and 300.")),
        (hc(json!({"command": ["CMD", "true"], "startPeriod": 301})), Err("Invalid 'healthCheck' setting for container 'web'. 'startPeriod' must be between 0 and 300.")),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn volumes_and_mounts() {
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (
            with(
                ec2(json!({"mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]})),
                json!({"volumes": [{"name": "data", "host": {"sourcePath": "/srv/data"}}]}),
            ),
            Ok(()),
        ),
        (
            ec2(json!({"mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]})),
            Err("Unknown volume 'data'."),
        ),
        (
            with(
                ec2(json!({})),
                json!({"volumes": [{"name": "data"}, {"name": "data"}]}),
            ),
            Err("Volume names must be unique within a Task Definition."),
        ),
        (
            with(ec2(json!({})), json!({"volumes": [{"host": {}}]})),
            Err("Volume.name should not be null or empty."),
        ),
        (
            with(ec2(json!({})), json!({"volumes": [{"name": "my data"}]})),
            Err("Volume.name contains invalid characters."),
        ),
        (
            ec2(json!({"volumesFrom": [{"sourceContainer": "other"}]})),
            Err("Unknown container 'other'."),
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "a", "image": "x", "memory": 64, "volumesFrom": [{"sourceContainer": "b", "readOnly": true}]},
                {"name": "b", "image": "y", "memory": 64}]}),
            Ok(()),
        ),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn task_level_settings_and_tags() {
    let cases: Vec<(Value, Result<(), &str>)> = vec![
        (with(ec2(json!({})), json!({"pidMode": "host", "ipcMode": "none"})), Ok(())),
        (
            with(ec2(json!({})), json!({"pidMode": "container"})),
            Err("Invalid value 'container' for pidMode. Valid values are: host, task."),
        ),
        (
            with(ec2(json!({})), json!({"ipcMode": "shareable"})),
            Err("Invalid value 'shareable' for ipcMode. Valid values are: host, task, none."),
        ),
        (
            with(ec2(json!({})), json!({"requiresCompatibilities": ["LAMBDA"]})),
            Err("Invalid value 'LAMBDA' for requiresCompatibilities. Valid values are: EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES."),
        ),
        (
            with(ec2(json!({})), json!({"tags": [{"key": "aws:owner", "value": "x"}]})),
            Err("Tag keys cannot begin with the reserved prefix 'aws:'."),
        ),
        (with(ec2(json!({})), json!({"tags": [{"key": "team", "value": "web"}]})), Ok(())),
        (
            with(ec2(json!({})), json!({"ephemeralStorage": {"sizeInGiB": 20}})),
            Err("Invalid 'ephemeralStorage' setting for task. sizeInGiB must be between 21 and 200."),
        ),
        (
            with(ec2(json!({})), json!({"proxyConfiguration": {"type": "APPMESH", "containerName": "envoy"}})),
            Err("Invalid 'proxyConfiguration' setting. Container 'envoy' does not exist in the task definition."),
        ),
        (
            ec2(json!({"logConfiguration": {"logDriver": "awsfirelens"}})),
            Err("The awsfirelens log driver requires a container with a firelensConfiguration in the task definition."),
        ),
        (
            ec2(json!({"logConfiguration": {"logDriver": "splunk2"}})),
            Err("Invalid value 'splunk2' for logConfiguration.logDriver. Valid values are: json-file, syslog, journald, gelf, fluentd, awslogs, splunk, awsfirelens."),
        ),
    ];
    for (fixture, expected) in cases {
        check(fixture, expected);
    }
}

#[test]
fn size_limit() {
    let big = "x".repeat(70_000);
    let fixture = ec2(json!({"environment": [{"name": "BIG", "value": big}]}));
    let input: RegisterTaskDefinitionInput = serde_json::from_value(fixture).unwrap();
    let problems = validate(&input).unwrap_err();
    let first = problems.first().unwrap();
    assert!(first.message.starts_with("Actual length: '"), "{first:?}");
    assert!(
        first
            .message
            .ends_with("Max allowed length is '65536' bytes."),
        "{first:?}"
    );
}

#[test]
fn problems_carry_their_exception_kind() {
    let input: RegisterTaskDefinitionInput = serde_json::from_value(with(
        ec2(json!({})),
        json!({"networkMode": "overlay", "family": ""}),
    ))
    .unwrap();
    let problems = validate(&input).unwrap_err();
    assert_eq!(problems.0[0].kind, ProblemKind::Client);
    assert_eq!(problems.0[1].kind, ProblemKind::InvalidParameter);
    assert_eq!(
        problems.0.len(),
        2,
        "every problem is reported: {problems:?}"
    );
}

fn built(fixture: Value) -> TaskDefinition {
    let input: RegisterTaskDefinitionInput = serde_json::from_value(fixture).unwrap();
    validate(&input).expect("valid fixture");
    build(
        &input,
        "arn:aws:ecs:us-east-1:123456789012:task-definition/x:1".into(),
        1,
        1.5,
        "root".into(),
    )
}

#[test]
fn build_fills_ecs_defaults_and_normalizes_sizes() {
    let definition = built(json!({
        "family": "app",
        "networkMode": "awsvpc",
        "cpu": "1 vCPU",
        "memory": "2 GB",
        "containerDefinitions": [{"name": "web", "image": "nginx", "portMappings": [{"containerPort": 80}]}],
    }));
    let value = serde_json::to_value(&definition).unwrap();
    assert_eq!(value["cpu"], "1024");
    assert_eq!(value["memory"], "2048");
    assert_eq!(value["status"], "ACTIVE");
    assert_eq!(value["revision"], 1);
    assert_eq!(value["registeredAt"], 1.5);
    assert_eq!(value["registeredBy"], "root");
    assert_eq!(value["volumes"], json!([]));
    assert_eq!(value["placementConstraints"], json!([]));
    assert_eq!(value["compatibilities"], json!(["EC2", "FARGATE"]));
    assert!(
        value.get("requiresCompatibilities").is_none(),
        "absent stays absent"
    );
    let container = &value["containerDefinitions"][0];
    assert_eq!(
        container,
        &json!({
            "name": "web", "image": "nginx", "cpu": 0, "essential": true,
            "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
            "environment": [], "mountPoints": [], "volumesFrom": [], "systemControls": [],
        })
    );
}

#[test]
fn compatibilities_follow_what_the_definition_supports() {
    let plain = built(ec2(json!({})));
    assert_eq!(plain.compatibilities, Some(vec!["EC2".to_string()]));
    let external = built(with(
        ec2(json!({})),
        json!({"requiresCompatibilities": ["EXTERNAL"]}),
    ));
    assert_eq!(
        external.compatibilities,
        Some(vec!["EC2".to_string(), "EXTERNAL".to_string()])
    );
    let fargate_only = built(fargate(json!([{"name": "app", "image": "x"}])));
    assert_eq!(
        fargate_only.compatibilities,
        Some(vec!["EC2".to_string(), "FARGATE".to_string()])
    );
}

#[test]
fn requires_attributes_reflect_features() {
    let definition = built(json!({
        "family": "app",
        "networkMode": "awsvpc",
        "taskRoleArn": "arn:aws:iam::123456789012:role/app",
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "containerDefinitions": [{
            "name": "web",
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1",
            "memory": 128,
            "healthCheck": {"command": ["CMD", "true"]},
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/app"}},
            "secrets": [{"name": "DB", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"}]
        }],
    }));
    let names: Vec<String> = definition
        .requires_attributes
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    for expected in [
        "com.amazonaws.ecs.capability.task-iam-role",
        "ecs.capability.task-eni",
        "com.amazonaws.ecs.capability.ecr-auth",
        "ecs.capability.execution-role-ecr-pull",
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "com.amazonaws.ecs.capability.docker-remote-api.1.18",
        "com.amazonaws.ecs.capability.docker-remote-api.1.19",
        "ecs.capability.execution-role-awslogs",
        "com.amazonaws.ecs.capability.docker-remote-api.1.24",
        "ecs.capability.container-health-check",
        "ecs.capability.secrets.asm.environment-variables",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing {expected} in {names:?}"
        );
    }
    let plain = built(ec2(json!({})));
    assert_eq!(plain.requires_attributes, None);
}

#[test]
fn every_member_survives_serde() {
    let fixture = json!({
        "taskDefinitionArn": "arn", "family": "f", "revision": 3, "status": "INACTIVE",
        "deleteRequestedAt": 3.0, "enableFaultInjection": true,
        "ephemeralStorage": {"sizeInGiB": 30},
        "trustedExecutionConfiguration": {"isolationMode": "SHARED"},
        "volumes": [{"name": "v", "s3filesVolumeConfiguration": {"fileSystemArn": "arn:fs"},
                     "fsxWindowsFileServerVolumeConfiguration": {"fileSystemId": "fs", "rootDirectory": "/",
                        "authorizationConfig": {"credentialsParameter": "p", "domain": "d"}}}],
    });
    let definition: TaskDefinition = serde_json::from_value(fixture.clone()).unwrap();
    assert_eq!(serde_json::to_value(&definition).unwrap(), fixture);
}

#[test]
fn references() {
    assert_eq!(
        parse_reference("web").unwrap(),
        TaskDefinitionReference::Family("web".into())
    );
    assert_eq!(
        parse_reference("web:3").unwrap(),
        TaskDefinitionReference::Revision {
            family: "web".into(),
            revision: 3
        }
    );
    assert_eq!(
        parse_reference("arn:aws:ecs:us-east-1:123456789012:task-definition/web:12").unwrap(),
        TaskDefinitionReference::Revision {
            family: "web".into(),
            revision: 12
        }
    );
    assert_eq!(
        parse_reference("arn:aws:ecs:us-east-1:123456789012:task-definition/web").unwrap(),
        TaskDefinitionReference::Family("web".into())
    );
    assert_eq!(
        parse_reference("web:latest").unwrap_err().message,
        "Invalid revision number. Number: latest"
    );
    assert!(parse_reference("arn:aws:ecs:us-east-1:123456789012:cluster/web").is_err());
}
