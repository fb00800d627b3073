//! [`NetworkEnforcer`]: the seam through which the agent changes a task's network namespace
//! from the host. [`IptablesEnforcer`] runs `nsenter -t <pid> -n iptables-restore` (and `ip`)
//! on this host, so it needs root, the engine on the same host, and iptables installed;
//! [`FakeEnforcer`] records what it was asked, for tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// How long one nsenter call may take (iptables waits for the xtables lock within it).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a namespace could not be changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnforcerError {
    #[error("{tool} is not installed on this host; the agent needs it to enforce security groups (apt-get install iptables util-linux iproute2)")]
    MissingTool { tool: String },
    #[error("{command} failed: {message}")]
    Failed { command: String, message: String },
}

/// Changes the network namespace of a process (the pause container of a task).
#[async_trait::async_trait]
pub trait NetworkEnforcer: std::fmt::Debug + Send + Sync + 'static {
    /// Replaces the `filter` table of the namespace of process `pid` with `ruleset` (the
    /// input of `iptables-restore`), atomically: no packet sees half of it.
    async fn restore_filter(&self, pid: i64, ruleset: &str) -> Result<(), EnforcerError>;

    /// Sets the MAC address of `interface` in the namespace of process `pid`.
    async fn set_mac_address(
        &self,
        pid: i64,
        interface: &str,
        mac_address: &str,
    ) -> Result<(), EnforcerError>;
}

/// iptables and ip run inside the namespace through nsenter.
#[derive(Debug, Clone, Default)]
pub struct IptablesEnforcer;

/// The tool's path on `PATH` (plus the sbin directories, which a non-login PATH may lack).
fn find_tool(tool: &str) -> Result<PathBuf, EnforcerError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| EnforcerError::MissingTool {
            tool: tool.to_string(),
        })
}

/// Runs `nsenter -t <pid> -n <tool> <args>` with `input` on stdin.
async fn in_namespace(
    pid: i64,
    tool: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<(), EnforcerError> {
    let nsenter = find_tool("nsenter")?;
    let tool_path = find_tool(tool)?;
    let command_line = format!("nsenter -t {pid} -n {tool} {}", args.join(" "));
    let failed = |message: String| EnforcerError::Failed {
        command: command_line.clone(),
        message,
    };
    let mut command = tokio::process::Command::new(nsenter);
    command
        .arg("-t")
        .arg(pid.to_string())
        .arg("-n")
        .arg(&tool_path)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| failed(e.to_string()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| failed(format!("writing its input: {e}")))?;
        // Dropping stdin closes it: iptables-restore reads to the end.
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer within {} s", COMMAND_TIMEOUT.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(failed(format!("{} ({stderr})", output.status)))
    }
}

#[async_trait::async_trait]
impl NetworkEnforcer for IptablesEnforcer {
    async fn restore_filter(&self, pid: i64, ruleset: &str) -> Result<(), EnforcerError> {
        // Without --noflush the tables named in the input are replaced whole, in one commit.
        in_namespace(pid, "iptables-restore", &["-w", "5"], Some(ruleset)).await
    }

    async fn set_mac_address(
        &self,
        pid: i64,
        interface: &str,
        mac_address: &str,
    ) -> Result<(), EnforcerError> {
        in_namespace(
            pid,
            "ip",
            &["link", "set", "dev", interface, "address", mac_address],
            None,
        )
        .await
    }
}

impl IptablesEnforcer {
    /// The tools it needs that are not installed (for a clear start-up warning).
    pub fn missing_tools() -> Vec<String> {
        ["nsenter", "iptables-restore", "ip"]
            .into_iter()
            .filter(|tool| find_tool(tool).is_err())
            .map(str::to_string)
            .collect()
    }
}

#[derive(Debug, Default)]
struct FakeState {
    /// Every ruleset loaded, per pid, in order.
    rulesets: BTreeMap<i64, Vec<String>>,
    macs: BTreeMap<(i64, String), String>,
    failure: Option<EnforcerError>,
}

/// Records every call; can be told to fail. Cheap to clone; clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeEnforcer {
    state: Arc<Mutex<FakeState>>,
}

impl FakeEnforcer {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every ruleset loaded into the namespace of `pid`, in order.
    pub fn rulesets(&self, pid: i64) -> Vec<String> {
        self.lock().rulesets.get(&pid).cloned().unwrap_or_default()
    }

    /// The ruleset in force in the namespace of `pid`.
    pub fn current(&self, pid: i64) -> Option<String> {
        self.rulesets(pid).pop()
    }

    /// The MAC address set on `interface` in the namespace of `pid`.
    pub fn mac_address(&self, pid: i64, interface: &str) -> Option<String> {
        self.lock().macs.get(&(pid, interface.to_string())).cloned()
    }

    /// Every later call fails with `error` (`None`: calls succeed again).
    pub fn fail_with(&self, error: Option<EnforcerError>) {
        self.lock().failure = error;
    }
}

#[async_trait::async_trait]
impl NetworkEnforcer for FakeEnforcer {
    async fn restore_filter(&self, pid: i64, ruleset: &str) -> Result<(), EnforcerError> {
        let mut state = self.lock();
        if let Some(error) = state.failure.clone() {
            return Err(error);
        }
        state
            .rulesets
            .entry(pid)
            .or_default()
            .push(ruleset.to_string());
        Ok(())
    }

    async fn set_mac_address(
        &self,
        pid: i64,
        interface: &str,
        mac_address: &str,
    ) -> Result<(), EnforcerError> {
        let mut state = self.lock();
        if let Some(error) = state.failure.clone() {
            return Err(error);
        }
        state
            .macs
            .insert((pid, interface.to_string()), mac_address.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named() {
        assert_eq!(
            find_tool("wharf-no-such-tool"),
            Err(EnforcerError::MissingTool {
                tool: "wharf-no-such-tool".into()
            })
        );
        assert!(EnforcerError::MissingTool {
            tool: "iptables-restore".into()
        }
        .to_string()
        .starts_with("iptables-restore is not installed on this host"));
    }

    #[tokio::test]
    async fn the_fake_records_and_fails_on_demand() {
        let fake = FakeEnforcer::default();
        fake.restore_filter(7, "*filter\nCOMMIT\n")
            .await
            .expect("ok");
        assert_eq!(fake.current(7).as_deref(), Some("*filter\nCOMMIT\n"));
        fake.fail_with(Some(EnforcerError::MissingTool {
            tool: "iptables-restore".into(),
        }));
        assert!(fake.restore_filter(7, "x").await.is_err());
        assert_eq!(fake.rulesets(7).len(), 1);
    }
}
