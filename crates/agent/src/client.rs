//! The agent's client for the Wharf server: AWS JSON 1.1 over plain HTTP, SigV4-signed with the
//! `aws-sigv4` crate. It speaks three services on the one endpoint: ECS (`CreateCluster`,
//! `RegisterContainerInstance`), the agent protocol of [`model::agent`] (`Heartbeat`,
//! `PollTasks`, `ReportTaskState`, `ReportTaskStats`) and CloudWatch Logs (`CreateLogGroup`,
//! `CreateLogStream`, `PutLogEvents` for the awslogs driver), told apart by signing name and
//! target prefix.
//!
//! Errors keep the server's `__type` and `message`, and say whether a retry can help.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The ECS JSON target prefix.
const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// The CloudWatch Logs JSON target prefix.
const LOGS_TARGET_PREFIX: &str = "Logs_20140328";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Which service an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ecs,
    /// The agent protocol (`model::agent`).
    Agent,
    /// CloudWatch Logs, where awslogs containers' output goes.
    Logs,
    /// The load-balancer protocol (`model::elb`) a `wharf lb` data plane speaks.
    LoadBalancer,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Service::Ecs => "ecs",
            Service::Agent => model::agent::SIGNING_NAME,
            Service::Logs => "logs",
            Service::LoadBalancer => model::agent::SIGNING_NAME,
        }
    }

    fn target_prefix(self) -> &'static str {
        match self {
            Service::Ecs => ECS_TARGET_PREFIX,
            Service::Agent => model::agent::TARGET_PREFIX,
            Service::Logs => LOGS_TARGET_PREFIX,
            Service::LoadBalancer => model::elb::TARGET_PREFIX,
        }
    }
}

/// An access key pair the agent signs with.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for AgentCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("AgentCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot sign the {operation} request: {message}")]
    Signing { operation: String, message: String },
    #[error("cannot reach the server for {operation}: {message}")]
    Transport { operation: String, message: String },
    #[error("the server did not answer {operation} within {seconds} s")]
    Timeout { operation: String, seconds: u64 },
    /// An error answer: `__type` (without any `namespace#` prefix) and `message`.
    #[error("{operation} failed: {code}: {message}")]
    Api {
        operation: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot read the server's answer to {operation}: {message}")]
    Decode { operation: String, message: String },
}

impl ClientError {
    /// Whether trying the same request later may succeed: the server was unreachable, slow,
    /// throttling or failing; not when it refused the request itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::Timeout { .. } => true,
            ClientError::Api { status, code, .. } => {
                *status >= 500 || *status == 429 || code.contains("Throttl")
            }
            ClientError::InvalidUrl { .. }
            | ClientError::Signing { .. }
            | ClientError::Decode { .. } => false,
        }
    }

    /// The server's error code (`__type`), when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A signed JSON 1.1 client for one server.
#[derive(Clone)]
pub struct ServerClient {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port/`.
    url: String,
    authority: String,
    credentials: AgentCredentials,
    region: String,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerClient")
            .field("url", &self.url)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ServerClient {
    /// `server_url` is the endpoint, e.g. `http://127.0.0.1:4566` (plain HTTP).
    pub fn new(
        server_url: &str,
        credentials: AgentCredentials,
        region: &str,
    ) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: server_url.to_string(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = server_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(invalid(&format!(
                    "scheme {other} is not supported, use http"
                )))
            }
            None => return Err(invalid("it needs a scheme, e.g. http://127.0.0.1:4566")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("it has no host"))?
            .to_string();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http = Client::builder(TokioExecutor::new())
            // Keep-alive connections idle longer than the server keeps them fail on reuse;
            // a short idle timeout avoids most of those.
            .pool_idle_timeout(Duration::from_secs(20))
            .build(connector);
        Ok(Self {
            http,
            url: format!("http://{authority}/"),
            authority,
            credentials,
            region: region.to_string(),
        })
    }

    /// Calls `operation` of `service` with a JSON body, waiting at most `timeout`.
    pub async fn call<I, O>(
        &self,
        service: Service,
        operation: &str,
        input: &I,
        timeout: Duration,
    ) -> Result<O, ClientError>
    where
        I: serde::Serialize + ?Sized,
        O: serde::de::DeserializeOwned,
    {
        let body = serde_json::to_vec(input).map_err(|e| ClientError::Decode {
            operation: operation.to_string(),
            message: format!("cannot encode the request: {e}"),
        })?;
        let request = self.signed_request(service, operation, body)?;
        let answer = tokio::time::timeout(timeout, async {
            let response =
                self.http
                    .request(request)
                    .await
                    .map_err(|e| ClientError::Transport {
                        operation: operation.to_string(),
                        message: error_chain(&e),
                    })?;
            let status = response.status().as_u16();
            let error_type = response
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Transport {
                    operation: operation.to_string(),
                    message: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, ClientError>((status, error_type, bytes))
        })
        .await
        .map_err(|_| ClientError::Timeout {
            operation: operation.to_string(),
            seconds: timeout.as_secs(),
        })??;
        let (status, error_type, bytes) = answer;
        if !(200..300).contains(&status) {
            return Err(api_error(operation, status, error_type, &bytes));
        }
        // An empty body is an empty object (Heartbeat and ReportTaskState answer `{}`).
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            operation: operation.to_string(),
            message: e.to_string(),
        })
    }

    fn signed_request(
        &self,
        service: Service,
        operation: &str,
        body: Vec<u8>,
    ) -> Result<http::Request<Full<Bytes>>, ClientError> {
        let signing_error = |message: String| ClientError::Signing {
            operation: operation.to_string(),
            message,
        };
        let target = format!("{}.{operation}", service.target_prefix());
        let headers = [
            ("host", self.authority.as_str()),
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", target.as_str()),
        ];
        let identity = aws_credential_types::Credentials::new(
            &self.credentials.access_key_id,
            &self.credentials.secret_access_key,
            None,
            None,
            "wharf-agent",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service.signing_name())
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| signing_error(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &self.url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| signing_error(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| signing_error(e.to_string()))?
            .into_parts();
        let mut builder = http::Request::builder().method("POST").uri(&self.url);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let mut request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| signing_error(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

/// The error and its causes, so "connection refused" is not hidden behind "client error".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn api_error(operation: &str, status: u16, error_type: Option<String>, body: &[u8]) -> ClientError {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = parsed
        .get("__type")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or(error_type)
        .unwrap_or_else(|| format!("HTTP {status}"));
    // `__type` may be qualified: `com.amazonaws.ecs#ClientException`; header values may carry
    // `:http://…` after the code.
    let code = code
        .rsplit('#')
        .next()
        .unwrap_or(&code)
        .split(':')
        .next()
        .unwrap_or("")
        .to_string();
    let message = parsed
        .get("message")
        .or_else(|| parsed.get("Message"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    ClientError::Api {
        operation: operation.to_string(),
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_type_and_message() {
        let error = api_error(
            "RegisterContainerInstance",
            400,
            None,
            br#"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"Cluster not found."}"#,
        );
        assert_eq!(
            error,
            ClientError::Api {
                operation: "RegisterContainerInstance".into(),
                status: 400,
                code: "ClusterNotFoundException".into(),
                message: "Cluster not found.".into(),
            }
        );
        assert!(!error.is_retryable());
        let error = api_error(
            "PollTasks",
            503,
            Some("ServerException:http://x".into()),
            b"oops",
        );
        assert!(matches!(&error, ClientError::Api { code, .. } if code == "ServerException"));
        assert!(error.is_retryable());
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        let credentials = AgentCredentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "secret".into(),
        };
        assert!(
            ServerClient::new("http://127.0.0.1:4566", credentials.clone(), "us-east-1").is_ok()
        );
        assert!(ServerClient::new("https://example", credentials.clone(), "us-east-1").is_err());
        assert!(ServerClient::new("127.0.0.1:4566", credentials, "us-east-1").is_err());
        let printed = format!(
            "{:?}",
            AgentCredentials {
                access_key_id: "AKIA".into(),
                secret_access_key: "hidden-secret".into()
            }
        );
        assert!(!printed.contains("hidden-secret"));
    }
}
