//! Harness for end-to-end tests: real `wharf` processes on loopback and the real aws CLI from
//! PyPI (in the virtual environment `scripts/e2e-venv` prepares) talking to them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running `wharf` process and the environment its banner printed.
pub struct Wharf {
    child: Child,
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl Wharf {
    /// Start `wharf <subcommand> --listen 127.0.0.1:0 --data-dir DIR` and wait for its banner.
    pub fn start(subcommand: &str, data_dir: &Path) -> Result<Wharf> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args([subcommand, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("WHARF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning wharf")?;
        let stdout = child.stdout.take().context("wharf stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the banner so wharf never writes into a closed pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = sender.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut exports = std::collections::HashMap::new();
        while !exports.contains_key("AWS_ENDPOINT_URL") {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match receiver.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    bail!("wharf did not print its endpoint within 30 s");
                }
            };
            if let Some((name, value)) = line
                .strip_prefix("export ")
                .and_then(|rest| rest.split_once('='))
            {
                exports.insert(name.to_string(), value.to_string());
            }
        }
        Ok(Wharf {
            child,
            endpoint: exports["AWS_ENDPOINT_URL"].clone(),
            access_key_id: exports["AWS_ACCESS_KEY_ID"].clone(),
            secret_access_key: exports["AWS_SECRET_ACCESS_KEY"].clone(),
            region: exports["AWS_DEFAULT_REGION"].clone(),
        })
    }

    /// An `aws-sdk-ecs` client signed with this server's keys.
    pub async fn ecs_client(&self) -> aws_sdk_ecs::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                &self.access_key_id,
                &self.secret_access_key,
                None,
                None,
                "wharf-tests",
            ))
            .load()
            .await;
        aws_sdk_ecs::Client::new(&config)
    }

    /// Like `ecs_client`, once a `wharf up`'s local agent has registered (within 60 s).
    pub async fn ecs_client_with_agent(&self) -> Result<aws_sdk_ecs::Client> {
        let ecs = self.ecs_client().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listed = ecs.list_container_instances().send().await;
            if listed
                .as_ref()
                .is_ok_and(|l| !l.container_instance_arns().is_empty())
            {
                return Ok(ecs);
            }
            if Instant::now() > deadline {
                bail!("the local agent did not register within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL the process, as a crash or power cut would end it.
    pub fn kill9(mut self) -> Result<()> {
        self.child.kill().context("kill -9 wharf")?;
        self.child.wait().context("reaping wharf")?;
        Ok(())
    }

    /// Run the aws CLI against this server with its printed credentials.
    pub fn aws(&self, args: &[&str]) -> Result<Output> {
        self.aws_with_secret(&self.secret_access_key, args)
    }

    /// Run the aws CLI signing with a chosen secret (to test refusals).
    pub fn aws_with_secret(&self, secret: &str, args: &[&str]) -> Result<Output> {
        let output = Command::new(aws_cli()?)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_PAGER", "")
            .output()
            .context("running the aws CLI")?;
        Ok(output)
    }

    /// Run the aws CLI, require success and parse its JSON output.
    pub fn aws_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let output = self.aws(args)?;
        if !output.status.success() {
            bail!(
                "aws {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&output.stdout)
            .with_context(|| format!("aws {} printed non-JSON", args.join(" ")))
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` until it returns `Some`, failing after `seconds`.
pub fn wait_for<T>(
    seconds: u64,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {seconds} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `wharf up` whose local agent has registered, with the test image built; its containers
/// are removed when it is dropped.
pub struct Up {
    pub wharf: Wharf,
    pub instance_arn: String,
    pub cleanup: agent::testing::DockerCleanup,
    /// The containers of the local Fargate agent (its instance is hidden from the API; its
    /// ARN is read from its identity file).
    pub fargate_cleanup: agent::testing::DockerCleanup,
}

impl Up {
    pub fn start(data_dir: &Path) -> Result<Up> {
        agent::testing::ensure_test_image();
        let wharf = Wharf::start("up", data_dir)?;
        let instance_arn = wait_for(60, "the local agent to register", || {
            let listed = wharf.aws_json(&["ecs", "list-container-instances"])?;
            Ok(listed["containerInstanceArns"][0]
                .as_str()
                .map(str::to_string))
        })?;
        let cleanup = agent::testing::DockerCleanup::new(&instance_arn);
        let identity = data_dir.join("agent-fargate").join("agent-state.json");
        let fargate_arn = wait_for(60, "the local Fargate agent to register", || {
            let Ok(text) = std::fs::read_to_string(&identity) else {
                return Ok(None);
            };
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            Ok(value["containerInstanceArn"].as_str().map(str::to_string))
        })?;
        let fargate_cleanup = agent::testing::DockerCleanup::new(&fargate_arn);
        Ok(Up {
            wharf,
            instance_arn,
            cleanup,
            fargate_cleanup,
        })
    }

    /// Register a task definition from inline JSON (the containerDefinitions list and extras).
    pub fn register(
        &self,
        family: &str,
        containers: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let input = serde_json::json!({"family": family, "containerDefinitions": containers});
        self.wharf.aws_json(&[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &input.to_string(),
        ])
    }

    /// RunTask of `family`, returning the task ARN.
    pub fn run(&self, family: &str) -> Result<String> {
        let ran = self
            .wharf
            .aws_json(&["ecs", "run-task", "--task-definition", family])?;
        ran["tasks"][0]["taskArn"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("run-task placed nothing: {ran}"))
    }

    pub fn describe(&self, task_arn: &str) -> Result<serde_json::Value> {
        let described = self
            .wharf
            .aws_json(&["ecs", "describe-tasks", "--tasks", task_arn])?;
        Ok(described["tasks"][0].clone())
    }

    /// `aws ecs wait tasks-running|tasks-stopped`, the botocore waiters tools use.
    pub fn wait(&self, waiter: &str, task_arn: &str) -> Result<()> {
        let output = self
            .wharf
            .aws(&["ecs", "wait", waiter, "--tasks", task_arn])?;
        if !output.status.success() {
            bail!(
                "aws ecs wait {waiter} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

/// The aws CLI from the test virtual environment (`scripts/e2e-venv` creates it).
pub fn aws_cli() -> Result<PathBuf> {
    let venv = match std::env::var_os("WHARF_E2E_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-venv"),
    };
    let aws = venv.join("bin/aws");
    if !aws.exists() {
        bail!(
            "the aws CLI is not installed at {}; run `WHARF_E2E_VENV={} scripts/e2e-venv` or the README's test command `scripts/test`",
            aws.display(),
            venv.display()
        );
    }
    Ok(aws)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An extra `wharf agent` process joining a server's `default` cluster with its own data
/// directory (another container instance on the same Docker engine). Killed when dropped; its
/// containers are removed by `cleanup`.
pub struct ExtraAgent {
    child: Option<Child>,
    pub instance_arn: String,
    pub cleanup: agent::testing::DockerCleanup,
}

impl ExtraAgent {
    /// Start `wharf agent --server URL --cluster default --data-dir DIR` with the server's keys
    /// and wait until its container instance is registered.
    pub fn start(wharf: &Wharf, data_dir: &Path, availability_zone: &str) -> Result<ExtraAgent> {
        let known = instance_arns(wharf)?;
        let child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["agent", "--server", &wharf.endpoint, "--cluster", "default"])
            .args(["--availability-zone", availability_zone, "--data-dir"])
            .arg(data_dir)
            .env("AWS_ACCESS_KEY_ID", &wharf.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &wharf.secret_access_key)
            .env("AWS_DEFAULT_REGION", &wharf.region)
            .env("WHARF_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning wharf agent")?;
        let mut agent = ExtraAgent {
            child: Some(child),
            instance_arn: String::new(),
            cleanup: agent::testing::DockerCleanup::new(""),
        };
        agent.instance_arn = wait_for(60, "the extra agent to register", || {
            Ok(instance_arns(wharf)?
                .into_iter()
                .find(|a| !known.contains(a)))
        })?;
        agent.cleanup = agent::testing::DockerCleanup::new(&agent.instance_arn);
        Ok(agent)
    }

    /// SIGKILL the agent process; its containers keep running (until `cleanup`).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ExtraAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every registered container instance ARN of the `default` cluster.
pub fn instance_arns(wharf: &Wharf) -> Result<Vec<String>> {
    let listed = wharf.aws_json(&["ecs", "list-container-instances"])?;
    Ok(listed["containerInstanceArns"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

impl Up {
    /// DescribeServices of one service.
    pub fn service(&self, name: &str) -> Result<serde_json::Value> {
        let described = self
            .wharf
            .aws_json(&["ecs", "describe-services", "--services", name])?;
        Ok(described["services"][0].clone())
    }

    /// The service's tasks with a desired status (RUNNING or STOPPED), described.
    pub fn service_tasks(&self, name: &str, desired: &str) -> Result<Vec<serde_json::Value>> {
        let listed = self.wharf.aws_json(&[
            "ecs",
            "list-tasks",
            "--service-name",
            name,
            "--desired-status",
            desired,
        ])?;
        let arns: Vec<String> = listed["taskArns"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["ecs", "describe-tasks", "--tasks"];
        args.extend(arns.iter().map(String::as_str));
        let described = self.wharf.aws_json(&args)?;
        Ok(described["tasks"].as_array().cloned().unwrap_or_default())
    }

    /// Every event message of a service, newest first.
    pub fn service_events(&self, name: &str) -> Result<Vec<String>> {
        Ok(self.service(name)?["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| e["message"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Wait until the service has `count` RUNNING tasks and one deployment, COMPLETED.
    pub fn wait_stable(&self, name: &str, count: u64, seconds: u64) -> Result<serde_json::Value> {
        wait_for(seconds, &format!("{name} stable at {count} tasks"), || {
            let service = self.service(name)?;
            let deployments = service["deployments"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let stable = service["runningCount"] == count
                && service["desiredCount"] == count
                && deployments.len() == 1
                && deployments[0]["rolloutState"] == "COMPLETED";
            Ok(stable.then_some(service))
        })
    }
}
