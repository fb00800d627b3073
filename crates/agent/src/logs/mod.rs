//! The `awslogs` log driver, done by the agent instead of the engine: a container whose
//! `logConfiguration.logDriver` is `awslogs` runs with Docker's `json-file` driver (a local
//! buffer that outlives agent restarts, and keeps `docker logs` working), and a [`Shipper`]
//! follows its stdout and stderr and sends every line to CloudWatch Logs with `PutLogEvents`
//! through a [`LogSink`] (the server, [`ServerClient`]).
//!
//! - [`LogDestination`]: the group and stream, from the container's options (and, for an agent
//!   restarted after the server forgot the task, from the container's labels);
//! - [`batch`]: entries → lines → events → batches within PutLogEvents' limits (pure);
//! - [`checkpoint`]: how far a container's log was shipped, and the batch being delivered,
//!   persisted before and after every delivery;
//! - [`shipper`]: the loop per container.
//!
//! Nothing is lost across an agent restart: the lines stay in the engine's file and the
//! checkpoint (a `since` for the engine and how many of the entries it then returns were
//! shipped: a position in the file, as the engine's timestamps are not in file order) says
//! where to resume. Nothing is sent twice either: a batch in flight when the agent stopped is
//! looked for at the end of its stream before it is sent again.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::client::{ClientError, ServerClient, Service};
use crate::labels;

pub mod batch;
pub mod checkpoint;
pub mod shipper;

pub use batch::LogEvent;
pub use checkpoint::{Checkpoint, CheckpointStore};
pub use shipper::{Shipper, ShipperExit};

/// The ECS name of the driver the agent implements.
pub const AWSLOGS_DRIVER: &str = "awslogs";
/// The engine driver awslogs containers run with.
pub const LOCAL_DRIVER: &str = "json-file";

const LOGS_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where one container's lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDestination {
    pub group: String,
    /// `None`: the stream is named after the engine's container id, as AWS names it on EC2
    /// when there is no `awslogs-stream-prefix`.
    pub stream: Option<String>,
    /// Create the group if it does not exist (`awslogs-create-group`).
    pub create_group: bool,
}

/// Why a container's awslogs options cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogOptionError {
    #[error("the awslogs log driver needs the awslogs-group option")]
    MissingGroup,
    #[error("awslogs-create-group must be true or false, not {0:?}")]
    InvalidBool(String),
    /// An option the agent does not implement; refused rather than silently ignored.
    #[error("{0}")]
    Unsupported(String),
}

/// Docker's boolean spellings (Go's `strconv.ParseBool`).
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl LogDestination {
    /// The destination of container `container_name` of task `task_id` from its awslogs
    /// `options`: the stream is `<awslogs-stream-prefix>/<container name>/<task id>`, else
    /// `awslogs-stream` if given, else the container id. `awslogs-region` and
    /// `awslogs-endpoint` are ignored (everything goes to the Wharf endpoint), as are the
    /// driver's delivery tuning options (`mode`, `max-buffer-size`, …).
    pub fn from_options(
        options: &BTreeMap<String, String>,
        container_name: &str,
        task_id: &str,
    ) -> Result<Self, LogOptionError> {
        for option in ["awslogs-datetime-format", "awslogs-multiline-pattern"] {
            if options.contains_key(option) {
                return Err(LogOptionError::Unsupported(option.to_string()));
            }
        }
        let group = options
            .get("awslogs-group")
            .filter(|g| !g.is_empty())
            .ok_or(LogOptionError::MissingGroup)?
            .clone();
        let create_group = match options.get("awslogs-create-group") {
            None => false,
            Some(text) => {
                parse_bool(text).ok_or_else(|| LogOptionError::InvalidBool(text.clone()))?
            }
        };
        let stream = match options
            .get("awslogs-stream-prefix")
            .filter(|p| !p.is_empty())
        {
            Some(prefix) => Some(format!("{prefix}/{container_name}/{task_id}")),
            None => options
                .get("awslogs-stream")
                .filter(|s| !s.is_empty())
                .cloned(),
        };
        Ok(Self {
            group,
            stream,
            create_group,
        })
    }

    /// The labels that carry it on the container.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (labels::AWSLOGS_GROUP.to_string(), self.group.clone()),
            (
                labels::AWSLOGS_CREATE_GROUP.to_string(),
                self.create_group.to_string(),
            ),
        ]);
        if let Some(stream) = &self.stream {
            labels.insert(labels::AWSLOGS_STREAM.to_string(), stream.clone());
        }
        labels
    }

    /// Read back from a container's labels; `None` for a container that does not ship logs.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<Self> {
        Some(Self {
            group: labels.get(labels::AWSLOGS_GROUP)?.clone(),
            stream: labels.get(labels::AWSLOGS_STREAM).cloned(),
            create_group: labels
                .get(labels::AWSLOGS_CREATE_GROUP)
                .is_some_and(|v| v == "true"),
        })
    }

    /// The stream name for the container with this engine id.
    pub fn stream_name(&self, container_id: &str) -> String {
        self.stream
            .clone()
            .unwrap_or_else(|| container_id.to_string())
    }
}

/// CloudWatch Logs as the shipper needs it. Errors keep the service's code, so callers can
/// tell a missing stream (`ResourceNotFoundException`) from an unreachable server.
#[async_trait::async_trait]
pub trait LogSink: Send + Sync + 'static {
    /// Creates the group; one that exists already is a success.
    async fn create_log_group(&self, group: &str) -> Result<(), ClientError>;
    /// Creates the stream; one that exists already is a success.
    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ClientError>;
    /// Events in chronological order, within PutLogEvents' limits.
    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), ClientError>;
    /// The stream's newest `limit` events (at most), oldest first, as GetLogEvents returns them
    /// from the end of a stream.
    async fn newest_log_events(
        &self,
        group: &str,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<LogEvent>, ClientError>;
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateLogGroupInput<'a> {
    log_group_name: &'a str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateLogStreamInput<'a> {
    log_group_name: &'a str,
    log_stream_name: &'a str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEventsInput<'a> {
    log_group_name: &'a str,
    log_stream_name: &'a str,
    log_events: &'a [LogEvent],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GetLogEventsInput<'a> {
    log_group_name: &'a str,
    log_stream_name: &'a str,
    limit: usize,
    start_from_head: bool,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct GetLogEventsOutput {
    events: Vec<LogEvent>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PutLogEventsOutput {
    rejected_log_events_info: Option<serde_json::Value>,
}

fn already_exists(result: Result<serde_json::Value, ClientError>) -> Result<(), ClientError> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some("ResourceAlreadyExistsException") => Ok(()),
        Err(error) => Err(error),
    }
}

#[async_trait::async_trait]
impl LogSink for ServerClient {
    async fn create_log_group(&self, group: &str) -> Result<(), ClientError> {
        let input = CreateLogGroupInput {
            log_group_name: group,
        };
        already_exists(
            self.call(Service::Logs, "CreateLogGroup", &input, LOGS_CALL_TIMEOUT)
                .await,
        )
    }

    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ClientError> {
        let input = CreateLogStreamInput {
            log_group_name: group,
            log_stream_name: stream,
        };
        already_exists(
            self.call(Service::Logs, "CreateLogStream", &input, LOGS_CALL_TIMEOUT)
                .await,
        )
    }

    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), ClientError> {
        let input = PutLogEventsInput {
            log_group_name: group,
            log_stream_name: stream,
            log_events: events,
        };
        let output: PutLogEventsOutput = self
            .call(Service::Logs, "PutLogEvents", &input, LOGS_CALL_TIMEOUT)
            .await?;
        if let Some(rejected) = output.rejected_log_events_info {
            // Too old, too new or past the group's retention: the service keeps the rest,
            // and sending the rejected ones again would be rejected again.
            tracing::warn!(group, stream, rejected = %rejected, "CloudWatch Logs rejected some log events");
        }
        Ok(())
    }

    async fn newest_log_events(
        &self,
        group: &str,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<LogEvent>, ClientError> {
        let input = GetLogEventsInput {
            log_group_name: group,
            log_stream_name: stream,
            limit,
            start_from_head: false,
        };
        let output: GetLogEventsOutput = self
            .call(Service::Logs, "GetLogEvents", &input, LOGS_CALL_TIMEOUT)
            .await?;
        Ok(output.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn stream_names_follow_aws() {
        let with_prefix = LogDestination::from_options(
            &options(&[
                ("awslogs-group", "/ecs/web"),
                ("awslogs-region", "eu-west-1"),
                ("awslogs-stream-prefix", "ecs"),
                ("awslogs-create-group", "true"),
            ]),
            "app",
            "0123abcd",
        )
        .expect("valid");
        assert_eq!(
            with_prefix,
            LogDestination {
                group: "/ecs/web".into(),
                stream: Some("ecs/app/0123abcd".into()),
                create_group: true,
            }
        );
        assert_eq!(with_prefix.stream_name("c0ffee"), "ecs/app/0123abcd");
        let without = LogDestination::from_options(
            &options(&[("awslogs-group", "g"), ("mode", "non-blocking")]),
            "app",
            "0123abcd",
        )
        .expect("valid");
        assert_eq!(without.stream_name("c0ffee"), "c0ffee");
        assert!(!without.create_group);
        assert_eq!(
            LogDestination::from_labels(&without.labels()),
            Some(without)
        );
        assert_eq!(
            LogDestination::from_labels(&with_prefix.labels()),
            Some(with_prefix)
        );
        assert_eq!(LogDestination::from_labels(&BTreeMap::new()), None);
    }

    #[test]
    fn bad_options_are_refused_with_a_reason() {
        assert_eq!(
            LogDestination::from_options(&options(&[("awslogs-region", "x")]), "a", "t"),
            Err(LogOptionError::MissingGroup)
        );
        assert_eq!(
            LogDestination::from_options(
                &options(&[("awslogs-group", "g"), ("awslogs-create-group", "yes")]),
                "a",
                "t"
            ),
            Err(LogOptionError::InvalidBool("yes".into()))
        );
        assert_eq!(
            LogDestination::from_options(
                &options(&[("awslogs-group", "g"), ("awslogs-multiline-pattern", "^x")]),
                "a",
                "t"
            ),
            Err(LogOptionError::Unsupported(
                "awslogs-multiline-pattern".into()
            ))
        );
    }
}
