//! The `wharf` binary: thin wiring of configuration, signals and the crates.
//! `wharf server` runs the API endpoint; `wharf agent` runs a container-instance agent;
//! `wharf up` runs everything one laptop needs in one process: the server on the embedded
//! SQLite store, a local agent registered in the `default` cluster and a local load-balancer
//! node; `wharf lb` runs a load-balancer node on its own.

mod bench;
mod ops;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Print a line for the operator. A closed stdout (a detached terminal, a reader that went
/// away) must never take the server down, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The same for stderr: warnings and errors the operator must see.
macro_rules! warn_operator {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
use clap::{Args, Parser, Subcommand};
use controlplane::{Credentials, Server, ServerConfig};
use store::clock::SystemClock;
use store::SqliteStore;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Parser)]
#[command(name = "wharf", version, about = "Wharf: Amazon ECS you run yourself")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system in one process: the API server on the embedded store and a local
    /// agent on this machine's Docker, registered in the `default` cluster.
    Up(UpArgs),
    /// Run one API server replica.
    Server(ServerArgs),
    /// Run a container-instance agent on this host's Docker engine.
    Agent(AgentArgs),
    /// Run a load-balancer data plane node: serves every ALB and NLB of a server.
    Lb(LbArgs),
    /// Print a task's or a service's container logs (CloudWatch Logs), optionally following.
    Logs(ops::LogsArgs),
    /// A live table of a cluster's running tasks: CPU and memory used against reserved.
    Top(ops::TopArgs),
    /// Benchmarks that print ratios against a floor measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Placement throughput through RunTask's code path down to durable commits.
    Placement(bench::PlacementArgs),
}

#[derive(Args, Clone)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Do not start the local agent (API only).
    #[arg(long, env = "WHARF_NO_AGENT")]
    no_agent: bool,
    /// Do not start the local load-balancer data plane (load balancers stay `provisioning`).
    #[arg(long, env = "WHARF_NO_LB")]
    no_lb: bool,
    #[command(flatten)]
    agent: AgentTuning,
}

/// Agent settings shared by `wharf agent` and the local agent of `wharf up`.
#[derive(Args, Clone)]
struct AgentTuning {
    /// Custom attribute for this container instance, KEY=VALUE (repeatable).
    #[arg(long = "attribute", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// CPU units to register instead of cores x 1024.
    #[arg(long, env = "WHARF_AGENT_CPU")]
    cpu: Option<i64>,
    /// Memory (MiB) to register instead of the host's.
    #[arg(long, env = "WHARF_AGENT_MEMORY")]
    memory: Option<i64>,
    /// CPU units held back from tasks.
    #[arg(long, env = "WHARF_AGENT_RESERVED_CPU", default_value_t = 0)]
    reserved_cpu: i64,
    /// Memory (MiB) held back from tasks.
    #[arg(long, env = "WHARF_AGENT_RESERVED_MEMORY", default_value_t = 0)]
    reserved_memory: i64,
    /// The `ecs.availability-zone` attribute (default: the region + "a").
    #[arg(long, env = "WHARF_AGENT_AVAILABILITY_ZONE")]
    availability_zone: Option<String>,
    /// The `ecs.instance-type` attribute.
    #[arg(long, env = "WHARF_AGENT_INSTANCE_TYPE", default_value = "wharf.local")]
    instance_type: String,
    /// When images are pulled: default (pull, fall back to the cached image), always (a failed
    /// pull fails the task), prefer-cached (pull only when the image is missing).
    #[arg(long, env = "WHARF_AGENT_IMAGE_PULL_BEHAVIOR", value_enum, default_value_t = PullBehavior::Default)]
    image_pull_behavior: PullBehavior,
    /// How long stopped containers are kept before removal, in seconds.
    #[arg(long, env = "WHARF_AGENT_TASK_CLEANUP_WAIT", default_value_t = 3 * 3600)]
    task_cleanup_wait_seconds: u64,
}

#[derive(Args, Clone)]
struct AgentArgs {
    /// The Wharf endpoint to register with.
    #[arg(long, env = "WHARF_SERVER", default_value = "http://127.0.0.1:4566")]
    server: String,
    /// The cluster to join (created if missing).
    #[arg(long, env = "WHARF_CLUSTER", default_value = "default")]
    cluster: String,
    /// Directory for the agent's identity.
    #[arg(long, env = "WHARF_AGENT_DATA_DIR", default_value = ".wharf-agent")]
    data_dir: PathBuf,
    /// The signing region.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// Access key id to sign with (the server prints it).
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key_id: String,
    /// Secret for --access-key-id.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    /// The kind of capacity this instance provides: ec2, or fargate (registered as the
    /// attribute wharf.capacity-type=FARGATE).
    #[arg(long, env = "WHARF_AGENT_CAPACITY_TYPE", value_enum, default_value_t = CapacityType::Ec2)]
    capacity_type: CapacityType,
    /// This host's address as load balancers reach its tasks' published ports (instance
    /// targets); registered as the identity document's privateIp.
    #[arg(long, env = "WHARF_AGENT_HOST_ADDRESS", default_value = "127.0.0.1")]
    host_address: std::net::Ipv4Addr,
    #[command(flatten)]
    tuning: AgentTuning,
}

#[derive(Args, Clone)]
struct LbArgs {
    /// The Wharf endpoint whose load balancers to serve.
    #[arg(long, env = "WHARF_SERVER", default_value = "http://127.0.0.1:4566")]
    server: String,
    /// This node's name in target-health reports (default: the host name).
    #[arg(long, env = "WHARF_LB_NODE")]
    node: Option<String>,
    /// The signing region.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// Access key id to sign with (the server prints it).
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key_id: String,
    /// Secret for --access-key-id.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    /// Threads serving client connections (default: one per core).
    #[arg(long, env = "WHARF_LB_WORKERS")]
    workers: Option<usize>,
}

/// `wharf agent --capacity-type`'s values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CapacityType {
    Ec2,
    Fargate,
}

/// `ECS_IMAGE_PULL_BEHAVIOR`'s values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum PullBehavior {
    Default,
    Always,
    PreferCached,
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Address to serve the AWS APIs on.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Directory for the store, keys and other state.
    #[arg(long, env = "WHARF_DATA_DIR", default_value = ".wharf")]
    data_dir: PathBuf,
    /// The AWS region this server pretends to be.
    #[arg(long, env = "WHARF_REGION", default_value = "us-east-1")]
    region: String,
    /// The 12-digit account id used in ARNs.
    #[arg(long, env = "WHARF_ACCOUNT_ID", default_value = "000000000000")]
    account_id: String,
    /// Use this access key id instead of the generated one (needs --secret-access-key).
    #[arg(long, env = "WHARF_ACCESS_KEY_ID", requires = "secret_access_key")]
    access_key_id: Option<String>,
    /// The secret for --access-key-id.
    #[arg(
        long,
        env = "WHARF_SECRET_ACCESS_KEY",
        requires = "access_key_id",
        hide_env_values = true
    )]
    secret_access_key: Option<String>,
    /// Seconds an agent may be disconnected before its tasks are marked STOPPED.
    #[arg(long, env = "WHARF_AGENT_DISCONNECT_GRACE", default_value_t = 300)]
    agent_disconnect_grace_seconds: u64,
    /// Seconds STOPPED tasks stay describable.
    #[arg(long, env = "WHARF_TASK_RETENTION", default_value_t = 3600)]
    task_retention_seconds: u64,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => run_up(args).await,
            Command::Server(args) => run_server(args, "wharf server", None, false).await,
            Command::Agent(args) => run_agent(args).await,
            Command::Lb(args) => run_lb(args).await,
            Command::Logs(args) => ops::logs(args).await,
            Command::Top(args) => ops::top(args).await,
            Command::Bench(BenchCommand::Placement(args)) => bench::placement(args).await,
        }
    })
}

fn check_args(args: &ServerArgs) -> Result<()> {
    if args.account_id.len() != 12 || !args.account_id.chars().all(|c| c.is_ascii_digit()) {
        bail!("--account-id must be 12 digits, got '{}'", args.account_id);
    }
    if args.region.is_empty()
        || !args
            .region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        bail!(
            "--region must look like an AWS region (for example us-east-1), got '{}'",
            args.region
        );
    }
    Ok(())
}

/// `wharf up`: the server, then a local agent signing with the server's own keys.
async fn run_up(args: UpArgs) -> Result<()> {
    let local_agent = if args.no_agent {
        None
    } else {
        Some(args.agent.clone())
    };
    run_server(args.server, "wharf up", local_agent, !args.no_lb).await
}

/// A data-plane node signing with `credentials`, on the current runtime.
fn start_lb(
    server: &str,
    node: String,
    region: &str,
    credentials: agent::AgentCredentials,
    workers: Option<usize>,
    cancel: CancellationToken,
) -> Result<lb::LoadBalancerHandle> {
    let client = Arc::new(
        lb::control_plane::Client::new(server, credentials, region)
            .with_context(|| format!("cannot use {server} as the server endpoint"))?,
    );
    let mut config = lb::LoadBalancerConfig::new(node);
    if let Some(workers) = workers {
        config.workers = workers;
    }
    Ok(lb::LoadBalancerNode::start(
        config,
        client.clone(),
        client,
        cancel,
    ))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

async fn run_lb(args: LbArgs) -> Result<()> {
    let cancel = CancellationToken::new();
    let node = args.node.clone().unwrap_or_else(host_name);
    let handle = start_lb(
        &args.server,
        node.clone(),
        &args.region,
        agent::AgentCredentials {
            access_key_id: args.access_key_id.clone(),
            secret_access_key: args.secret_access_key.clone(),
        },
        args.workers,
        cancel.clone(),
    )?;
    say!(
        "wharf lb: node {node} serving the load balancers of {}",
        args.server
    );
    shutdown_signal().await;
    info!("shutting down the load balancer node");
    handle.shutdown();
    handle.wait().await;
    Ok(())
}

fn agent_config(
    server: &str,
    cluster: &str,
    data_dir: PathBuf,
    region: &str,
    credentials: agent::AgentCredentials,
    tuning: &AgentTuning,
) -> agent::AgentConfig {
    let mut config = agent::AgentConfig::new(server, credentials, data_dir);
    config.cluster = cluster.to_string();
    config.region = region.to_string();
    config.attributes = tuning.attributes.clone();
    config.cpu_units = tuning.cpu;
    config.memory_mib = tuning.memory;
    config.reserved_memory_mib = tuning.reserved_memory;
    config.reserved_cpu_units = tuning.reserved_cpu;
    config.availability_zone = tuning.availability_zone.clone();
    config.instance_type = tuning.instance_type.clone();
    config.task_cleanup_wait = Duration::from_secs(tuning.task_cleanup_wait_seconds);
    config.image_pull_behavior = match tuning.image_pull_behavior {
        PullBehavior::Default => agent::runtime::ImagePullBehavior::Default,
        PullBehavior::Always => agent::runtime::ImagePullBehavior::Always,
        PullBehavior::PreferCached => agent::runtime::ImagePullBehavior::PreferCached,
    };
    config
}

/// Connect to the local Docker engine, or say how to get one.
async fn docker() -> Result<Arc<dyn agent::ContainerRuntime>> {
    let runtime = agent::DockerRuntime::connect().await.map_err(|error| {
        anyhow::anyhow!(
            "cannot reach the Docker engine ({error}); install it with `apt-get install docker.io`, start it with `dockerd &` (or `systemctl start docker`), or set DOCKER_HOST"
        )
    })?;
    Ok(Arc::new(runtime))
}

async fn run_agent(args: AgentArgs) -> Result<()> {
    let runtime = docker().await?;
    let credentials = agent::AgentCredentials {
        access_key_id: args.access_key_id.clone(),
        secret_access_key: args.secret_access_key.clone(),
    };
    let mut config = agent_config(
        &args.server,
        &args.cluster,
        args.data_dir.clone(),
        &args.region,
        credentials,
        &args.tuning,
    );
    config.capacity_type = match args.capacity_type {
        CapacityType::Ec2 => agent::CapacityType::Ec2,
        CapacityType::Fargate => agent::CapacityType::Fargate,
    };
    config.host_address = args.host_address.to_string();
    let cancel = CancellationToken::new();
    let mut agent = tokio::spawn(agent::Agent::run(
        config,
        runtime,
        Arc::new(SystemClock),
        cancel.clone(),
    ));
    say!(
        "wharf agent: joining cluster {} at {}",
        args.cluster,
        args.server
    );
    tokio::select! {
        _ = shutdown_signal() => {
            info!("shutting down the agent; its containers keep running and are re-adopted on restart");
            cancel.cancel();
            agent.await??;
        }
        // The agent only returns by itself when it cannot start (it retries everything else).
        result = &mut agent => result?.context("the agent stopped")?,
    }
    Ok(())
}

async fn run_server(
    args: ServerArgs,
    what: &str,
    local_agent: Option<AgentTuning>,
    local_lb: bool,
) -> Result<()> {
    check_args(&args)?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}; pick another with --data-dir",
            args.data_dir.display()
        )
    })?;
    let credentials = match (&args.access_key_id, &args.secret_access_key) {
        (Some(id), Some(secret)) => Credentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
        },
        _ => {
            let (credentials, created) = Credentials::load_or_create(&args.data_dir)?;
            if created {
                info!(dir = %args.data_dir.display(), "created new access keys");
            }
            credentials
        }
    };
    let clock = Arc::new(SystemClock);
    let store_path = args.data_dir.join("wharf.db");
    let store = SqliteStore::open(&store_path, clock.clone())
        .with_context(|| format!("cannot open the store at {}", store_path.display()))?;
    let config = ServerConfig {
        listen: args.listen,
        region: args.region.clone(),
        account_id: args.account_id.clone(),
        credentials: vec![credentials.clone()],
        instance_health: controlplane::InstanceHealthSettings {
            disconnect_grace: Duration::from_secs(args.agent_disconnect_grace_seconds),
            task_retention: Duration::from_secs(args.task_retention_seconds),
            ..Default::default()
        },
        services: Default::default(),
        telemetry_dir: Some(args.data_dir.clone()),
        load_balancer_address_pool: controlplane::elbv2::DEFAULT_ADDRESS_POOL.to_string(),
    };
    let server = Server::start(config, Arc::new(store), clock)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another wharf running? pick another port with --listen",
                args.listen
            )
        })?;
    print_banner(
        what,
        &server.endpoint(),
        &args,
        &credentials,
        &args.data_dir,
    );
    let cancel = CancellationToken::new();
    // The local agents: one offering EC2 capacity (a container instance) and one offering
    // Fargate capacity (hidden from the container-instance APIs), on the same Docker engine;
    // each manages only the containers it labelled.
    let mut local: tokio::task::JoinSet<Result<(), agent::AgentError>> =
        tokio::task::JoinSet::new();
    if let Some(tuning) = local_agent {
        match docker().await {
            Ok(runtime) => {
                for (directory, capacity_type) in [
                    ("agent", agent::CapacityType::Ec2),
                    ("agent-fargate", agent::CapacityType::Fargate),
                ] {
                    let mut config = agent_config(
                        &server.endpoint(),
                        "default",
                        args.data_dir.join(directory),
                        &args.region,
                        agent::AgentCredentials {
                            access_key_id: credentials.access_key_id.clone(),
                            secret_access_key: credentials.secret_access_key.clone(),
                        },
                        &tuning,
                    );
                    config.capacity_type = capacity_type;
                    local.spawn(agent::Agent::run(
                        config,
                        runtime.clone(),
                        Arc::new(SystemClock),
                        cancel.clone(),
                    ));
                }
                say!("local agents: this machine's Docker engine offers EC2 and Fargate capacity in cluster default");
            }
            Err(error) => {
                warn_operator!("warning: no local agent, tasks cannot run here: {error:#}")
            }
        }
    }
    // The local load-balancer node: every ALB and NLB gets a loopback address its listeners
    // bind here.
    let local_lb = if local_lb {
        let handle = start_lb(
            &server.endpoint(),
            format!("{}-local", host_name()),
            &args.region,
            agent::AgentCredentials {
                access_key_id: credentials.access_key_id.clone(),
                secret_access_key: credentials.secret_access_key.clone(),
            },
            None,
            cancel.clone(),
        )?;
        say!("local load balancer: ALBs and NLBs listen on their DNSName (a 127.x.y.z address)");
        Some(handle)
    } else {
        None
    };
    let agent_stopped = async {
        if local.is_empty() {
            std::future::pending::<()>().await;
        }
        if let Some(result) = local.join_next().await {
            report_agent_exit(result);
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        // An agent only returns by itself when it cannot start (it retries everything else);
        // the API keeps serving so what it says can be inspected.
        _ = agent_stopped => {
            shutdown_signal().await;
        }
    }
    info!("shutting down");
    // The agents first (their containers keep running and are re-adopted next time), then
    // the API.
    cancel.cancel();
    while let Some(result) = local.join_next().await {
        report_agent_exit(result);
    }
    if let Some(handle) = local_lb {
        handle.wait().await;
    }
    server.shutdown().await;
    Ok(())
}

fn report_agent_exit(result: Result<Result<(), agent::AgentError>, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => warn_operator!("error: the local agent stopped: {error}"),
        Err(error) => warn_operator!("error: the local agent panicked: {error}"),
    }
}

fn print_banner(
    what: &str,
    endpoint: &str,
    args: &ServerArgs,
    credentials: &Credentials,
    data_dir: &Path,
) {
    say!(
        "{what} is ready: {endpoint} (region {}, account {})",
        args.region,
        args.account_id
    );
    say!("state: {}", data_dir.display());
    say!();
    say!("Paste into your shell to point the aws CLI, boto3 and the AWS SDKs at it:");
    say!();
    say!("export AWS_ACCESS_KEY_ID={}", credentials.access_key_id);
    say!(
        "export AWS_SECRET_ACCESS_KEY={}",
        credentials.secret_access_key
    );
    say!("export AWS_DEFAULT_REGION={}", args.region);
    say!("export AWS_ENDPOINT_URL={endpoint}");
    say!();
    say!("Then, for example:");
    say!();
    say!("aws ecs list-container-instances");
    say!("aws ecs register-task-definition --family hello --container-definitions '[{{\"name\":\"hello\",\"image\":\"wharf-test/busybox:latest\",\"memory\":64,\"command\":[\"sh\",\"-c\",\"echo hello; sleep 30\"]}}]'");
    say!("aws ecs run-task --task-definition hello");
    say!("aws ecs list-tasks");
    say!();
    say!("Stop with Ctrl-C; starting again resumes with the same state and keys.");
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
