//! CloudWatch (`monitoring`): metrics and alarms, served in all three protocols a client may use:
//! JSON 1.0 (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`, what boto3 and the aws CLI
//! send), RPC v2 CBOR (`/service/GraniteServiceVersion20100801/operation/<Op>`, the AWS SDKs for
//! Rust and Go, so Terraform) and Query (form bodies with XML answers, older clients).
//!
//! Every request is decoded into one canonical value by the `protocol` codecs using the shapes
//! generated from the model (`shapes`), handled once per operation, and the output encoded back
//! in the request's protocol. Errors are one enum (`error::CloudWatchError`) mapped to the
//! model's shape names and legacy Query codes in one place.
//!
//! Metric samples live in the `metricstore`; alarms (definition, state, tags) and their history
//! live in the store under these keys:
//!
//! ```text
//! cloudwatch/alarm/<alarm name>                           AlarmRecord (JSON): definition,
//!                                                         state and tags of one metric alarm
//! cloudwatch/history/<alarm name>/<ms, 13 digits>-<id>    HistoryItem (JSON), kept 30 days
//! cloudwatch/token-key                                    random key of the pagination tokens
//! ```
//!
//! The alarm evaluator (`evaluator`) runs from `start_controllers`, level-triggered from the
//! store; `alarm_states` lets other subsystems (ECS deployment alarms) read alarm states.

pub mod alarms;
mod error;
mod evaluator;
mod input;
mod math;
mod metric_data;
mod metrics;
mod shapes;

use std::io::Read as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use bytes::Bytes;
use metricstore::MetricStore;
use protocol::pagination::TokenCodec;
use protocol::{cbor, json, query, xml, Request};
use serde_json::Value;
use store::clock::Clock;
use store::{Op, Store, Txn};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::error;

pub use alarms::alarm_states;

/// How long after a period ends the alarm evaluator first judges it, in seconds (late
/// datapoints, such as ECS's own metrics, arrive meanwhile); other controllers that wait for
/// alarms to have seen something (deployment bake time) add it.
pub const EVALUATION_DELAY_SECONDS: f64 = evaluator::EVALUATION_DELAY_MS as f64 / 1000.0;
pub use error::CloudWatchError;

use error::Result;

/// The JSON 1.0 target prefix and RPC v2 service name.
pub const TARGET_PREFIX: &str = "GraniteServiceVersion20100801";
/// The Query protocol's API version and XML namespace.
pub const API_VERSION: &str = "2010-08-01";
pub const XML_NAMESPACE: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";

/// The largest decompressed body accepted (PutMetricData's limit is 1 MB; this leaves room for
/// the other operations and refuses gzip bombs).
const MAX_DECODED_BODY: u64 = 2 * 1024 * 1024;

const TOKEN_KEY: &str = "cloudwatch/token-key";

/// Everything CloudWatch's handlers and controllers need.
pub struct CloudWatchContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<MetricStore>,
    pub region: String,
    pub account_id: String,
    /// Pagination tokens, keyed by a random key kept in the store (so tokens survive restarts
    /// and work across replicas); loaded on first use.
    tokens: tokio::sync::OnceCell<TokenCodec>,
}

impl CloudWatchContext {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<MetricStore>,
        region: &str,
        account_id: &str,
    ) -> CloudWatchContext {
        CloudWatchContext {
            store,
            clock,
            metrics,
            region: region.to_string(),
            account_id: account_id.to_string(),
            tokens: tokio::sync::OnceCell::new(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// `arn:aws:cloudwatch:<region>:<account>:alarm:<name>`.
    pub fn alarm_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{name}",
            self.region, self.account_id
        )
    }

    async fn token_codec(&self) -> Result<&TokenCodec> {
        self.tokens
            .get_or_try_init(|| async {
                use rand::RngCore as _;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                // Create the key if absent; whoever wins, everyone reads the stored one.
                let response = self
                    .store
                    .txn(Txn {
                        compares: vec![store::Compare {
                            key: TOKEN_KEY.to_string(),
                            target: store::CompareTarget::Version(0),
                            op: store::CompareOp::Equal,
                        }],
                        success: vec![Op::Put {
                            key: TOKEN_KEY.to_string(),
                            value: Bytes::copy_from_slice(&key),
                            lease: None,
                        }],
                        failure: vec![Op::Get {
                            key: TOKEN_KEY.to_string(),
                        }],
                    })
                    .await?;
                let stored = match response.responses.first() {
                    Some(store::OpResponse::Get { kv: Some(kv) }) => kv.value.to_vec(),
                    _ => key.to_vec(),
                };
                Ok::<_, CloudWatchError>(TokenCodec::new(&stored))
            })
            .await
    }

    /// A `NextToken` resuming `scope` at `position`.
    pub(crate) async fn encode_token(&self, scope: &str, position: &str) -> Result<String> {
        Ok(self.token_codec().await?.encode(scope, position))
    }

    /// The position in a `NextToken`, if this server issued it for `scope`.
    pub(crate) async fn decode_token(&self, scope: &str, token: &str) -> Result<String> {
        self.token_codec().await?.decode(scope, token).map_err(|_| {
            CloudWatchError::InvalidNextToken(
                "The service cannot process the provided next token.".into(),
            )
        }) // guessed
    }
}

/// Which wire protocol a request arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Json,
    Cbor,
    Query,
}

fn detect(request: &Request) -> Protocol {
    if request.header(cbor::PROTOCOL_HEADER).is_some() || cbor::parse_path(&request.path).is_some()
    {
        Protocol::Cbor
    } else if request.header("x-amz-target").is_some()
        || request
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-amz-json"))
    {
        Protocol::Json
    } else {
        Protocol::Query
    }
}

/// (input shape, output shape) of an operation Wharf serves.
fn operation(name: &str) -> Option<(&'static str, Option<&'static str>, Option<&'static str>)> {
    shapes::OPERATIONS
        .iter()
        .find(|(op, _, _)| *op == name)
        .map(|(op, input, output)| (*op, *input, *output))
}

/// The request body, gunzipped when the client compressed it (PutMetricData carries the
/// `requestCompression` trait: the SDKs gzip bodies above 10 KiB).
fn body(request: &Request) -> Result<Vec<u8>> {
    let gzip = request
        .header("content-encoding")
        .is_some_and(|e| e.split(',').any(|p| p.trim().eq_ignore_ascii_case("gzip")));
    if !gzip {
        return Ok(request.body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&request.body[..])
        .take(MAX_DECODED_BODY + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            CloudWatchError::Serialization(format!(
                "The gzip-encoded body could not be decompressed: {e}"
            ))
        })?;
    if out.len() as u64 > MAX_DECODED_BODY {
        return Err(CloudWatchError::RequestTooLarge(format!(
            "Request size {} exceeded {MAX_DECODED_BODY} bytes", // guessed
            out.len()
        )));
    }
    Ok(out)
}

/// Decode the request: (operation, output shape, canonical input).
fn decode(
    protocol: Protocol,
    request: &Request,
) -> Result<(&'static str, Option<&'static str>, Value)> {
    let unknown = |what: &str| CloudWatchError::UnknownOperation(what.to_string());
    let serialization = |e: protocol::shape::ShapeError| CloudWatchError::Serialization(e.0);
    match protocol {
        Protocol::Cbor => {
            let Some((service, op)) = cbor::parse_path(&request.path) else {
                return Err(unknown(&format!(
                    "RPC v2 CBOR requests are POST /service/{TARGET_PREFIX}/operation/<Operation>; got {}.",
                    request.path
                )));
            };
            let (op, input, output) = match operation(op) {
                Some(found) if service == TARGET_PREFIX => found,
                _ => return Err(unknown(&format!("Unknown operation {service}.{op}."))),
            };
            let body = body(request)?;
            let value = match input {
                Some(shape) => {
                    cbor::to_canonical(&shapes::SHAPES, shape, &body).map_err(serialization)?
                }
                None => Value::Object(Default::default()),
            };
            Ok((op, output, value))
        }
        Protocol::Json => {
            let Some(target) = request.header("x-amz-target") else {
                return Err(CloudWatchError::UnknownOperation(
                    json::missing_target().message,
                ));
            };
            let found = json::parse_target(target)
                .filter(|(prefix, _)| *prefix == TARGET_PREFIX)
                .and_then(|(_, op)| operation(op));
            let Some((op, input, output)) = found else {
                return Err(CloudWatchError::UnknownOperation(
                    json::unknown_operation(target).message,
                ));
            };
            let body = body(request)?;
            let value =
                json::parse_body(&body).map_err(|e| CloudWatchError::Serialization(e.message))?;
            let value = match input {
                Some(shape) => protocol::shape::normalize_json(&shapes::SHAPES, shape, value)
                    .map_err(serialization)?,
                None => Value::Object(Default::default()),
            };
            Ok((op, output, value))
        }
        Protocol::Query => {
            let form = if request.method == "GET" {
                request.query.as_bytes().to_vec()
            } else {
                body(request)?
            };
            let parsed = query::parse(&form);
            let Some(action) = parsed.action.as_deref() else {
                return Err(CloudWatchError::UnknownOperation(
                    "The request must contain the parameter Action.".into(), // guessed
                ));
            };
            let Some((op, input, output)) = operation(action) else {
                return Err(CloudWatchError::UnknownOperation(format!(
                    "Could not find operation {action} for version {}",
                    parsed.version.as_deref().unwrap_or(API_VERSION)
                )));
            };
            let value = match input {
                Some(shape) => query::to_canonical(&shapes::SHAPES, shape, &parsed.params)
                    .map_err(|e| CloudWatchError::InvalidParameterValue(e.0))?,
                None => Value::Object(Default::default()),
            };
            Ok((op, output, value))
        }
    }
}

/// Run one operation on its canonical input; `None` for operations without output.
async fn dispatch(ctx: &CloudWatchContext, operation: &str, input: Value) -> Result<Option<Value>> {
    let output = match operation {
        "PutMetricData" => {
            metrics::put_metric_data(ctx, &input).await?;
            return Ok(None);
        }
        "GetMetricStatistics" => metrics::get_metric_statistics(ctx, &input).await?,
        "ListMetrics" => metrics::list_metrics(ctx, &input).await?,
        "GetMetricData" => metric_data::get_metric_data(ctx, &input).await?,
        "PutMetricAlarm" => {
            alarms::put_metric_alarm(ctx, &input).await?;
            return Ok(None);
        }
        "DescribeAlarms" => alarms::describe_alarms(ctx, &input).await?,
        "DescribeAlarmsForMetric" => alarms::describe_alarms_for_metric(ctx, &input).await?,
        "DeleteAlarms" => {
            alarms::delete_alarms(ctx, &input).await?;
            return Ok(None);
        }
        "SetAlarmState" => {
            alarms::set_alarm_state(ctx, &input).await?;
            return Ok(None);
        }
        "DescribeAlarmHistory" => alarms::describe_alarm_history(ctx, &input).await?,
        "EnableAlarmActions" => {
            alarms::set_actions_enabled(ctx, &input, true).await?;
            return Ok(None);
        }
        "DisableAlarmActions" => {
            alarms::set_actions_enabled(ctx, &input, false).await?;
            return Ok(None);
        }
        "TagResource" => alarms::tag_resource(ctx, &input).await?,
        "UntagResource" => alarms::untag_resource(ctx, &input).await?,
        "ListTagsForResource" => alarms::list_tags_for_resource(ctx, &input).await?,
        other => {
            return Err(CloudWatchError::UnknownOperation(format!(
                "Unknown operation {other}."
            )))
        }
    };
    Ok(Some(output))
}

/// Answer one authenticated `monitoring` request, whichever protocol it came in.
pub async fn serve(ctx: &Arc<CloudWatchContext>, request: &Request) -> Response<Body> {
    let protocol = detect(request);
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = match decode(protocol, request) {
        Ok((op, output_shape, input)) => dispatch(ctx, op, input)
            .await
            .map(|output| (op, output_shape, output))
            .inspect_err(|e| {
                if matches!(e, CloudWatchError::Store(_) | CloudWatchError::Internal(_)) {
                    error!(operation = op, error = %e, "cloudwatch operation failed");
                }
            }),
        Err(e) => Err(e),
    };
    let mut response = match result {
        Ok((op, shape, output)) => success(protocol, op, shape, output, &request_id),
        Err(e) => failure(protocol, &e, &request_id),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    response
}

fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

fn success(
    protocol: Protocol,
    op: &str,
    shape: Option<&'static str>,
    output: Option<Value>,
    request_id: &str,
) -> Response<Body> {
    match protocol {
        Protocol::Json => {
            let body =
                serde_json::to_vec(&output.unwrap_or_else(|| Value::Object(Default::default())))
                    .unwrap_or_default();
            with_body(StatusCode::OK, json::CONTENT_TYPE_1_0, body)
        }
        Protocol::Cbor => {
            let body = match (shape, &output) {
                (Some(shape), Some(value)) => cbor::from_canonical(&shapes::SHAPES, shape, value),
                _ => Vec::new(),
            };
            let mut response = with_body(StatusCode::OK, cbor::CONTENT_TYPE, body);
            response.headers_mut().insert(
                cbor::PROTOCOL_HEADER,
                HeaderValue::from_static(cbor::PROTOCOL),
            );
            response
        }
        Protocol::Query => {
            let result = match (shape, &output) {
                (Some(shape), Some(value)) => Some((&shapes::SHAPES, shape, value)),
                _ => None,
            };
            let body = xml::response(op, XML_NAMESPACE, result, request_id);
            with_body(StatusCode::OK, xml::CONTENT_TYPE, body.into_bytes())
        }
    }
}

fn failure(protocol: Protocol, error: &CloudWatchError, request_id: &str) -> Response<Body> {
    let wire = error.to_wire();
    let status =
        StatusCode::from_u16(wire.error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let fault = match wire.error.fault {
        protocol::Fault::Sender => "Sender",
        protocol::Fault::Receiver => "Receiver",
    };
    let mut response = match protocol {
        Protocol::Json => with_body(
            status,
            json::CONTENT_TYPE_1_0,
            json::error_body(&wire.error),
        ),
        Protocol::Cbor => {
            let mut response = with_body(status, cbor::CONTENT_TYPE, cbor::error_body(&wire.error));
            response.headers_mut().insert(
                cbor::PROTOCOL_HEADER,
                HeaderValue::from_static(cbor::PROTOCOL),
            );
            response
        }
        Protocol::Query => {
            let body =
                xml::error_response(&wire.error, &wire.query_code, XML_NAMESPACE, request_id);
            return with_body(status, xml::CONTENT_TYPE, body.into_bytes());
        }
    };
    // JSON and CBOR carry the legacy Query code so awsQueryCompatible clients (boto3, the
    // SDKs) report `InvalidParameterValue`, not the shape name.
    if let Ok(value) = HeaderValue::from_str(&format!("{};{fault}", wire.query_code)) {
        response.headers_mut().insert("x-amzn-query-error", value);
    }
    if let Ok(value) = HeaderValue::from_str(&wire.error.code) {
        response.headers_mut().insert("x-amzn-ErrorType", value);
    }
    response
}

/// Start CloudWatch's controllers (the alarm evaluator, metric and history retention) on
/// `tasks`; they stop when `cancel` fires.
pub fn start_controllers(
    ctx: Arc<CloudWatchContext>,
    tasks: &mut JoinSet<()>,
    cancel: CancellationToken,
) {
    tasks.spawn(evaluator::run(ctx, cancel));
}
