//! How far each container's log was shipped, as a position in the engine's log file rather
//! than a time: the engine stamps stdout and stderr in separate goroutines (an entry of one
//! can be written after a newer one of the other) and gives every 16 KiB part of a long line
//! the time of its first part, so "everything up to timestamp T" is not a prefix of the file.
//!
//! A [`Checkpoint`] says: follow the log from `since_seconds` (the engine's `since`), and skip
//! the first `entries` entries the engine returns; they were shipped. It only holds while the
//! engine returns the same entries for that `since`, which is what [`PositionTracker`] makes
//! sure of when it moves `since` forward (see there). `first_nanos` is the timestamp of the
//! first of the skipped entries, so a log that no longer starts there (the engine rotated its
//! files away) is noticed instead of skipping lines never shipped.
//!
//! Delivering a batch and saving the checkpoint past it cannot be one step, so the store also
//! keeps the batch being delivered ([`InFlight`]): saved before `PutLogEvents`, cleared by the
//! checkpoint saved after it. An agent that stopped in between (or lost the call's answer)
//! finds the record and asks the stream whether the batch landed (its newest events match the
//! batch's [`TailDigest`]) instead of sending it again.
//!
//! [`CheckpointStore::in_dir`] keeps one small JSON file per container id under the agent's
//! data directory (`logs/<container id>.json`), written before and after every delivery:
//! written to a temporary file and synced, renamed over the old one, and the directory synced
//! (not for an in-flight record: losing one only sends its batch again), so a crash or power
//! loss leaves the old or the new checkpoint, never an empty file;
//! [`CheckpointStore::in_memory`] is for engines without a data directory (tests).
//!
//! [`PositionTracker`]: super::batch::PositionTracker

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::batch::LogEvent;

/// Where shipping resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The engine's `since` (whole seconds, what its API takes) to follow the log from; 0 for
    /// the start of the log.
    pub since_seconds: i64,
    /// How many of the entries the engine returns from `since_seconds` were shipped.
    pub entries: u64,
    /// The timestamp (nanoseconds) of the first of those entries; meaningless when `entries`
    /// is 0.
    pub first_nanos: i64,
}

/// The newest events a stream holds once a batch landed: the batch's last events (at most
/// [`TailDigest::MAX_EVENTS`]), after the event delivered before it when that is known and the
/// whole batch fits. Kept as a count and a SHA-256, as a batch can be a megabyte.
///
/// A batch that did not land matches only if the stream's newest events are the very same
/// events (timestamps to the millisecond and messages): the same lines logged twice within a
/// millisecond, right where a batch was cut. The event before the batch makes even that need
/// twice the batch's length of such lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TailDigest {
    /// How many of the stream's newest events to compare.
    pub events: usize,
    /// SHA-256 of those events, hex.
    pub sha256: String,
}

impl TailDigest {
    /// Compares at most this many events: a stream's tail is fetched in one GetLogEvents call.
    pub const MAX_EVENTS: usize = 64;

    /// The digest of the stream's tail once `batch` (sorted, as sent) landed after `previous`.
    pub fn after_delivery(previous: Option<&LogEvent>, batch: &[LogEvent]) -> Self {
        let tail = &batch[batch.len().saturating_sub(Self::MAX_EVENTS)..];
        let previous =
            previous.filter(|_| tail.len() == batch.len() && tail.len() < Self::MAX_EVENTS);
        let events: Vec<&LogEvent> = previous.into_iter().chain(tail).collect();
        Self {
            events: events.len(),
            sha256: digest(&events),
        }
    }

    /// Whether `newest`, a stream's newest events in order, are what the stream holds once the
    /// batch landed.
    pub fn matches(&self, newest: &[LogEvent]) -> bool {
        newest.len() == self.events && digest(&newest.iter().collect::<Vec<_>>()) == self.sha256
    }
}

/// Each event as its timestamp and its message's length (little-endian) and bytes, so that no
/// two different sequences hash the same bytes.
fn digest(events: &[&LogEvent]) -> String {
    let mut hasher = Sha256::new();
    for event in events {
        hasher.update(event.timestamp.to_le_bytes());
        hasher.update((event.message.len() as u64).to_le_bytes());
        hasher.update(event.message.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// A batch whose delivery was started and not yet confirmed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    /// The checkpoint once the batch is delivered.
    pub after: Checkpoint,
    /// What the stream's newest events are once it landed.
    pub tail: TailDigest,
}

/// What the store holds for a container: where shipping resumes, and the batch that was being
/// delivered when the record was written, if any. Written as the file's content: the
/// checkpoint's fields, and `inFlight` when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
}

/// A checkpoint file as found on disk: this version's, or the one before it (the timestamp of
/// the last shipped entry and how many entries shared it). Agents before the in-flight record
/// ignore it (they send such a batch again); files without it have nothing in flight.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredCheckpoint {
    since_seconds: Option<i64>,
    entries: Option<u64>,
    first_nanos: Option<i64>,
    timestamp_nanos: Option<i64>,
    in_flight: Option<InFlight>,
}

impl StoredCheckpoint {
    /// What was saved, and whether it had to be converted from the older format.
    fn into_saved(self) -> Option<(Saved, bool)> {
        match (self.since_seconds, self.timestamp_nanos) {
            (Some(since_seconds), _) => Some((
                Saved {
                    checkpoint: Checkpoint {
                        since_seconds,
                        entries: self.entries.unwrap_or(0),
                        first_nanos: self.first_nanos.unwrap_or(0),
                    },
                    in_flight: self.in_flight,
                },
                false,
            )),
            // The old format cannot say how many entries of that second were shipped (they
            // were not counted in file order), so none are skipped: a restart after an upgrade
            // sends up to a second of lines again rather than risk losing one.
            (None, Some(timestamp_nanos)) => Some((
                Saved {
                    checkpoint: Checkpoint {
                        since_seconds: timestamp_nanos.div_euclid(1_000_000_000).max(0),
                        entries: 0,
                        first_nanos: 0,
                    },
                    in_flight: None,
                },
                true,
            )),
            (None, None) => None,
        }
    }
}

/// Where checkpoints are kept. Cheap to clone; clones share the store.
#[derive(Debug, Clone)]
pub enum CheckpointStore {
    Memory(Arc<Mutex<HashMap<String, Saved>>>),
    Dir(PathBuf),
}

/// Container ids are hex; anything else is made safe for a file name.
fn file_name(container_id: &str) -> String {
    let safe: String = container_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{safe}.json")
}

/// Replaces `path` with `bytes` so that after a crash or a power loss it holds either the old
/// or the new content: the data is synced before the rename makes it visible (otherwise the
/// rename can reach the disk before the data and leave an empty file), and, with
/// `keep_rename`, the directory after it (otherwise the rename itself can be lost, leaving the
/// old content).
fn write_durably(dir: &Path, name: &str, bytes: &[u8], keep_rename: bool) -> std::io::Result<()> {
    use std::io::Write;
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)?;
        // The new directory's own entry in its parent must survive too.
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    if keep_rename {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Directories cannot be opened (and need no sync) elsewhere.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

impl CheckpointStore {
    pub fn in_memory() -> Self {
        CheckpointStore::Memory(Arc::default())
    }

    /// Files in `dir` (created when the first checkpoint is written).
    pub fn in_dir(dir: PathBuf) -> Self {
        CheckpointStore::Dir(dir)
    }

    /// The container's checkpoint (and batch in flight); the start of its log when there is
    /// none. One that cannot be read is logged and also means the start: the engine's file is
    /// the only record of what was logged, so sending it again (duplicates) is the only choice
    /// that loses nothing.
    pub async fn load(&self, container_id: &str) -> Saved {
        match self {
            CheckpointStore::Memory(map) => map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(container_id)
                .cloned()
                .unwrap_or_default(),
            CheckpointStore::Dir(dir) => {
                let path = dir.join(file_name(container_id));
                let bytes = match tokio::fs::read(&path).await {
                    Ok(bytes) => bytes,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        return Saved::default()
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), error = %error, "cannot read log checkpoint; shipping the container's log from its start, lines may be sent twice");
                        return Saved::default();
                    }
                };
                let stored = serde_json::from_slice::<StoredCheckpoint>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|s| s.into_saved().ok_or_else(|| "no position".to_string()));
                match stored {
                    Ok((saved, false)) => saved,
                    Ok((saved, true)) => {
                        tracing::info!(path = %path.display(), "log checkpoint of an older agent; up to a second of lines may be sent twice");
                        saved
                    }
                    Err(error) => {
                        // An empty file is what an agent that did not sync its checkpoints
                        // could leave after a power loss.
                        tracing::warn!(path = %path.display(), bytes = bytes.len(), error = %error, "unreadable log checkpoint; shipping the container's log from its start, lines may be sent twice");
                        Saved::default()
                    }
                }
            }
        }
    }

    /// Saves where shipping resumes, with nothing in flight.
    pub async fn save(
        &self,
        container_id: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), std::io::Error> {
        self.write(
            container_id,
            Saved {
                checkpoint,
                in_flight: None,
            },
        )
        .await
    }

    /// Saves, before a batch is sent, where shipping resumes if it did not land and what
    /// tells that it did.
    pub async fn save_in_flight(
        &self,
        container_id: &str,
        checkpoint: Checkpoint,
        in_flight: InFlight,
    ) -> Result<(), std::io::Error> {
        self.write(
            container_id,
            Saved {
                checkpoint,
                in_flight: Some(in_flight),
            },
        )
        .await
    }

    async fn write(&self, container_id: &str, saved: Saved) -> Result<(), std::io::Error> {
        // A batch in flight whose record a power loss undoes is sent again (its checkpoint is
        // the one before), so that record spares itself the directory's sync.
        let keep_rename = saved.in_flight.is_none();
        match self {
            CheckpointStore::Memory(map) => {
                map.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(container_id.to_string(), saved);
                Ok(())
            }
            CheckpointStore::Dir(dir) => {
                let dir = dir.clone();
                let name = file_name(container_id);
                let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
                // One blocking task for the whole sequence rather than one per step.
                tokio::task::spawn_blocking(move || write_durably(&dir, &name, &bytes, keep_rename))
                    .await
                    .map_err(std::io::Error::other)?
            }
        }
    }

    /// Forgets a container's checkpoint (once the container is removed).
    pub async fn remove(&self, container_id: &str) {
        match self {
            CheckpointStore::Memory(map) => {
                map.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(container_id);
            }
            CheckpointStore::Dir(dir) => {
                let path = dir.join(file_name(container_id));
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(path = %path.display(), error = %error, "cannot remove log checkpoint")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_survive_a_new_store_and_can_be_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = CheckpointStore::in_dir(dir.path().join("logs"));
        assert_eq!(store.load("abc").await.checkpoint, Checkpoint::default());
        let checkpoint = Checkpoint {
            since_seconds: 42,
            entries: 3,
            first_nanos: 42_000_000_007,
        };
        store.save("abc", checkpoint).await.expect("saves");
        let reopened = CheckpointStore::in_dir(dir.path().join("logs"));
        assert_eq!(reopened.load("abc").await.checkpoint, checkpoint);
        // Saving again replaces it and leaves no temporary file behind.
        let later = Checkpoint {
            entries: 4,
            ..checkpoint
        };
        store.save("abc", later).await.expect("saves");
        assert_eq!(reopened.load("abc").await.checkpoint, later);
        let names: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["abc.json".to_string()]);
        reopened.remove("abc").await;
        assert_eq!(store.load("abc").await.checkpoint, Checkpoint::default());
        reopened.remove("abc").await;

        let memory = CheckpointStore::in_memory();
        memory.save("abc", checkpoint).await.expect("saves");
        assert_eq!(memory.clone().load("abc").await.checkpoint, checkpoint);
    }

    #[tokio::test]
    async fn unreadable_and_older_checkpoints_never_skip_an_unshipped_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("creates");
        let store = CheckpointStore::in_dir(logs.clone());
        // Torn or empty (what a power loss could leave before checkpoints were synced), or
        // without a position: the whole log again, never a guess.
        for (name, bytes) in [
            ("torn", &b"{\"sinceSec"[..]),
            ("empty", b""),
            ("none", b"{}"),
        ] {
            std::fs::write(logs.join(format!("{name}.json")), bytes).expect("writes");
            assert_eq!(
                store.load(name).await.checkpoint,
                Checkpoint::default(),
                "{name}"
            );
        }
        // The previous format (last shipped timestamp, entries at exactly that timestamp)
        // did not count in file order: resume at its second and skip nothing.
        std::fs::write(
            logs.join("old.json"),
            br#"{"timestampNanos":5000000001,"entries":2}"#,
        )
        .expect("writes");
        assert_eq!(
            store.load("old").await.checkpoint,
            Checkpoint {
                since_seconds: 5,
                entries: 0,
                first_nanos: 0
            }
        );
    }

    fn event(timestamp: i64, message: &str) -> LogEvent {
        LogEvent {
            timestamp,
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn a_batch_in_flight_is_kept_until_the_next_checkpoint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = CheckpointStore::in_dir(dir.path().join("logs"));
        let before = Checkpoint {
            since_seconds: 7,
            entries: 1,
            first_nanos: 7_000_000_001,
        };
        let after = Checkpoint {
            entries: 3,
            ..before
        };
        let in_flight = InFlight {
            after,
            tail: TailDigest::after_delivery(None, &[event(7_000, "a"), event(7_001, "b")]),
        };
        store
            .save_in_flight("abc", before, in_flight.clone())
            .await
            .expect("saves");
        let reopened = CheckpointStore::in_dir(dir.path().join("logs"));
        assert_eq!(
            reopened.load("abc").await,
            Saved {
                checkpoint: before,
                in_flight: Some(in_flight),
            }
        );
        store.save("abc", after).await.expect("saves");
        assert_eq!(
            reopened.load("abc").await,
            Saved {
                checkpoint: after,
                in_flight: None,
            }
        );
    }

    #[test]
    fn a_tail_digest_matches_only_the_stream_the_batch_leaves() {
        let previous = event(1, "x");
        let batch = [event(2, "x"), event(2, "y")];
        let digest = TailDigest::after_delivery(Some(&previous), &batch);
        assert_eq!(digest.events, 3);
        assert!(digest.matches(&[previous.clone(), batch[0].clone(), batch[1].clone()]));
        // Not landed: the stream ends with what came before.
        assert!(!digest.matches(&[event(0, "w"), previous.clone()]));
        // The same messages a millisecond apart, or split differently, are other events.
        assert!(!digest.matches(&[previous.clone(), event(2, "x"), event(3, "y")]));
        assert!(!digest.matches(&[previous.clone(), event(2, "xy"), event(2, "")]));
        // A batch longer than the limit is compared by its last events alone.
        let long: Vec<LogEvent> = (0..100).map(|n| event(n, &n.to_string())).collect();
        let digest = TailDigest::after_delivery(Some(&previous), &long);
        assert_eq!(digest.events, TailDigest::MAX_EVENTS);
        assert!(digest.matches(&long[100 - TailDigest::MAX_EVENTS..]));
        assert!(!digest.matches(&long[100 - TailDigest::MAX_EVENTS - 1..99]));
    }
}
