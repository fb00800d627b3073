//! The `wharf` binary: thin wiring of configuration, signals and the control plane.
//! `wharf server` runs the API endpoint; `wharf up` runs everything one laptop needs in one
//! process (today the server on the embedded SQLite store; the local agent, registry and load
//! balancer join it as they land).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use controlplane::{Credentials, Server, ServerConfig};
use store::clock::SystemClock;
use store::SqliteStore;
use tracing::info;

#[derive(Parser)]
#[command(name = "wharf", version, about = "Wharf: Amazon ECS you run yourself")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system in one process: the API server on the embedded store (and, as they
    /// land, a local agent, registry and load balancer).
    Up(ServerArgs),
    /// Run one API server replica.
    Server(ServerArgs),
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
            Command::Up(args) => run_server(args, "wharf up").await,
            Command::Server(args) => run_server(args, "wharf server").await,
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

async fn run_server(args: ServerArgs, what: &str) -> Result<()> {
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
        instance_health: Default::default(),
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
    shutdown_signal().await;
    info!("shutting down");
    server.shutdown().await;
    Ok(())
}

fn print_banner(
    what: &str,
    endpoint: &str,
    args: &ServerArgs,
    credentials: &Credentials,
    data_dir: &Path,
) {
    println!(
        "{what} is ready: {endpoint} (region {}, account {})",
        args.region, args.account_id
    );
    println!("state: {}", data_dir.display());
    println!();
    println!("Paste into your shell to point the aws CLI, boto3 and the AWS SDKs at it:");
    println!();
    println!("export AWS_ACCESS_KEY_ID={}", credentials.access_key_id);
    println!(
        "export AWS_SECRET_ACCESS_KEY={}",
        credentials.secret_access_key
    );
    println!("export AWS_DEFAULT_REGION={}", args.region);
    println!("export AWS_ENDPOINT_URL={endpoint}");
    println!();
    println!("Then, for example:");
    println!();
    println!("aws ecs create-cluster --cluster-name default");
    println!("aws ecs list-clusters");
    println!();
    println!("Stop with Ctrl-C; starting again resumes with the same state and keys.");
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
