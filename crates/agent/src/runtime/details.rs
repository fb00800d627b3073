//! What the task metadata endpoint ([`crate::metadata`]) needs from the engine beyond the
//! owner's [`ContainerInfo`](super::ContainerInfo): a container's full inspect answer in
//! engine-neutral terms ([`ContainerDetails`]), its statistics as the engine's own JSON
//! document, and the gateway of a network (where containers on it reach the host).
//!
//! Kept apart from the owner's inspect so the owner's hot path does not pay for what only the
//! metadata endpoint reads (mounts, health log, log configuration).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::HealthState;

/// A container's address on one network, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerNetwork {
    /// The network's name (`bridge`, `host`, a user-defined network).
    pub name: String,
    /// `None` when the engine assigned none (host mode, a stopped container).
    pub ipv4_address: Option<String>,
}

/// A mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMount {
    /// The named volume, if the mount is one.
    pub name: Option<String>,
    /// Where it comes from on the host.
    pub source: Option<String>,
    /// Where it is mounted in the container.
    pub destination: String,
}

/// The latest health check results of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthDetail {
    pub status: HealthState,
    /// When the current status began, as far as the engine's (short) log tells.
    pub since: Option<DateTime<Utc>>,
    /// The exit code of the latest check.
    pub exit_code: Option<i64>,
    /// The output of the latest check.
    pub output: Option<String>,
}

/// Everything an inspect tells about one container, for the metadata documents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerDetails {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    /// The image reference the container was created from.
    pub image: String,
    /// The image id (`sha256:…`).
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub running: bool,
    pub networks: Vec<ContainerNetwork>,
    pub mounts: Vec<ContainerMount>,
    pub restart_count: i64,
    /// `None` without a health check.
    pub health: Option<HealthDetail>,
}

/// Parses an engine timestamp (RFC 3339); Docker's `0001-01-01T00:00:00Z` means "never".
pub fn engine_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    let time = DateTime::parse_from_rfc3339(text?).ok()?;
    (time.timestamp() > 0).then(|| time.with_timezone(&Utc))
}

/// When the current health status began: the start of the newest run of checks that agree
/// with it (exit code 0 for healthy, anything else for unhealthy). Docker keeps only the last
/// five results, so this is a lower bound for long-stable statuses.
pub fn health_since(
    status: HealthState,
    log: &[(Option<DateTime<Utc>>, Option<i64>)],
) -> Option<DateTime<Utc>> {
    let agrees = |code: Option<i64>| match status {
        HealthState::Healthy => code == Some(0),
        HealthState::Unhealthy => code.is_some_and(|c| c != 0),
        HealthState::Starting => true,
    };
    let mut since = None;
    for (start, code) in log.iter().rev() {
        if !agrees(*code) {
            break;
        }
        since = start.or(since);
    }
    since
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_times_parse_and_zero_means_never() {
        assert_eq!(engine_time(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(
            engine_time(Some("2024-01-02T03:04:05.5Z")).map(|t| t.timestamp_millis()),
            Some(1_704_164_645_500)
        );
        assert_eq!(engine_time(Some("garbage")), None);
        assert_eq!(engine_time(None), None);
    }

    #[test]
    fn health_since_is_the_start_of_the_agreeing_run() {
        let at = |s: i64| DateTime::from_timestamp(s, 0);
        let log = [(at(10), Some(1)), (at(20), Some(0)), (at(30), Some(0))];
        assert_eq!(health_since(HealthState::Healthy, &log), at(20));
        assert_eq!(health_since(HealthState::Unhealthy, &log), None);
        let failing = [(at(10), Some(0)), (at(20), Some(1))];
        assert_eq!(health_since(HealthState::Unhealthy, &failing), at(20));
    }
}
