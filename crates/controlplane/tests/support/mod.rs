//! Shared harness for the control plane's integration tests: an in-process server on an
//! ephemeral loopback port with an in-memory store, and real AWS SDK clients pointed at it.

#![allow(dead_code)]

use std::sync::Arc;

use aws_credential_types::Credentials as SdkCredentials;
use controlplane::{Credentials, Server, ServerConfig};
use store::clock::SystemClock;
use store::MemoryStore;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

pub struct TestServer {
    pub server: Server,
    /// The server's store, for tests that must arrange state no API can create yet.
    pub store: Arc<MemoryStore>,
    pub credentials: Credentials,
    pub ecs: aws_sdk_ecs::Client,
}

impl TestServer {
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// An ECS client signing with the given keys, against this server.
    pub async fn ecs_client_with(&self, access_key_id: &str, secret: &str) -> aws_sdk_ecs::Client {
        ecs_client(&self.endpoint(), access_key_id, secret).await
    }
}

pub async fn ecs_client(endpoint: &str, access_key_id: &str, secret: &str) -> aws_sdk_ecs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SdkCredentials::new(
            access_key_id,
            secret,
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_ecs::Client::new(&config)
}

/// Start a server on 127.0.0.1 with a fresh in-memory store.
pub async fn start() -> TestServer {
    start_with(Arc::new(SystemClock), Default::default()).await
}

/// Start a server with a chosen clock and instance-health settings.
pub async fn start_with(
    clock: Arc<dyn store::clock::Clock>,
    instance_health: controlplane::InstanceHealthSettings,
) -> TestServer {
    let store = Arc::new(MemoryStore::new(clock.clone()));
    start_on(store, clock, instance_health, Credentials::generate()).await
}

/// Start a server on an existing store (several servers may share one, as replicas do).
pub async fn start_on(
    store: Arc<MemoryStore>,
    clock: Arc<dyn store::clock::Clock>,
    instance_health: controlplane::InstanceHealthSettings,
    credentials: Credentials,
) -> TestServer {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        region: REGION.to_string(),
        account_id: ACCOUNT.to_string(),
        credentials: vec![credentials.clone()],
        instance_health,
        services: Default::default(),
        telemetry_dir: None,
        load_balancer_address_pool: controlplane::elbv2::DEFAULT_ADDRESS_POOL.to_string(),
    };
    let server = Server::start(config, store.clone(), clock)
        .await
        .expect("server starts");
    let ecs = ecs_client(
        &server.endpoint(),
        &credentials.access_key_id,
        &credentials.secret_access_key,
    )
    .await;
    TestServer {
        server,
        store,
        credentials,
        ecs,
    }
}

/// The `__type`-derived error code of an SDK error, e.g. `ClientException` (any service's:
/// the SDK crates share these error types).
pub fn error_code<E, R>(error: &aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<not a service error>")
        .to_string()
}

/// The message of an SDK service error.
pub fn error_message<E, R>(error: &aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or("")
        .to_string()
}

/// A raw HTTP response, for tests that look at the wire itself.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Send a request signed with SigV4 by the `aws-sigv4` crate (a client we did not write).
pub async fn signed_request(
    server: &TestServer,
    service: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    secret: Option<&str>,
) -> RawResponse {
    signed_request_at(
        server,
        service,
        headers,
        body,
        secret,
        std::time::SystemTime::now(),
    )
    .await
}

/// Call an operation of the agent service (`wharf`) and return its JSON answer.
pub async fn agent_call(
    server: &TestServer,
    operation: &str,
    input: serde_json::Value,
) -> RawResponse {
    let target = format!("{}.{operation}", model::agent::TARGET_PREFIX);
    let body = serde_json::to_vec(&input).expect("json");
    signed_request(
        server,
        model::agent::SIGNING_NAME,
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", &target),
        ],
        &body,
        None,
    )
    .await
}

/// Like `signed_request`, signed as of `time`.
pub async fn signed_request_at(
    server: &TestServer,
    service: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    secret: Option<&str>,
    time: std::time::SystemTime,
) -> RawResponse {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let identity = SdkCredentials::new(
        &server.credentials.access_key_id,
        secret.unwrap_or(&server.credentials.secret_access_key),
        None,
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let url = format!("{}/", server.endpoint());
    let host = server.server.local_addr().to_string();
    let mut all: Vec<(String, String)> = vec![("host".to_string(), host)];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let signable = SignableRequest::new(
        "POST",
        &url,
        all.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable request");
    let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
    let mut request = http::Request::builder().method("POST").uri(&url);
    for (k, v) in &all {
        request = request.header(k, v);
    }
    let mut request = request.body(()).expect("request");
    instructions.apply_to_request_http1x(&mut request);
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    raw_post(server, &headers, body).await
}

/// POST `/` over a plain TCP connection with exactly these headers.
pub async fn raw_post(
    server: &TestServer,
    headers: &[(String, String)],
    body: &[u8],
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.server.local_addr())
        .await
        .expect("connects");
    let mut head = String::from("POST / HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    stream
        .write_all(head.as_bytes())
        .await
        .expect("writes head");
    // A refused body may be answered before it is all sent; that is fine.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
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

/// A CloudWatch Logs client signing with the given keys, against `endpoint`.
pub async fn logs_client(
    endpoint: &str,
    access_key_id: &str,
    secret: &str,
) -> aws_sdk_cloudwatchlogs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SdkCredentials::new(
            access_key_id,
            secret,
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_cloudwatchlogs::Client::new(&config)
}

/// Start a server whose metric and log stores live in `dir` (a restart on the same `dir`
/// finds what the previous server stored).
pub async fn logs_start_in_dir(dir: &std::path::Path, credentials: Credentials) -> TestServer {
    let clock: Arc<dyn store::clock::Clock> = Arc::new(SystemClock);
    let store = Arc::new(MemoryStore::new(clock.clone()));
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        region: REGION.to_string(),
        account_id: ACCOUNT.to_string(),
        credentials: vec![credentials.clone()],
        instance_health: Default::default(),
        services: Default::default(),
        telemetry_dir: Some(dir.to_path_buf()),
        load_balancer_address_pool: controlplane::elbv2::DEFAULT_ADDRESS_POOL.to_string(),
    };
    let server = Server::start(config, store.clone(), clock)
        .await
        .expect("server starts");
    let ecs = ecs_client(
        &server.endpoint(),
        &credentials.access_key_id,
        &credentials.secret_access_key,
    )
    .await;
    TestServer {
        server,
        store,
        credentials,
        ecs,
    }
}

/// A CloudWatch client (RPC v2 CBOR, as the AWS SDK for Rust speaks it) against this server.
pub async fn cloudwatch_client(server: &TestServer) -> aws_sdk_cloudwatch::Client {
    cloudwatch_client_at(
        &server.endpoint(),
        &server.credentials.access_key_id,
        &server.credentials.secret_access_key,
    )
    .await
}

/// An `aws-sdk-cloudwatch` client (RPC v2 CBOR) for any endpoint and keys.
pub async fn cloudwatch_client_at(
    endpoint: &str,
    access_key_id: &str,
    secret: &str,
) -> aws_sdk_cloudwatch::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SdkCredentials::new(
            access_key_id,
            secret,
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_cloudwatch::Client::new(&config)
}

/// A signed EC2 Query request (`Action=…&Version=2016-11-15&…`, the form `form`).
pub async fn ec2_query(server: &TestServer, form: &str) -> RawResponse {
    signed_request(
        server,
        "ec2",
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        form.as_bytes(),
        None,
    )
    .await
}

/// An INTEGER resource for RegisterContainerInstance.
pub fn resource_integer(name: &str, value: i32) -> aws_sdk_ecs::types::Resource {
    aws_sdk_ecs::types::Resource::builder()
        .name(name)
        .r#type("INTEGER")
        .integer_value(value)
        .build()
}

/// Register a 2048-CPU / 4096-MiB instance in `cluster` and heartbeat for it, so tasks can be
/// placed there; its ARN.
pub async fn register_instance(server: &TestServer, cluster: &str) -> String {
    let identity = serde_json::json!({"instanceId": "i-0123456789abcdef0", "availabilityZone": "us-east-1a", "instanceType": "wharf.local"});
    let registered = server
        .ecs
        .register_container_instance()
        .cluster(cluster)
        .instance_identity_document(identity.to_string())
        .total_resources(resource_integer("CPU", 2048))
        .total_resources(resource_integer("MEMORY", 4096))
        .total_resources(
            aws_sdk_ecs::types::Resource::builder()
                .name("PORTS")
                .r#type("STRINGSET")
                .string_set_value("22")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = registered
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_string();
    let heartbeat = agent_call(
        server,
        "Heartbeat",
        serde_json::json!({"cluster": cluster, "containerInstanceArn": arn}),
    )
    .await;
    assert_eq!(heartbeat.status, 200, "{heartbeat:?}");
    arn
}

/// An ACM client (JSON 1.1, signing name `acm`) against this server.
pub async fn acm_client(server: &TestServer) -> aws_sdk_acm::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(server.endpoint())
        .credentials_provider(SdkCredentials::new(
            &server.credentials.access_key_id,
            &server.credentials.secret_access_key,
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_acm::Client::new(&config)
}
