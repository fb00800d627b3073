//! Choosing where a request goes: a target group among a forward action's weighted groups,
//! then a target within the group.
//!
//! Within a group only healthy, non-draining targets are candidates. When none is healthy the
//! group fails open as ALB does: every non-draining target is a candidate, whether unhealthy
//! or still `initial` (so a freshly started node, whose targets are all `initial` until their
//! first checks pass, keeps serving instead of answering 503). Draining targets never get new
//! requests; a group with no other target answers 503.
//!
//! No allocation: candidates are counted and then walked in place.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::http_proxy::{app_cookie_entries, unix_seconds, StickyCookies};
use crate::table::{Algorithm, Forward, GroupEntry, TargetEntry, TargetStickiness, WeightedGroup};

impl Forward {
    /// The group and target for a new request with these stickiness cookies; the chosen
    /// group's pair counts the request.
    pub fn route(&self, sticky: &StickyCookies<'_>) -> Option<(&WeightedGroup, &TargetEntry)> {
        let weighted = self.choose_group(sticky.group)?;
        weighted.metrics.request();
        let group = &weighted.group;
        let target = group.choose_target(group.sticky_target(sticky))?;
        Some((weighted, target))
    }

    /// The group for a new request: the sticky one (`AWSALBTG` value = group id) when it is
    /// still in the action, else a weighted random choice.
    pub fn choose_group(&self, sticky_id: Option<&str>) -> Option<&WeightedGroup> {
        if let Some(id) = sticky_id {
            if let Some(group) = self.groups.iter().find(|g| g.group.id == id) {
                return Some(group);
            }
        }
        match self.groups.len() {
            0 => None,
            1 => self.groups.first(),
            _ => {
                let mut pick = rand::random_range(0..self.total_weight.max(1));
                for group in &self.groups {
                    if pick < group.weight {
                        return Some(group);
                    }
                    pick -= group.weight;
                }
                self.groups.last()
            }
        }
    }
}

impl GroupEntry {
    fn available(target: &TargetEntry) -> bool {
        !target.draining && !target.runtime.is_closed()
    }

    /// The target a request's cookies stick it to under this group's stickiness, if any: the
    /// `AWSALB` target, or the first `AWSALBAPP-0` entry naming one of this group's targets
    /// whose stickiness duration has not run out.
    fn sticky_target(&self, sticky: &StickyCookies<'_>) -> Option<u64> {
        match &self.stickiness {
            TargetStickiness::LbCookie { .. } => sticky.target,
            TargetStickiness::AppCookie { seconds, .. } => {
                let now = unix_seconds();
                app_cookie_entries(sticky.app?)
                    .filter(|entry| now.saturating_sub(entry.issued) < *seconds)
                    .map(|entry| entry.target)
                    .find(|cookie| self.targets.iter().any(|t| t.runtime.cookie == *cookie))
            }
            TargetStickiness::None | TargetStickiness::SourceIp => None,
        }
    }

    /// The target for a new flow from `client` under `source_ip` stickiness (see
    /// [`GroupEntry::choose_target_by_hash`]).
    pub fn choose_target_for_source(&self, client: IpAddr) -> Option<&TargetEntry> {
        self.choose_target_by_hash(client)
    }

    /// The target a flow's `key` hashes to: of the candidates, the one scoring highest for
    /// the key (rendezvous hashing), so a key keeps its target while that target stays a
    /// candidate, and targets coming or going move only the keys they win or held.
    pub fn choose_target_by_hash(&self, key: impl Hash) -> Option<&TargetEntry> {
        let healthy_only = self.any_healthy();
        self.targets
            .iter()
            .filter(|t| Self::available(t) && (!healthy_only || t.runtime.is_healthy()))
            .max_by_key(|t| {
                // `DefaultHasher::new` has fixed keys: every node and restart of one build
                // scores a pair the same.
                let mut state = DefaultHasher::new();
                (&key, t.runtime.cookie).hash(&mut state);
                state.finish()
            })
    }

    /// Whether any available target is healthy (else the group fails open).
    fn any_healthy(&self) -> bool {
        self.targets
            .iter()
            .any(|t| Self::available(t) && t.runtime.is_healthy())
    }

    /// The target for a new request or connection. `sticky` is an `AWSALB` cookie value.
    pub fn choose_target(&self, sticky: Option<u64>) -> Option<&TargetEntry> {
        let healthy_only = self.any_healthy();
        let candidate =
            |t: &&TargetEntry| Self::available(t) && (!healthy_only || t.runtime.is_healthy());
        if let Some(cookie) = sticky {
            if let Some(target) = self
                .targets
                .iter()
                .filter(candidate)
                .find(|t| t.runtime.cookie == cookie)
            {
                return Some(target);
            }
        }
        let count = self.targets.iter().filter(candidate).count();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        match self.algorithm {
            Algorithm::RoundRobin => {
                let mut candidates = self.targets.iter().filter(candidate).cycle().skip(start);
                if self.slow_start.is_zero() {
                    return candidates.next();
                }
                // Slow start: a target that turned healthy less than `slow_start` ago takes
                // its turn with a probability growing linearly from 0 to 1.
                let now_ms = crate::clock::monotonic_ms(Instant::now());
                let window = self.slow_start.as_millis() as u64;
                let mut first = None;
                for target in candidates.take(count) {
                    first.get_or_insert(target);
                    let since = target.runtime.healthy_since_ms();
                    let age = now_ms.saturating_sub(since);
                    if since == 0 || age >= window || rand::random_range(0..window) < age {
                        return Some(target);
                    }
                }
                first
            }
            Algorithm::LeastOutstandingRequests => self
                .targets
                .iter()
                .filter(candidate)
                .cycle()
                .skip(start)
                .take(count)
                .min_by_key(|t| t.runtime.outstanding.load(Ordering::Relaxed)),
        }
    }
}
