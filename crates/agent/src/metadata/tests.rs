//! The endpoint end to end on the fake engine: a task engine gives its containers the URIs,
//! the listeners (on loopback: the fake's bridge gateway) answer the four paths, unknown
//! tokens and paths answer 404, and a restarted agent serves re-adopted containers on the
//! same address.

use std::sync::Arc;
use std::time::Duration;

use model::agent::AgentTask;
use model::ecs::task::Task;
use model::ecs::task_definition::{ContainerDefinition, TaskDefinition};
use serde_json::Value;
use store::clock::SystemClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::runner::{EngineConfig, TaskEngine};
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{ContainerRuntime, ContainerStats};
use crate::testing::RecordingSink;

const INSTANCE: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/meta";
const TASK_ARN: &str =
    "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef";
const IMAGE: &str = "img:1";

fn server(fake: &FakeRuntime) -> MetadataServer {
    MetadataServer::new(
        MetadataConfig::new("default", "us-east-1a"),
        Arc::new(fake.clone()),
        CancellationToken::new(),
    )
}

fn engine(fake: &FakeRuntime, metadata: &MetadataServer) -> (TaskEngine, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let config = EngineConfig {
        metadata: Some(metadata.clone()),
        ..EngineConfig::new("default", INSTANCE)
    };
    let engine = TaskEngine::start(
        config,
        Arc::new(fake.clone()),
        Arc::new(SystemClock),
        sink.clone(),
        CancellationToken::new(),
    );
    (engine, sink)
}

fn agent_task(network_mode: &str) -> AgentTask {
    AgentTask {
        task: Task {
            task_arn: Some(TASK_ARN.into()),
            desired_status: Some("RUNNING".into()),
            ..Default::default()
        },
        task_definition: TaskDefinition {
            family: Some("meta".into()),
            revision: Some(2),
            network_mode: Some(network_mode.into()),
            container_definitions: Some(vec![
                ContainerDefinition {
                    name: Some("app".into()),
                    image: Some(IMAGE.into()),
                    memory: Some(64),
                    environment: Some(vec![model::ecs::KeyValuePair {
                        name: Some(URI_V4_ENV.into()),
                        value: Some("forged".into()),
                    }]),
                    ..Default::default()
                },
                ContainerDefinition {
                    name: Some("sidecar".into()),
                    image: Some(IMAGE.into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        },
        network: None,
    }
}

/// GET over a fresh connection: (status, body).
async fn get(uri: &str) -> (u16, String) {
    let rest = uri.strip_prefix("http://").expect("an http URI");
    let (address, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("reads");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn get_json(uri: &str) -> Value {
    let (status, body) = get(uri).await;
    assert_eq!(status, 200, "{uri}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"))
}

fn env_value(fake: &FakeRuntime, id: &str, name: &str) -> Option<String> {
    let container = fake.container(id)?;
    container
        .spec
        .env
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .next_back()
}

async fn wait_running(sink: &RecordingSink) {
    sink.wait_for(TASK_ARN, Duration::from_secs(10), |r| {
        r.last_status == "RUNNING"
    })
    .await;
}

#[tokio::test]
async fn containers_get_uris_that_serve_their_documents() {
    let fake = FakeRuntime::new();
    fake.add_image(IMAGE);
    let metadata = server(&fake);
    let (engine, sink) = engine(&fake, &metadata);
    engine.apply(vec![agent_task("bridge")]);
    wait_running(&sink).await;

    let app = fake.find(TASK_ARN, "app").expect("app exists");
    let sidecar = fake.find(TASK_ARN, "sidecar").expect("sidecar exists");
    fake.set_stats(
        &app,
        ContainerStats {
            cpu_total_nanos: 5_000,
            memory_bytes: 1 << 20,
            memory_limit_bytes: 64 << 20,
        },
    );
    let uri = env_value(&fake, &app, URI_V4_ENV).expect("the v4 variable");
    let entries = fake
        .container(&app)
        .expect("exists")
        .spec
        .env
        .iter()
        .filter(|e| e.starts_with(&format!("{URI_V4_ENV}=")))
        .count();
    assert_eq!(entries, 1, "the agent's value replaces the definition's");
    let token = fake.container(&app).expect("exists").spec.labels[labels::METADATA_TOKEN].clone();
    assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");
    assert!(uri.ends_with(&format!("/v4/{token}")), "{uri}");
    let v3 = env_value(&fake, &app, URI_V3_ENV).expect("the v3 variable");
    assert_eq!(v3, uri.replace("/v4/", "/v3/"));
    let sidecar_uri = env_value(&fake, &sidecar, URI_V4_ENV).expect("the sidecar's");
    assert_ne!(sidecar_uri, uri, "one token per container");
    assert_eq!(
        sidecar_uri.split("/v4/").next(),
        uri.split("/v4/").next(),
        "one listener per gateway"
    );

    let container = get_json(&uri).await;
    assert_eq!(container["DockerId"], app.as_str());
    assert_eq!(container["Name"], "app");
    assert_eq!(container["KnownStatus"], "RUNNING");
    assert_eq!(container["Limits"]["Memory"], 64);
    assert_eq!(container["Networks"][0]["NetworkMode"], "bridge");
    assert!(container["Labels"].get(labels::METADATA_TOKEN).is_none());

    let task = get_json(&format!("{uri}/task")).await;
    assert_eq!(task["TaskARN"], TASK_ARN);
    assert_eq!(task["Family"], "meta");
    assert_eq!(task["Revision"], "2");
    assert_eq!(task["KnownStatus"], "RUNNING");
    let names: Vec<&str> = task["Containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["Name"].as_str())
        .collect();
    assert_eq!(names, vec!["app", "sidecar"]);
    assert_eq!(get_json(&v3).await["DockerId"], app.as_str());

    let stats = get_json(&format!("{uri}/stats")).await;
    assert_eq!(stats["cpu_stats"]["cpu_usage"]["total_usage"], 5_000);
    assert_eq!(stats["memory_stats"]["usage"], 1 << 20);
    let task_stats = get_json(&format!("{uri}/task/stats")).await;
    assert_eq!(task_stats[&app]["memory_stats"]["limit"], 64 << 20);
    assert!(task_stats[&sidecar].is_object());

    // A stopped sidecar maps to null in the task's stats.
    fake.exit(&sidecar, 0);
    let task_stats = get_json(&format!("{uri}/task/stats")).await;
    assert!(task_stats[&sidecar].is_null(), "{task_stats}");

    let base = uri.split("/v4/").next().expect("a base").to_string();
    let (status, body) = get(&format!("{base}/v4/nope/task")).await;
    assert_eq!(status, 404);
    let message: String = serde_json::from_str(&body).expect("a JSON string");
    assert!(
        message.starts_with("V4 task metadata handler: "),
        "{message}"
    );
    assert_eq!(get(&format!("{base}/v4/nope")).await.0, 404);
    assert_eq!(get(&format!("{base}/v4/nope/stats")).await.0, 404);
    assert_eq!(get(&format!("{uri}/elsewhere")).await.0, 404);
    assert_eq!(get(&format!("{base}/")).await.0, 404);

    engine.shutdown().await;
    metadata.shutdown().await;
    assert!(matches!(
        metadata.uri_for(IpAddr::V4(Ipv4Addr::LOCALHOST), "t"),
        Err(MetadataError::ShutDown)
    ));
}

#[tokio::test]
async fn host_mode_uses_loopback_and_none_mode_gets_nothing() {
    let fake = FakeRuntime::new();
    fake.add_image(IMAGE);
    // A bridge gateway that is not on this host: host mode must not need it.
    fake.set_network_gateway("bridge", "192.0.2.254".parse().expect("an address"));
    let metadata = server(&fake);
    let (engine, sink) = engine(&fake, &metadata);
    engine.apply(vec![agent_task("host")]);
    wait_running(&sink).await;
    let app = fake.find(TASK_ARN, "app").expect("app exists");
    let uri = env_value(&fake, &app, URI_V4_ENV).expect("the v4 variable");
    assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");
    assert_eq!(
        get_json(&uri).await["Networks"],
        serde_json::json!([{"NetworkMode": "host"}])
    );
    engine.shutdown().await;

    let fake = FakeRuntime::new();
    fake.add_image(IMAGE);
    let (engine, sink) = self::engine(&fake, &metadata);
    let mut task = agent_task("none");
    task.task.task_arn = Some(format!("{TASK_ARN}0"));
    engine.apply(vec![task]);
    sink.wait_for(&format!("{TASK_ARN}0"), Duration::from_secs(10), |r| {
        r.last_status == "RUNNING"
    })
    .await;
    let app = fake
        .find(&format!("{TASK_ARN}0"), "app")
        .expect("app exists");
    assert_eq!(
        env_value(&fake, &app, URI_V4_ENV).as_deref(),
        Some("forged")
    );
    engine.shutdown().await;
    metadata.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_gateway_creates_the_container_without_the_endpoint() {
    let fake = FakeRuntime::new();
    fake.add_image(IMAGE);
    // TEST-NET-1: no interface of this host has it, so it cannot be bound.
    fake.set_network_gateway("bridge", "192.0.2.254".parse().expect("an address"));
    let metadata = server(&fake);
    let (engine, sink) = engine(&fake, &metadata);
    engine.apply(vec![agent_task("bridge")]);
    wait_running(&sink).await;
    let app = fake.find(TASK_ARN, "app").expect("app exists");
    assert_eq!(
        env_value(&fake, &app, URI_V4_ENV).as_deref(),
        Some("forged")
    );
    assert!(metadata.addresses().is_empty());
    engine.shutdown().await;
    metadata.shutdown().await;
}

#[tokio::test]
async fn listeners_share_one_port_and_never_bind_the_unspecified_address() {
    let fake = FakeRuntime::new();
    let metadata = server(&fake);
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let first = metadata.uri_for(loopback, "a").expect("binds");
    let second = metadata.uri_for(loopback, "b").expect("reuses");
    assert_eq!(
        first.trim_end_matches("/v4/a"),
        second.trim_end_matches("/v4/b")
    );
    assert_eq!(metadata.addresses().len(), 1);
    let port = metadata.addresses()[0].port();
    // Another loopback address tries the same port first.
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    if let Ok(address) = metadata.listen_on(other) {
        assert_eq!(address.port(), port);
    }
    assert!(matches!(
        metadata.uri_for(IpAddr::V4(Ipv4Addr::UNSPECIFIED), "c"),
        Err(MetadataError::Unspecified(_))
    ));
    assert!(matches!(
        metadata.listen_at(SocketAddr::new("::".parse().expect("an address"), port)),
        Err(MetadataError::Unspecified(_))
    ));
    metadata.shutdown().await;
}

#[tokio::test]
async fn a_restarted_agent_serves_readopted_containers_on_their_address() {
    let fake = FakeRuntime::new();
    fake.add_image(IMAGE);
    let first = server(&fake);
    let (engine, sink) = engine(&fake, &first);
    engine.apply(vec![agent_task("bridge")]);
    wait_running(&sink).await;
    let app = fake.find(TASK_ARN, "app").expect("app exists");
    let uri = env_value(&fake, &app, URI_V4_ENV).expect("the v4 variable");
    engine.shutdown().await;
    first.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(first.addresses()[0])
            .await
            .is_err(),
        "the old process's listener is gone"
    );

    // A new process: a new server, an engine that re-adopts before the server answers.
    let second = server(&fake);
    let (engine, sink) = self::engine(&fake, &second);
    assert_eq!(engine.adopt().await.expect("adopts"), 1);
    engine.apply(vec![agent_task("bridge")]);
    wait_running(&sink).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if second.registry().tokens() == 2 && second.registry().task(TASK_ARN).is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never re-registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(second.addresses(), first.addresses());
    let container = get_json(&uri).await;
    assert_eq!(container["DockerId"], app.as_str());
    assert_eq!(fake.container(&app).expect("exists").start_count, 1);
    engine.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn bridge_gateway_is_asked_once_and_errors_are_not_cached() {
    let fake = FakeRuntime::new();
    let metadata = MetadataServer::new(
        MetadataConfig {
            bridge_network: "custom".into(),
            ..MetadataConfig::new("default", "us-east-1a")
        },
        Arc::new(fake.clone()),
        CancellationToken::new(),
    );
    assert!(matches!(
        metadata.bridge_gateway().await,
        Err(MetadataError::Gateway { .. })
    ));
    fake.set_network_gateway("custom", "127.0.0.1".parse().expect("an address"));
    assert_eq!(
        metadata.bridge_gateway().await.expect("found"),
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    );
    assert!(fake.network_gateway("elsewhere").await.is_err());
    metadata.shutdown().await;
}
