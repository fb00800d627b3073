//! The operator commands against a real `wharf server` process: `wharf logs` reads what was put
//! through the CloudWatch Logs API for a task's and a service's awslogs streams (in time order,
//! `--since`, `--container`, `--follow`, and a clear note for a container without awslogs), and
//! `wharf top --once` prints its table (or says what to do when the server is not there).
//!
//! No Docker needed: the test registers a container instance and heartbeats for it as its agent
//! would, so tasks are placed (and stay PROVISIONING) without running anything.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_ecs::types::{ContainerDefinition, LogConfiguration, LogDriver, Resource};
use support::Wharf;

const CLUSTER: &str = "ops";
const GROUP: &str = "/ecs/app";

/// `wharf <args>` signed with the server's keys, as an operator would run it after pasting
/// the export lines of `wharf up`.
fn wharf_command(wharf: &Wharf, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wharf"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", &wharf.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &wharf.secret_access_key)
        .env("AWS_DEFAULT_REGION", &wharf.region)
        .env("AWS_ENDPOINT_URL", &wharf.endpoint)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("WHARF_LOG", "warn");
    command
}

fn run(wharf: &Wharf, args: &[&str]) -> Result<Output> {
    wharf_command(wharf, args)
        .output()
        .with_context(|| format!("running wharf {}", args.join(" ")))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// The agent protocol's client, signed with the server's keys (talking to `endpoint`).
fn agent_client(wharf: &Wharf, endpoint: &str) -> Result<agent::client::ServerClient> {
    Ok(agent::client::ServerClient::new(
        endpoint,
        agent::AgentCredentials {
            access_key_id: wharf.access_key_id.clone(),
            secret_access_key: wharf.secret_access_key.clone(),
        },
        &wharf.region,
    )?)
}

/// Register a container instance in `CLUSTER` and heartbeat for it, so tasks can be placed.
/// Returns its ARN.
async fn fake_agent(wharf: &Wharf, ecs: &aws_sdk_ecs::Client) -> Result<String> {
    let resource = |name: &str, value: i32| {
        Resource::builder()
            .name(name)
            .r#type("INTEGER")
            .integer_value(value)
            .build()
    };
    let registered = ecs
        .register_container_instance()
        .cluster(CLUSTER)
        .total_resources(resource("CPU", 4096))
        .total_resources(resource("MEMORY", 8192))
        .send()
        .await?;
    let arn = registered
        .container_instance()
        .and_then(|i| i.container_instance_arn())
        .context("no container instance ARN")?
        .to_string();
    let _: serde_json::Value = agent_client(wharf, &wharf.endpoint)?
        .call(
            agent::client::Service::Agent,
            "Heartbeat",
            &serde_json::json!({"cluster": CLUSTER, "containerInstanceArn": arn}),
            Duration::from_secs(10),
        )
        .await?;
    Ok(arn)
}

async fn logs_client(wharf: &Wharf) -> aws_sdk_cloudwatchlogs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(wharf.region.clone()))
        .endpoint_url(&wharf.endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            &wharf.access_key_id,
            &wharf.secret_access_key,
            None,
            None,
            "wharf-tests",
        ))
        .load()
        .await;
    aws_sdk_cloudwatchlogs::Client::new(&config)
}

async fn put(
    logs: &aws_sdk_cloudwatchlogs::Client,
    stream: &str,
    events: &[(i64, &str)],
) -> Result<()> {
    match logs
        .create_log_stream()
        .log_group_name(GROUP)
        .log_stream_name(stream)
        .send()
        .await
    {
        Ok(_) => {}
        Err(error)
            if aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata::code(&error)
                == Some("ResourceAlreadyExistsException") => {}
        Err(error) => bail!(
            "CreateLogStream: {}",
            aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&error)
        ),
    }
    let mut request = logs
        .put_log_events()
        .log_group_name(GROUP)
        .log_stream_name(stream);
    for (timestamp, message) in events {
        request = request.log_events(
            InputLogEvent::builder()
                .timestamp(*timestamp)
                .message(*message)
                .build()?,
        );
    }
    request.send().await.map_err(|e| {
        anyhow::anyhow!(
            "PutLogEvents: {}",
            aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)
        )
    })?;
    Ok(())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The message part (after `| `) of every line.
fn messages(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(" | ").map(|(_, m)| m.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_task_and_a_service() -> Result<()> {
    let data = tempfile::tempdir()?;
    let wharf = Wharf::start("server", data.path())?;
    let ecs = wharf.ecs_client().await;
    ecs.create_cluster().cluster_name(CLUSTER).send().await?;
    fake_agent(&wharf, &ecs).await?;
    ecs.register_task_definition()
        .family("app")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("wharf-test/busybox:latest")
                .memory(64)
                .log_configuration(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Awslogs)
                        .options("awslogs-group", GROUP)
                        .options("awslogs-region", &wharf.region)
                        .options("awslogs-stream-prefix", "app")
                        .build()?,
                )
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder()
                .name("sidecar")
                .image("wharf-test/busybox:latest")
                .memory(32)
                .build(),
        )
        .send()
        .await?;
    let ran = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("app")
        .send()
        .await?;
    let task_arn = ran
        .tasks()
        .first()
        .and_then(|t| t.task_arn())
        .with_context(|| format!("RunTask placed nothing: {ran:?}"))?
        .to_string();
    let task_id = task_arn.rsplit('/').next().unwrap_or_default().to_string();

    let logs = logs_client(&wharf).await;
    logs.create_log_group()
        .log_group_name(GROUP)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "CreateLogGroup (is the CloudWatch Logs API there?): {}",
                aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e)
            )
        })?;
    let now = now_millis();
    let stream = format!("app/web/{task_id}");
    put(
        &logs,
        &stream,
        &[
            (now - 3_600_000, "an hour ago"),
            (now - 2000, "first"),
            (now - 1000, "second"),
        ],
    )
    .await?;

    // The task's logs, in time order, each line with its time, task and container.
    let output = run(&wharf, &["logs", "--cluster", CLUSTER, "--task", &task_id])?;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    ensure!(output.status.success(), "wharf logs failed: {stderr}");
    ensure!(
        messages(&stdout) == ["an hour ago", "first", "second"],
        "{stdout}"
    );
    let short = &task_id[..12];
    ensure!(
        stdout
            .lines()
            .all(|l| l.contains(&format!("Z {short}/web | "))),
        "{stdout}"
    );
    // The container without awslogs is explained, not silently skipped.
    ensure!(
        stderr.contains("sidecar") && stderr.contains("only on its host: docker logs"),
        "{stderr}"
    );

    // --since, and the task named by its ARN.
    let output = run(
        &wharf,
        &[
            "logs",
            "--cluster",
            CLUSTER,
            "--task",
            &task_arn,
            "--since",
            "10m",
        ],
    )?;
    ensure!(
        messages(&text(&output.stdout)) == ["first", "second"],
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );

    // --container picks one; a name the task does not have says which it has.
    let output = run(
        &wharf,
        &[
            "logs",
            "--cluster",
            CLUSTER,
            "--task",
            &task_id,
            "--container",
            "sidecar",
        ],
    )?;
    ensure!(output.status.success() && output.stdout.is_empty());
    let output = run(
        &wharf,
        &[
            "logs",
            "--cluster",
            CLUSTER,
            "--task",
            &task_id,
            "--container",
            "nope",
        ],
    )?;
    ensure!(!output.status.success());
    ensure!(
        text(&output.stderr).contains("has no container nope; its containers are: web, sidecar"),
        "{}",
        text(&output.stderr)
    );
    let output = run(
        &wharf,
        &["logs", "--cluster", CLUSTER, "--task", "0123456789abcdef"],
    )?;
    ensure!(
        !output.status.success() && text(&output.stderr).contains("is not in cluster ops"),
        "{}",
        text(&output.stderr)
    );
    let output = run(
        &wharf,
        &["logs", "--cluster", "nowhere", "--task", &task_id],
    )?;
    ensure!(
        !output.status.success() && text(&output.stderr).contains("cluster nowhere does not exist"),
        "{}",
        text(&output.stderr)
    );
    let output = run(&wharf, &["logs", "--cluster", CLUSTER])?;
    let stderr = text(&output.stderr);
    ensure!(
        !output.status.success() && stderr.contains("--task") && stderr.contains("--service"),
        "{stderr}"
    );

    // --follow prints new events as they arrive.
    let mut child = wharf_command(
        &wharf,
        &[
            "logs",
            "--cluster",
            CLUSTER,
            "--task",
            &task_id,
            "--follow",
            "--container",
            "web",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = sender.send(line);
        }
    });
    let mut seen = Vec::new();
    let wait_for = |seen: &mut Vec<String>, message: &str| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !seen.iter().any(|l| l.ends_with(&format!("| {message}"))) {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => bail!("wharf logs --follow never printed {message}: {seen:?}"),
            }
        }
        Ok(())
    };
    let followed = async {
        wait_for(&mut seen, "second")?;
        put(&logs, &stream, &[(now_millis(), "third")]).await?;
        wait_for(&mut seen, "third")?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    followed?;
    ensure!(
        messages(&seen.join("\n")) == ["an hour ago", "first", "second", "third"],
        "{seen:?}"
    );

    // A service: every task it runs, found through ListTasks.
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name("api")
        .task_definition("app")
        .desired_count(1)
        .send()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let service_task = loop {
        let listed = ecs
            .list_tasks()
            .cluster(CLUSTER)
            .service_name("api")
            .send()
            .await?;
        if let Some(arn) = listed.task_arns().first() {
            break arn.rsplit('/').next().unwrap_or_default().to_string();
        }
        ensure!(Instant::now() < deadline, "the service started no task");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    put(
        &logs,
        &format!("app/web/{service_task}"),
        &[(now_millis(), "from the service")],
    )
    .await?;
    let output = run(
        &wharf,
        &[
            "logs",
            "--cluster",
            CLUSTER,
            "--service",
            "api",
            "--container",
            "web",
        ],
    )?;
    ensure!(
        messages(&text(&output.stdout)) == ["from the service"],
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    ensure!(
        text(&output.stdout).contains(&format!("{}/web | ", &service_task[..12])),
        "{}",
        text(&output.stdout)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_prints_its_table_or_what_to_do() -> Result<()> {
    let data = tempfile::tempdir()?;
    let wharf = Wharf::start("server", data.path())?;
    let ecs = wharf.ecs_client().await;
    ecs.create_cluster().cluster_name(CLUSTER).send().await?;

    let output = run(&wharf, &["top", "--cluster", CLUSTER, "--once"])?;
    let stdout = text(&output.stdout);
    ensure!(output.status.success(), "{stdout}{}", text(&output.stderr));
    ensure!(
        stdout.starts_with("wharf top: cluster ops, 0 running tasks with usage"),
        "{stdout}"
    );
    ensure!(
        stdout.contains("TASK  GROUP  INSTANCE  CPU (units)  CPU %  MEMORY (MiB)  MEM %"),
        "{stdout}"
    );
    // No escape codes in --once output: it is meant for pipes and scripts.
    ensure!(!stdout.contains('\x1b'), "{stdout:?}");

    // Keys read from the server's data directory when none are exported.
    let output = wharf_command(
        &wharf,
        &["top", "--cluster", CLUSTER, "--once", "--data-dir"],
    )
    .arg(data.path())
    .env_remove("AWS_ACCESS_KEY_ID")
    .env_remove("AWS_SECRET_ACCESS_KEY")
    .output()?;
    ensure!(output.status.success(), "{}", text(&output.stderr));

    // Errors say what to do next.
    let output = run(&wharf, &["top", "--cluster", "nowhere", "--once"])?;
    ensure!(
        !output.status.success() && text(&output.stderr).contains("cluster nowhere does not exist"),
        "{}",
        text(&output.stderr)
    );
    let output = wharf_command(&wharf, &["top", "--cluster", CLUSTER, "--once"])
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()?;
    ensure!(
        !output.status.success() && text(&output.stderr).contains("refused these credentials"),
        "{}",
        text(&output.stderr)
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let output = wharf_command(&wharf, &["top", "--cluster", CLUSTER, "--once"])
        .env("AWS_ENDPOINT_URL", format!("http://{closed}"))
        .output()?;
    ensure!(
        !output.status.success() && text(&output.stderr).contains("cannot reach Wharf at"),
        "{}",
        text(&output.stderr)
    );
    Ok(())
}

/// A TCP proxy in front of the server that the test can cut and restore, as a server restart
/// (or a network blip) would look to a client.
struct Proxy {
    endpoint: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: &str) -> Result<Proxy> {
        use std::sync::atomic::Ordering;
        let target = target
            .strip_prefix("http://")
            .context("an http endpoint")?
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accepting, tracked) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    // Down: hang up at once, before any answer.
                    continue;
                }
                let target = target.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(handle);
            }
        });
        Ok(Proxy {
            endpoint,
            up,
            connections,
        })
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            // Cut the pooled connections too, or the client would not notice.
            for connection in self.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }
    }
}

/// Lines a child process writes, read as they come.
struct Lines {
    receiver: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn read(from: impl std::io::Read + Send + 'static) -> Lines {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                let _ = sender.send(line);
            }
        });
        Lines {
            receiver,
            seen: Vec::new(),
        }
    }

    /// Wait (up to `seconds`) for a line containing `text`.
    fn wait_for(&mut self, text: &str, seconds: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => bail!("never printed {text:?}; printed: {:#?}", self.seen),
            }
        }
        Ok(())
    }

    fn count(&mut self, text: &str) -> usize {
        self.seen.extend(self.receiver.try_iter());
        self.seen.iter().filter(|l| l.contains(text)).count()
    }
}

/// `wharf logs --follow --service`: a task whose stream was not known when first seen (no
/// stream prefix, not started) is looked at again until it is; a server outage is reported and
/// ridden out, not the end of the command; Ctrl-C ends it even while a request is retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_finds_late_streams_survives_outages_and_stops_on_ctrl_c() -> Result<()> {
    let data = tempfile::tempdir()?;
    let wharf = Wharf::start("server", data.path())?;
    let ecs = wharf.ecs_client().await;
    ecs.create_cluster().cluster_name(CLUSTER).send().await?;
    fake_agent(&wharf, &ecs).await?;
    ecs.register_task_definition()
        .family("late")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web")
                .image("wharf-test/busybox:latest")
                .memory(64)
                // No stream prefix: Docker names the stream after the container id, which a
                // task has only once it started.
                .log_configuration(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Awslogs)
                        .options("awslogs-group", GROUP)
                        .options("awslogs-region", &wharf.region)
                        .build()?,
                )
                .build(),
        )
        .send()
        .await?;
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name("late")
        .task_definition("late")
        .desired_count(1)
        .send()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let task_arn = loop {
        let listed = ecs
            .list_tasks()
            .cluster(CLUSTER)
            .service_name("late")
            .send()
            .await?;
        if let Some(arn) = listed.task_arns().first() {
            break arn.clone();
        }
        ensure!(Instant::now() < deadline, "the service started no task");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let logs = logs_client(&wharf).await;
    logs.create_log_group()
        .log_group_name(GROUP)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("CreateLogGroup: {e:?}"))?;

    let proxy = Proxy::start(&wharf.endpoint).await?;
    let mut child = wharf_command(
        &wharf,
        &[
            "logs",
            "--cluster",
            CLUSTER,
            "--service",
            "late",
            "--container",
            "web",
            "--follow",
        ],
    )
    .env("AWS_ENDPOINT_URL", &proxy.endpoint)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let mut stdout = Lines::read(child.stdout.take().context("stdout")?);
    let mut stderr = Lines::read(child.stderr.take().context("stderr")?);
    let outcome = async {
        stderr.wait_for("has not started yet", 15)?;
        // The task starts: its container gets an id, and its stream that name.
        let runtime_id = "c0ffee0123456789abcdef";
        let report = serde_json::json!({
            "cluster": CLUSTER,
            "taskArn": task_arn,
            "lastStatus": "RUNNING",
            "containers": [{"name": "web", "lastStatus": "RUNNING", "runtimeId": runtime_id}],
        });
        let _: serde_json::Value = agent_client(&wharf, &wharf.endpoint)?
            .call(
                agent::client::Service::Agent,
                "ReportTaskState",
                &report,
                Duration::from_secs(10),
            )
            .await?;
        put(&logs, runtime_id, &[(now_millis(), "started late")]).await?;
        stdout.wait_for("| started late", 15)?;
        // Noted once, not at every poll that described the task again.
        ensure!(
            stderr.count("has not started yet") == 1,
            "{:#?}",
            stderr.seen
        );

        // An outage longer than the SDK's own retries: reported, then ridden out.
        proxy.set_up(false);
        stderr.wait_for("retrying every second", 30)?;
        put(&logs, runtime_id, &[(now_millis(), "during the outage")]).await?;
        proxy.set_up(true);
        stdout.wait_for("| during the outage", 20)?;
        stderr.wait_for("connected again", 5)?;
        ensure!(child.try_wait()?.is_none(), "wharf logs -f ended");

        // Ctrl-C while requests fail and are being retried ends the command at once.
        proxy.set_up(false);
        stderr.wait_for("retrying every second", 30)?;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()?;
        ensure!(killed.success(), "kill -INT failed");
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            ensure!(
                Instant::now() < deadline,
                "wharf logs -f did not stop on Ctrl-C"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        ensure!(status.success(), "{status:?}: {:#?}", stderr.seen);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome
}
