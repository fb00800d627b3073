//! `GET /metrics` against an in-process server: the state gauges follow what the ECS API
//! created, requests and store commits are counted, and the whole exposition parses with the
//! Python reference parser (`prometheus_client`, from the test virtual environment that
//! `scripts/e2e-venv` prepares; skipped with a note when `WHARF_E2E_VENV` is not set).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{ContainerDefinition, Resource};
use serde_json::json;
use support::{RawResponse, TestServer};

/// GET a path over a plain TCP connection (no signature: /metrics needs none).
async fn get(server: &TestServer, path: &str, accept: Option<&str>) -> RawResponse {
    request(server, "GET", path, accept).await
}

/// An unsigned request with an empty body.
async fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.server.local_addr())
        .await
        .expect("connects");
    let accept = accept
        .map(|a| format!("accept: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: wharf\r\n{accept}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("writes");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("reads");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The series of one sample name: (labels, value).
type Series = Vec<(BTreeMap<String, String>, f64)>;

/// Samples of the exposition by name.
fn samples(text: &str) -> BTreeMap<String, Series> {
    let mut all: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        let value = match value {
            "+Inf" => f64::INFINITY,
            value => value.parse().expect("a number"),
        };
        all.entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    all
}

/// The value of the one series of `name` with (at least) these labels, 0 when absent.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(have, _)| {
            labels
                .iter()
                .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .sum()
}

fn resource(name: &str, value: i32) -> Resource {
    Resource::builder()
        .name(name)
        .r#type("INTEGER")
        .integer_value(value)
        .build()
}

async fn register_instance(server: &TestServer, cluster: &str, connect: bool) {
    let registered = server
        .ecs
        .register_container_instance()
        .cluster(cluster)
        .instance_identity_document(
            json!({"instanceId": "i-0123456789abcdef0", "availabilityZone": "us-east-1a"})
                .to_string(),
        )
        .total_resources(resource("CPU", 4096))
        .total_resources(resource("MEMORY", 8192))
        .send()
        .await
        .expect("registers");
    let arn = registered
        .container_instance()
        .and_then(|i| i.container_instance_arn())
        .expect("an ARN")
        .to_string();
    if connect {
        let heartbeat = support::agent_call(
            server,
            "Heartbeat",
            json!({"cluster": cluster, "containerInstanceArn": arn}),
        )
        .await;
        assert_eq!(heartbeat.status, 200, "{heartbeat:?}");
    }
}

/// Scrape until `check` holds (the state gauges are cached for a second and the service
/// scheduler works in the background), or fail with the last exposition.
async fn scrape_until(server: &TestServer, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = get(server, "/metrics", None).await;
        assert_eq!(response.status, 200, "{}", response.body);
        if check(&response.body) {
            return response.body;
        }
        if Instant::now() > deadline {
            panic!("/metrics never showed {what}:\n{}", response.body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_store_and_the_requests() {
    let server = support::start().await;
    let ecs = &server.ecs;
    for name in ["prod", "dev"] {
        ecs.create_cluster()
            .cluster_name(name)
            .send()
            .await
            .unwrap();
    }
    ecs.register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("wharf-test/busybox:latest")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .unwrap();
    register_instance(&server, "prod", true).await;
    register_instance(&server, "dev", false).await;
    let ran = ecs
        .run_task()
        .cluster("prod")
        .task_definition("web")
        .count(2)
        .send()
        .await
        .unwrap();
    assert_eq!(ran.tasks().len(), 2, "{ran:?}");
    ecs.stop_task()
        .cluster("prod")
        .task(ran.tasks()[0].task_arn().unwrap())
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster("prod")
        .service_name("api")
        .task_definition("web")
        .desired_count(3)
        .send()
        .await
        .unwrap();
    // A request for an operation that does not exist is counted, under `unknown`.
    let unknown = support::signed_request(
        &server,
        "ecs",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            (
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.NoSuchThing",
            ),
        ],
        b"{}",
        None,
    )
    .await;
    assert_eq!(unknown.status, 400);

    let text = scrape_until(&server, "the service's three pending tasks", |text| {
        value(
            text,
            "wharf_service_pending_tasks",
            &[("cluster", "prod"), ("service", "api")],
        ) == 3.0
    })
    .await;
    let metrics = get(&server, "/metrics", None).await;
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );

    // State gauges.
    assert_eq!(value(&text, "wharf_clusters", &[("status", "ACTIVE")]), 2.0);
    assert_eq!(
        value(
            &text,
            "wharf_services",
            &[("cluster", "prod"), ("status", "ACTIVE")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_service_desired_tasks",
            &[("cluster", "prod"), ("service", "api")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_service_running_tasks",
            &[("cluster", "prod"), ("service", "api")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_deployments",
            &[("cluster", "prod"), ("rollout_state", "IN_PROGRESS")]
        ),
        1.0
    );
    // 1 RunTask task still running, 3 of the service, and the stopped one.
    assert_eq!(
        value(
            &text,
            "wharf_tasks",
            &[
                ("cluster", "prod"),
                ("last_status", "PROVISIONING"),
                ("desired_status", "RUNNING")
            ]
        ),
        4.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_tasks",
            &[("cluster", "prod"), ("desired_status", "STOPPED")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_container_instances",
            &[
                ("cluster", "prod"),
                ("status", "ACTIVE"),
                ("agent_connected", "true")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_container_instances",
            &[
                ("cluster", "dev"),
                ("status", "ACTIVE"),
                ("agent_connected", "false")
            ]
        ),
        1.0
    );
    assert!(value(&text, "wharf_store_revision", &[]) > 0.0);

    // Request metrics.
    assert_eq!(
        value(
            &text,
            "wharf_api_requests_total",
            &[
                ("service", "ecs"),
                ("operation", "CreateCluster"),
                ("status", "200")
            ]
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_api_requests_total",
            &[("service", "wharf"), ("operation", "Heartbeat")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_api_requests_total",
            &[
                ("service", "ecs"),
                ("operation", "unknown"),
                ("status", "400")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_api_request_duration_seconds_count",
            &[("service", "ecs"), ("operation", "RunTask")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "wharf_api_request_duration_seconds_bucket",
            &[("service", "ecs"), ("operation", "RunTask"), ("le", "+Inf")]
        ),
        1.0
    );
    // Every acknowledged write was a timed commit.
    assert!(
        value(
            &text,
            "wharf_store_commit_duration_seconds_count",
            &[("result", "succeeded")]
        ) >= 8.0,
        "{text}"
    );
    assert!(value(&text, "wharf_process_start_time_seconds", &[]) > 1.0e9);
    if cfg!(target_os = "linux") {
        assert!(value(&text, "wharf_process_resident_memory_bytes", &[]) > 0.0);
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("wharf_"), "{line}");
    }

    // OpenMetrics for scrapers that ask for it.
    let openmetrics = get(
        &server,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert_eq!(
        openmetrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(openmetrics.body.ends_with("# EOF\n"));
    assert!(openmetrics
        .body
        .contains("# TYPE wharf_api_requests counter\n"));
    assert!(text.contains("# TYPE wharf_api_requests_total counter\n"));

    // Other methods on /metrics are AWS requests like any other path: this one is unsigned.
    let post = request(&server, "POST", "/metrics", None).await;
    assert_eq!(
        post.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException"),
        "{post:?}"
    );

    reference_parser(&text, &openmetrics.body);
    server.server.shutdown().await;
}

/// Parse both expositions with the Python client's parsers and check every family is typed,
/// documented and named `wharf_*`.
fn reference_parser(prometheus_text: &str, openmetrics_text: &str) {
    let Some(venv) = std::env::var_os("WHARF_E2E_VENV") else {
        eprintln!("note: WHARF_E2E_VENV is not set; skipping the Python reference parser");
        return;
    };
    let python = std::path::Path::new(&venv).join("bin/python");
    let dir = tempfile::tempdir().unwrap();
    let prometheus_path = dir.path().join("prometheus.txt");
    let openmetrics_path = dir.path().join("openmetrics.txt");
    std::fs::write(&prometheus_path, prometheus_text).unwrap();
    std::fs::write(&openmetrics_path, openmetrics_text).unwrap();
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
families = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert family.type != "unknown", "untyped family " + family.name
    assert family.documentation, "no HELP for " + family.name
    assert family.name.startswith("wharf_"), family.name
    families[family.name] = [family.type, len(family.samples)]
strict = {f.name: f.type for f in openmetrics(open(sys.argv[2]).read())}
for name, (kind, _) in families.items():
    assert strict.get(name) == kind, (name, kind, strict.get(name))
print(json.dumps(families))
"#;
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&prometheus_path)
        .arg(&openmetrics_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "the reference parser refused the exposition: {}\n{prometheus_text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let families: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(families["wharf_api_requests"][0], "counter", "{families}");
    assert_eq!(families["wharf_clusters"][0], "gauge");
    assert_eq!(
        families["wharf_store_commit_duration_seconds"][0],
        "histogram"
    );
    assert_eq!(families["wharf_tasks"][0], "gauge");
    if cfg!(target_os = "linux") {
        assert_eq!(families["wharf_process_cpu_seconds"][0], "counter");
    }
}

/// Requests refused before their service recognised an operation (bad or missing signature,
/// unparsable body, unknown Query action) are counted under `unknown`: the names clients wrote
/// in them never become series, so a client that cannot even sign cannot fill the operation
/// slots and push real operations into `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_do_not_create_operation_series() {
    let server = support::start().await;
    let host = server.server.local_addr().to_string();
    for i in 0..20 {
        let target = format!("AmazonEC2ContainerServiceV20141113.Forged{i}");
        // Claims the ecs scope with a made-up key and signature.
        let forged = support::raw_post(
            &server,
            &[
                ("host".to_string(), host.clone()),
                (
                    "authorization".to_string(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential=AKIDFORGED{i}/20250101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature={}",
                        "0".repeat(64)
                    ),
                ),
                (
                    "content-type".to_string(),
                    "application/x-amz-json-1.1".to_string(),
                ),
                ("x-amz-target".to_string(), target.clone()),
            ],
            b"{}",
        )
        .await;
        assert_eq!(forged.status / 100, 4, "{forged:?}");
        // A known key with the wrong secret.
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let wrong = support::signed_request(&server, "ecs", &headers, b"{}", Some("wrong")).await;
        assert_eq!(
            wrong.header("x-amzn-errortype"),
            Some("InvalidSignatureException"),
            "{wrong:?}"
        );
        // Properly signed, but the body is not JSON.
        let garbled = support::signed_request(&server, "ecs", &headers, b"{not json", None).await;
        assert_eq!(garbled.status, 400, "{garbled:?}");
        // A Query action CloudWatch does not have: the code is only in the XML body.
        let query = support::signed_request(
            &server,
            "monitoring",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("Action=Forged{i}&Version=2010-08-01").as_bytes(),
            None,
        )
        .await;
        assert_eq!(query.status, 400, "{query:?}");
        assert!(
            query.body.contains("<Code>InvalidAction</Code>"),
            "{query:?}"
        );
    }
    // A real Query action is still counted by name, and so is a real one that fails.
    let listed = support::signed_request(
        &server,
        "monitoring",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"Action=ListMetrics&Version=2010-08-01",
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let invalid = support::signed_request(
        &server,
        "monitoring",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"Action=GetMetricStatistics&Version=2010-08-01",
        None,
    )
    .await;
    assert_eq!(invalid.status, 400, "{invalid:?}");

    let text = get(&server, "/metrics", None).await.body;
    let operations: std::collections::BTreeSet<String> = samples(&text)
        .get("wharf_api_requests_total")
        .into_iter()
        .flatten()
        .filter_map(|(labels, _)| labels.get("operation").cloned())
        .collect();
    assert_eq!(
        operations,
        ["GetMetricStatistics", "ListMetrics", "unknown"]
            .map(String::from)
            .into(),
        "{text}"
    );
    // 20 forged + 20 wrong secret + 20 garbled for ecs; 20 unknown actions for monitoring.
    assert_eq!(
        value(
            &text,
            "wharf_api_requests_total",
            &[("service", "ecs"), ("operation", "unknown")]
        ),
        60.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "wharf_api_requests_total",
            &[("service", "monitoring"), ("operation", "unknown")]
        ),
        20.0,
        "{text}"
    );
    server.server.shutdown().await;
}
