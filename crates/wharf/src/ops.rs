//! Operators' views of a running Wharf: `wharf logs` (a task's or a service's container logs
//! from CloudWatch Logs, optionally followed) and `wharf top` (a table of running tasks' CPU
//! and memory against their reservations). Both are clients of the public APIs only: ECS and
//! CloudWatch Logs through the AWS SDKs, and the agent protocol's `DescribeTaskStats`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{DesiredStatus, Task};
use clap::Args;
use tokio_util::sync::CancellationToken;

/// Where the server is and how to sign for it: the usual AWS variables, or the server's own
/// data directory.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// The Wharf endpoint (what `wharf up` printed as AWS_ENDPOINT_URL).
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:4566"
    )]
    endpoint: String,
    /// The signing region.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// Access key id to sign with; without it, the keys in --data-dir are used.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key_id: Option<String>,
    /// The secret for --access-key-id.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<String>,
    /// The server's data directory, whose credentials.json is read when no keys are given.
    #[arg(long, env = "WHARF_DATA_DIR", default_value = ".wharf")]
    data_dir: PathBuf,
}

impl Connection {
    fn credentials(&self) -> Result<controlplane::Credentials> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => Ok(controlplane::Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
            }),
            (Some(_), None) | (None, Some(_)) => bail!(
                "give both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --access-key-id and --secret-access-key), as `wharf up` printed them"
            ),
            (None, None) => {
                // Read only: a client must never create keys the server does not know.
                let path = self.data_dir.join("credentials.json");
                let bytes = std::fs::read(&path).with_context(|| {
                    format!(
                        "no credentials: export the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY lines `wharf up` printed, or pass --data-dir with the server's data directory (cannot read {})",
                        path.display()
                    )
                })?;
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a Wharf credentials file", path.display()))
            }
        }
    }

    async fn sdk_config(&self) -> Result<aws_config::SdkConfig> {
        let credentials = self.credentials()?;
        Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                credentials.access_key_id,
                credentials.secret_access_key,
                None,
                None,
                "wharf-cli",
            ))
            .load()
            .await)
    }
}

/// An error that may go away by itself (the server is restarting, unreachable for a moment or
/// overloaded): a follow loop reports it and tries again instead of ending.
#[derive(Debug)]
struct Transient(String);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transient {}

fn is_transient(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Transient>().is_some()
}

/// Whether trying `error`'s request again later may succeed. The SDK has already retried it a
/// few times within a second or two; a server restart takes longer than that.
fn sdk_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(failure) => {
            failure.raw().status().is_server_error()
                || matches!(
                    error.code(),
                    Some("ThrottlingException" | "Throttling" | "ServiceUnavailable")
                )
        }
        _ => false,
    }
}

/// An SDK error in words that say what to do next; a [`Transient`] one when retrying may help.
fn explain<E>(error: SdkError<E, HttpResponse>, what: &str, endpoint: &str) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = sdk_transient(&error);
    let explained = describe_error(error, what, endpoint);
    if transient {
        Transient(explained.to_string()).into()
    } else {
        explained
    }
}

fn describe_error<E>(error: SdkError<E, HttpResponse>, what: &str, endpoint: &str) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if matches!(
        error,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
    ) {
        return anyhow!(
            "cannot reach Wharf at {endpoint} ({}); is it running (`wharf up`)? point at it with --endpoint or AWS_ENDPOINT_URL",
            DisplayErrorContext(&error)
        );
    }
    let code = error.code().unwrap_or("").to_string();
    let message = error.message().unwrap_or("").to_string();
    if is_auth_error(&code) {
        return anyhow!(
            "the server at {endpoint} refused these credentials ({code}: {message}); export the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY lines `wharf up` printed, or pass --data-dir with the server's data directory"
        );
    }
    if code.is_empty() {
        anyhow!("{what} failed: {}", DisplayErrorContext(&error))
    } else {
        anyhow!("{what} failed: {code}: {message}")
    }
}

fn is_auth_error(code: &str) -> bool {
    matches!(
        code,
        "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "AccessDeniedException"
    )
}

/// `10m`, `30s`, `2h`, `1d` or plain seconds.
pub fn parse_since(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 30s, 10m, 2h or 1d, got '{text}'"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{text}': use s, m, h or d"
            ))
        }
    };
    // Checked: a number this large is a typo, not a wrap-around to a short window.
    let seconds = number
        .checked_mul(seconds)
        .ok_or_else(|| format!("'{text}' is too long ago; give at most a few years"))?;
    Ok(Duration::from_secs(seconds))
}

/// Cancelled at the first Ctrl-C. One listener for the whole command, started before the first
/// request: a Ctrl-C that arrives while a request is under way is kept until the loop looks,
/// where a fresh `ctrl_c()` per wait would miss it (tokio only reports signals that arrive
/// while a listener exists).
fn interrupted() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    token
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["task", "service"])))]
pub struct LogsArgs {
    #[command(flatten)]
    connection: Connection,
    /// The cluster of the task or service.
    #[arg(long, env = "WHARF_CLUSTER", default_value = "default")]
    cluster: String,
    /// The task: its id or ARN.
    #[arg(long)]
    task: Option<String>,
    /// The service: every task it runs or recently stopped.
    #[arg(long)]
    service: Option<String>,
    /// Only this container's logs.
    #[arg(long)]
    container: Option<String>,
    /// Keep polling for new events (and a service's new tasks) every second, until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only events newer than this, e.g. 30s, 10m, 2h, 1d (default: from the beginning).
    #[arg(long, value_parser = parse_since)]
    since: Option<Duration>,
}

/// One container's log stream and where reading it got to.
#[derive(Debug)]
struct Source {
    group: String,
    stream: String,
    /// `task/container` as printed before every line.
    label: String,
    /// GetLogEvents' forward token: the next call returns only newer events.
    token: Option<String>,
    /// Whether the stream was found at least once (a task that never logged has none).
    seen: bool,
}

/// One event ready to print.
#[derive(Debug, PartialEq)]
struct Line {
    timestamp: i64,
    label: String,
    message: String,
}

/// The first 12 characters of an id, as docker shortens container ids.
fn short(id: &str) -> &str {
    let id = id.rsplit('/').next().unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn format_line(line: &Line) -> String {
    let time = chrono::DateTime::from_timestamp_millis(line.timestamp)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| line.timestamp.to_string());
    format!(
        "{time} {} | {}",
        line.label,
        line.message.trim_end_matches(['\n', '\r'])
    )
}

/// What `wharf logs` keeps between polls.
struct LogsRun {
    args: LogsArgs,
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    /// Ids of tasks not worth describing again: every wanted container has its source (or
    /// cannot have one), or the task stopped or is gone. A task whose container's stream is
    /// not known yet (no stream prefix and no container id so far) is described at every poll
    /// until it is.
    done: HashSet<String>,
    /// Notes already printed, so a task described again does not repeat them.
    notes: HashSet<String>,
    /// Container definitions' log configuration by task definition ARN.
    definitions: HashMap<String, aws_sdk_ecs::types::TaskDefinition>,
    /// By (group, stream).
    sources: BTreeMap<(String, String), Source>,
    start_time: Option<i64>,
}

/// `wharf logs`.
pub async fn logs(args: LogsArgs) -> Result<()> {
    let interrupted = interrupted();
    let config = args.connection.sdk_config().await?;
    let start_time = args.since.map(|since| {
        let since = since.as_millis().min(i64::MAX as u128) as i64;
        // Before 1970 is the same as from the beginning (and the API refuses negative times).
        (chrono::Utc::now().timestamp_millis() - since).max(0)
    });
    let ecs = aws_sdk_ecs::Client::new(&config);
    check_cluster(&ecs, &args.connection.endpoint, &args.cluster).await?;
    let mut run = LogsRun {
        ecs,
        logs: aws_sdk_cloudwatchlogs::Client::new(&config),
        args,
        done: HashSet::new(),
        notes: HashSet::new(),
        definitions: HashMap::new(),
        sources: BTreeMap::new(),
        start_time,
    };
    let mut first = true;
    // The error being retried, printed once rather than at every attempt.
    let mut failing: Option<String> = None;
    loop {
        let (lines, result) = tokio::select! {
            _ = interrupted.cancelled() => return Ok(()),
            step = run.step(first) => step,
        };
        let mut out = std::io::stdout().lock();
        for line in &lines {
            // A closed pipe (`wharf logs | head`) ends the command quietly.
            if writeln!(out, "{}", format_line(line)).is_err() {
                return Ok(());
            }
        }
        let _ = out.flush();
        drop(out);
        match result {
            Ok(()) => {
                first = false;
                if failing.take().is_some() {
                    eprintln!("wharf logs: connected again; following");
                }
            }
            // Following rides out a server restart, as `wharf top` does.
            Err(error) if run.args.follow && is_transient(&error) => {
                let message = error.to_string();
                if failing.as_deref() != Some(message.as_str()) {
                    eprintln!("wharf logs: {message}\n(retrying every second; Ctrl-C to quit)");
                }
                failing = Some(message);
            }
            Err(error) => return Err(error),
        }
        if !run.args.follow {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = interrupted.cancelled() => return Ok(()),
        }
    }
    for source in run.sources.values().filter(|s| !s.seen) {
        eprintln!(
            "note: {} has no logs yet (log stream {} in group {} does not exist)",
            source.label, source.stream, source.group
        );
    }
    Ok(())
}

/// Print `text` as a note unless it was printed already.
fn note(notes: &mut HashSet<String>, text: String) {
    if notes.insert(text.clone()) {
        eprintln!("note: {text}");
    }
}

impl LogsRun {
    fn endpoint(&self) -> &str {
        &self.args.connection.endpoint
    }

    /// One poll: find new tasks (a service's, or ones whose streams were not known yet), then
    /// read every source. The lines read before an error are returned with it: their streams'
    /// tokens have moved past them, so dropping them would lose them.
    async fn step(&mut self, first: bool) -> (Vec<Line>, Result<()>) {
        if let Err(error) = self.discover_tasks(first).await {
            return (Vec::new(), Err(error));
        }
        self.poll().await
    }

    /// Find the task (or the service's tasks) and add a source per container with awslogs.
    async fn discover_tasks(&mut self, first: bool) -> Result<()> {
        let cluster = self.args.cluster.clone();
        let arns: Vec<String> = match (&self.args.task, &self.args.service) {
            (Some(task), _) => vec![task.clone()],
            (None, Some(service)) => {
                let mut arns = Vec::new();
                for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
                    let mut token = None;
                    loop {
                        let page = self
                            .ecs
                            .list_tasks()
                            .cluster(&cluster)
                            .service_name(service)
                            .desired_status(desired.clone())
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(|e| {
                                explain(
                                    e,
                                    &format!("listing the tasks of service {service}"),
                                    self.endpoint(),
                                )
                            })?;
                        arns.extend(page.task_arns().iter().cloned());
                        token = page.next_token().map(str::to_string);
                        if token.is_none() {
                            break;
                        }
                    }
                }
                if first && arns.is_empty() && !self.args.follow {
                    eprintln!(
                        "note: service {service} has no tasks in cluster {cluster}; --follow waits for them"
                    );
                }
                arns
            }
            (None, None) => bail!("name a task with --task or a service with --service"),
        };
        let new: Vec<String> = arns
            .into_iter()
            .filter(|a| !self.done.contains(task_id(a)))
            .collect();
        for chunk in new.chunks(100) {
            let described = self
                .ecs
                .describe_tasks()
                .cluster(&cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| explain(e, "DescribeTasks", self.endpoint()))?;
            if let (Some(given), Some(failure), true) =
                (&self.args.task, described.failures().first(), first)
            {
                bail!(
                    "task {given} is not in cluster {cluster} ({}); list its tasks with `aws ecs list-tasks --cluster {cluster}`",
                    failure.reason().unwrap_or("MISSING")
                );
            }
            // Gone since it was listed (or since the last poll): it will not come back.
            for failure in described.failures() {
                if let Some(arn) = failure.arn() {
                    self.done.insert(task_id(arn).to_string());
                }
            }
            for task in described.tasks() {
                if self.add_task(task).await? {
                    self.done
                        .insert(task_id(task.task_arn().unwrap_or_default()).to_string());
                }
            }
        }
        Ok(())
    }

    /// Add a source per wanted container with awslogs. Returns whether the task is complete:
    /// every such container has its source, or the task stopped and never will.
    async fn add_task(&mut self, task: &Task) -> Result<bool> {
        let arn = task.task_arn().unwrap_or_default().to_string();
        let id = task_id(&arn).to_string();
        let definition_arn = task.task_definition_arn().unwrap_or_default().to_string();
        if !self.definitions.contains_key(&definition_arn) {
            let described = self
                .ecs
                .describe_task_definition()
                .task_definition(&definition_arn)
                .send()
                .await
                .map_err(|e| {
                    explain(
                        e,
                        &format!("DescribeTaskDefinition of {definition_arn}"),
                        self.endpoint(),
                    )
                })?;
            let definition = described
                .task_definition()
                .cloned()
                .with_context(|| format!("the server described no {definition_arn}"))?;
            self.definitions.insert(definition_arn.clone(), definition);
        }
        let definition = &self.definitions[&definition_arn];
        let containers = definition.container_definitions();
        if let Some(wanted) = &self.args.container {
            if !containers.iter().any(|c| c.name() == Some(wanted.as_str())) {
                let names: Vec<&str> = containers.iter().filter_map(|c| c.name()).collect();
                bail!(
                    "task {id} has no container {wanted}; its containers are: {}",
                    names.join(", ")
                );
            }
        }
        let mut complete = true;
        for container in containers {
            let name = container.name().unwrap_or_default();
            if self
                .args
                .container
                .as_deref()
                .is_some_and(|wanted| wanted != name)
            {
                continue;
            }
            let label = format!("{}/{name}", short(&id));
            let runtime_id = task
                .containers()
                .iter()
                .find(|c| c.name() == Some(name))
                .and_then(|c| c.runtime_id())
                .map(str::to_string);
            let on_host = || {
                format!(
                    "docker logs {}",
                    runtime_id.as_deref().unwrap_or("<its container id>")
                )
            };
            let configuration = container.log_configuration();
            let driver = configuration.map(|c| c.log_driver().as_str().to_string());
            let options = configuration.and_then(|c| c.options());
            let group = options.and_then(|o| o.get("awslogs-group"));
            let (Some("awslogs"), Some(group)) = (driver.as_deref(), group) else {
                note(&mut self.notes, format!(
                    "{label} does not use the awslogs log driver ({}), so its logs are only on its host: {}",
                    driver.as_deref().map(|d| format!("logDriver {d}")).unwrap_or_else(|| "no logConfiguration".to_string()),
                    on_host()
                ));
                continue;
            };
            // ECS names the stream `<prefix>/<container>/<task id>`; without a prefix Docker's
            // awslogs driver names it after the container id.
            let stream = match options.and_then(|o| o.get("awslogs-stream-prefix")) {
                Some(prefix) => format!("{prefix}/{name}/{id}"),
                None => match &runtime_id {
                    Some(runtime_id) => runtime_id.clone(),
                    None => {
                        note(&mut self.notes, format!(
                            "{label} has no awslogs-stream-prefix and has not started yet, so its stream (named after its container id) is not known yet"
                        ));
                        // Described again at the next poll, when it may have started.
                        complete = false;
                        continue;
                    }
                },
            };
            self.sources
                .entry((group.clone(), stream.clone()))
                .or_insert(Source {
                    group: group.clone(),
                    stream,
                    label,
                    token: None,
                    seen: false,
                });
        }
        Ok(complete || task.last_status() == Some("STOPPED"))
    }

    /// Every source's events since the last poll, in time order. Each stream is read with
    /// GetLogEvents and its forward token, not FilterLogEvents from the last timestamp seen:
    /// the token also returns events that arrived late with older timestamps (agents ship
    /// logs in batches), where a timestamp cursor would skip them.
    async fn poll(&mut self) -> (Vec<Line>, Result<()>) {
        let mut lines = Vec::new();
        let mut result = Ok(());
        let endpoint = self.args.connection.endpoint.clone();
        'sources: for source in self.sources.values_mut() {
            // Bounded so a stream written faster than it is read cannot hold the loop forever.
            for _ in 0..100 {
                let answer = self
                    .logs
                    .get_log_events()
                    .log_group_name(&source.group)
                    .log_stream_name(&source.stream)
                    .start_from_head(true)
                    .set_start_time(if source.token.is_none() {
                        self.start_time
                    } else {
                        None
                    })
                    .set_next_token(source.token.clone())
                    .send()
                    .await;
                let page = match answer {
                    Ok(page) => page,
                    Err(error) if error.code() == Some("ResourceNotFoundException") => {
                        // Not created yet: the task has not logged anything so far.
                        break;
                    }
                    Err(error) => {
                        result = Err(explain(
                            error,
                            &format!("GetLogEvents of {}", source.stream),
                            &endpoint,
                        ));
                        break 'sources;
                    }
                };
                source.seen = true;
                for event in page.events() {
                    lines.push(Line {
                        timestamp: event.timestamp().unwrap_or(0),
                        label: source.label.clone(),
                        message: event.message().unwrap_or_default().to_string(),
                    });
                }
                let next = page.next_forward_token().map(str::to_string);
                let done = page.events().is_empty() || next.is_none() || next == source.token;
                if next.is_some() {
                    source.token = next;
                }
                if done {
                    break;
                }
            }
        }
        // Stable: lines of one stream with the same timestamp keep their order.
        lines.sort_by_key(|l| l.timestamp);
        (lines, result)
    }
}

#[derive(Args, Debug)]
pub struct TopArgs {
    #[command(flatten)]
    connection: Connection,
    /// The cluster whose tasks to show.
    #[arg(long, env = "WHARF_CLUSTER", default_value = "default")]
    cluster: String,
    /// Print one table and exit.
    #[arg(long)]
    once: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2)]
    interval: u64,
}

/// `wharf top`.
pub async fn top(args: TopArgs) -> Result<()> {
    let interrupted = interrupted();
    let credentials = args.connection.credentials()?;
    let client = agent::client::ServerClient::new(
        &args.connection.endpoint,
        agent::AgentCredentials {
            access_key_id: credentials.access_key_id,
            secret_access_key: credentials.secret_access_key,
        },
        &args.connection.region,
    )
    .map_err(|e| anyhow!("{e}; set --endpoint or AWS_ENDPOINT_URL to http://HOST:PORT"))?;
    // DescribeTaskStats answers an empty list for a cluster that does not exist; a typo in
    // --cluster deserves better than an empty table forever.
    let ecs = aws_sdk_ecs::Client::new(&args.connection.sdk_config().await?);
    check_cluster(&ecs, &args.connection.endpoint, &args.cluster).await?;
    let input = model::agent::DescribeTaskStatsInput {
        cluster: Some(args.cluster.clone()),
    };
    loop {
        let answer = tokio::select! {
            _ = interrupted.cancelled() => return Ok(()),
            answer = client.call::<_, model::agent::DescribeTaskStatsOutput>(
                agent::client::Service::Agent,
                "DescribeTaskStats",
                &input,
                Duration::from_secs(10),
            ) => answer,
        };
        let now = chrono::Utc::now();
        let frame = match answer {
            Ok(output) => render_top(&args.cluster, &output.tasks, now, !args.once),
            Err(error) => {
                let explained =
                    explain_agent_error(&error, &args.connection.endpoint, &args.cluster);
                // A refresh loop rides out a server restart; anything else will not get better.
                if args.once || !error.is_retryable() {
                    return Err(explained);
                }
                format!(
                    "wharf top: {explained}\n(retrying every {} s; Ctrl-C to quit)\n",
                    args.interval
                )
            }
        };
        let mut out = std::io::stdout().lock();
        let written = if args.once {
            write!(out, "{frame}")
        } else {
            // Clear the screen and home the cursor between frames.
            write!(out, "\x1b[2J\x1b[H{frame}")
        };
        if written.and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
        drop(out);
        if args.once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
            _ = interrupted.cancelled() => return Ok(()),
        }
    }
}

/// Fail with what to do when `cluster` is not an ACTIVE cluster.
async fn check_cluster(ecs: &aws_sdk_ecs::Client, endpoint: &str, cluster: &str) -> Result<()> {
    let described = ecs
        .describe_clusters()
        .clusters(cluster)
        .send()
        .await
        .map_err(|e| explain(e, "DescribeClusters", endpoint))?;
    let active = described
        .clusters()
        .iter()
        .any(|c| c.status() == Some("ACTIVE"));
    if !active {
        bail!(
            "cluster {cluster} does not exist; pick one with --cluster (list them with `aws ecs list-clusters`)"
        );
    }
    Ok(())
}

fn explain_agent_error(
    error: &agent::client::ClientError,
    endpoint: &str,
    cluster: &str,
) -> anyhow::Error {
    use agent::client::ClientError;
    match error {
        ClientError::Transport { message, .. } => anyhow!(
            "cannot reach Wharf at {endpoint} ({message}); is it running (`wharf up`)? point at it with --endpoint or AWS_ENDPOINT_URL"
        ),
        ClientError::Timeout { seconds, .. } => {
            anyhow!("Wharf at {endpoint} did not answer within {seconds} s; is it overloaded?")
        }
        ClientError::Api { code, .. } if code == "UnknownOperationException" => anyhow!(
            "the server at {endpoint} does not serve DescribeTaskStats: it runs an older Wharf than this command; upgrade the server"
        ),
        ClientError::Api { code, .. } if code == "ClusterNotFoundException" => anyhow!(
            "cluster {cluster} does not exist; pick one with --cluster (list them with `aws ecs list-clusters`)"
        ),
        ClientError::Api {
            code,
            message,
            status,
            ..
        } if *status == 403 || is_auth_error(code) => anyhow!(
            "the server at {endpoint} refused these credentials ({code}: {message}); export the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY lines `wharf up` printed, or pass --data-dir with the server's data directory"
        ),
        other => anyhow!("{other}"),
    }
}

fn percent(used: f64, reserved: f64) -> String {
    if reserved > 0.0 {
        format!("{:.1}%", used / reserved * 100.0)
    } else {
        "-".to_string()
    }
}

fn used_of(used: f64, reserved: f64) -> String {
    if reserved > 0.0 {
        format!("{used:.0}/{reserved:.0}")
    } else {
        format!("{used:.0}/-")
    }
}

/// One frame of `wharf top`: a heading and an aligned table, busiest CPU first.
pub fn render_top(
    cluster: &str,
    tasks: &[model::agent::TaskUsage],
    now: chrono::DateTime<chrono::Utc>,
    looping: bool,
) -> String {
    let mut frame = String::new();
    let _ = writeln!(
        frame,
        "wharf top: cluster {cluster}, {} running task{} with usage, {}{}",
        tasks.len(),
        if tasks.len() == 1 { "" } else { "s" },
        now.format("%H:%M:%S UTC"),
        if looping { " (Ctrl-C to quit)" } else { "" }
    );
    let _ = writeln!(frame);
    let mut sorted: Vec<&model::agent::TaskUsage> = tasks.iter().collect();
    sorted.sort_by(|a, b| {
        b.cpu_units_used
            .total_cmp(&a.cpu_units_used)
            .then_with(|| a.task_arn.cmp(&b.task_arn))
    });
    let header = [
        "TASK",
        "GROUP",
        "INSTANCE",
        "CPU (units)",
        "CPU %",
        "MEMORY (MiB)",
        "MEM %",
    ];
    let mut rows: Vec<[String; 7]> = sorted
        .iter()
        .map(|t| {
            [
                short(task_id(&t.task_arn)).to_string(),
                t.group.clone().unwrap_or_else(|| "-".to_string()),
                t.container_instance_arn
                    .as_deref()
                    .map(|a| short(a).to_string())
                    .unwrap_or_else(|| "-".to_string()),
                used_of(t.cpu_units_used, t.cpu_units_reserved),
                percent(t.cpu_units_used, t.cpu_units_reserved),
                used_of(t.memory_mib_used, t.memory_mib_reserved),
                percent(t.memory_mib_used, t.memory_mib_reserved),
            ]
        })
        .collect();
    if !rows.is_empty() {
        let sum = |f: fn(&model::agent::TaskUsage) -> f64| sorted.iter().map(|t| f(t)).sum::<f64>();
        let (cpu, cpu_reserved) = (sum(|t| t.cpu_units_used), sum(|t| t.cpu_units_reserved));
        let (memory, memory_reserved) =
            (sum(|t| t.memory_mib_used), sum(|t| t.memory_mib_reserved));
        rows.push([
            "TOTAL".to_string(),
            String::new(),
            String::new(),
            used_of(cpu, cpu_reserved),
            percent(cpu, cpu_reserved),
            used_of(memory, memory_reserved),
            percent(memory, memory_reserved),
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Text left-aligned, numbers right-aligned.
    let numeric = [false, false, false, true, true, true, true];
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths[i];
            if numeric[i] {
                let _ = write!(text, "{cell:>width$}  ");
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        let _ = writeln!(frame, "{}", text.trim_end());
    };
    line(&header.map(str::to_string));
    for row in &rows {
        line(row);
    }
    if tasks.is_empty() {
        let _ = writeln!(
            frame,
            "\n(no running tasks with usage samples in cluster {cluster}; agents report every {} s)",
            model::agent::STATS_REPORT_INTERVAL_SECONDS
        );
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker_and_aws_logs_tail() {
        assert_eq!(parse_since("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_since("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_since("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_since("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_since("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_since("10 minutes").is_err());
        assert!(parse_since("m").is_err());
        // Overflowing seconds are refused, not wrapped around to a short window.
        assert_eq!(
            parse_since("213503982334602d"),
            Err("'213503982334602d' is too long ago; give at most a few years".to_string())
        );
        assert!(parse_since("213503982334601d").is_ok());
        assert!(parse_since("99999999999999999999").is_err());
    }

    #[test]
    fn log_lines_carry_time_task_and_container() {
        let line = Line {
            timestamp: 1_700_000_000_123,
            label: "0123456789ab/web".to_string(),
            message: "hello\n".to_string(),
        };
        assert_eq!(
            format_line(&line),
            "2023-11-14T22:13:20.123Z 0123456789ab/web | hello"
        );
    }

    #[test]
    fn top_aligns_columns_and_sorts_by_cpu() {
        let task = |id: &str, cpu: f64, memory: f64| model::agent::TaskUsage {
            task_arn: format!("arn:aws:ecs:us-east-1:000000000000:task/prod/{id}"),
            group: Some("service:web".to_string()),
            container_instance_arn: Some(
                "arn:aws:ecs:us-east-1:000000000000:container-instance/prod/abcdef0123456789"
                    .to_string(),
            ),
            timestamp: 0.0,
            cpu_units_used: cpu,
            cpu_units_reserved: 256.0,
            memory_mib_used: memory,
            memory_mib_reserved: 0.0,
        };
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let frame = render_top(
            "prod",
            &[
                task("aaaaaaaaaaaaaaaaaaaa", 12.0, 30.4),
                task("bbbbbbbbbbbbbbbbbbbb", 128.0, 7.0),
            ],
            now,
            false,
        );
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(
            lines[0],
            "wharf top: cluster prod, 2 running tasks with usage, 22:13:20 UTC"
        );
        assert_eq!(
            lines[2],
            "TASK          GROUP        INSTANCE      CPU (units)  CPU %  MEMORY (MiB)  MEM %"
        );
        assert_eq!(
            lines[3],
            "bbbbbbbbbbbb  service:web  abcdef012345      128/256  50.0%           7/-      -"
        );
        assert_eq!(
            lines[4],
            "aaaaaaaaaaaa  service:web  abcdef012345       12/256   4.7%          30/-      -"
        );
        assert!(lines[5].starts_with("TOTAL"), "{frame}");
        let empty = render_top("prod", &[], now, true);
        assert!(
            empty.contains("TASK  GROUP  INSTANCE  CPU (units)  CPU %"),
            "{empty}"
        );
        assert!(empty.contains("Ctrl-C"));
    }
}
