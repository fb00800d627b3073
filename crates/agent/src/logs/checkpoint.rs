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
//! [`CheckpointStore::in_dir`] keeps one small JSON file per container id under the agent's
//! data directory (`logs/<container id>.json`), written after every successful delivery:
//! written to a temporary file and synced, renamed over the old one, and the directory synced,
//! so a crash or power loss leaves the old or the new checkpoint, never an empty file;
//! [`CheckpointStore::in_memory`] is for engines without a data directory (tests).
//!
//! [`PositionTracker`]: super::batch::PositionTracker

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where shipping resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
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

/// A checkpoint file as found on disk: this version's, or the one before it (the timestamp of
/// the last shipped entry and how many entries shared it).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredCheckpoint {
    since_seconds: Option<i64>,
    entries: Option<u64>,
    first_nanos: Option<i64>,
    timestamp_nanos: Option<i64>,
}

impl StoredCheckpoint {
    /// The checkpoint, and whether it had to be converted from the older format.
    fn into_checkpoint(self) -> Option<(Checkpoint, bool)> {
        match (self.since_seconds, self.timestamp_nanos) {
            (Some(since_seconds), _) => Some((
                Checkpoint {
                    since_seconds,
                    entries: self.entries.unwrap_or(0),
                    first_nanos: self.first_nanos.unwrap_or(0),
                },
                false,
            )),
            // The old format cannot say how many entries of that second were shipped (they
            // were not counted in file order), so none are skipped: a restart after an upgrade
            // sends up to a second of lines again rather than risk losing one.
            (None, Some(timestamp_nanos)) => Some((
                Checkpoint {
                    since_seconds: timestamp_nanos.div_euclid(1_000_000_000).max(0),
                    entries: 0,
                    first_nanos: 0,
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
    Memory(Arc<Mutex<HashMap<String, Checkpoint>>>),
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
/// rename can reach the disk before the data and leave an empty file), and the directory after
/// it (otherwise the rename itself can be lost).
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
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
    sync_dir(dir)
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

    /// The container's checkpoint; the start of its log when there is none. One that cannot be
    /// read is logged and also means the start: the engine's file is the only record of what
    /// was logged, so sending it again (duplicates) is the only choice that loses nothing.
    pub async fn load(&self, container_id: &str) -> Checkpoint {
        match self {
            CheckpointStore::Memory(map) => map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(container_id)
                .copied()
                .unwrap_or_default(),
            CheckpointStore::Dir(dir) => {
                let path = dir.join(file_name(container_id));
                let bytes = match tokio::fs::read(&path).await {
                    Ok(bytes) => bytes,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        return Checkpoint::default()
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), error = %error, "cannot read log checkpoint; shipping the container's log from its start, lines may be sent twice");
                        return Checkpoint::default();
                    }
                };
                let stored = serde_json::from_slice::<StoredCheckpoint>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|s| s.into_checkpoint().ok_or_else(|| "no position".to_string()));
                match stored {
                    Ok((checkpoint, false)) => checkpoint,
                    Ok((checkpoint, true)) => {
                        tracing::info!(path = %path.display(), "log checkpoint of an older agent; up to a second of lines may be sent twice");
                        checkpoint
                    }
                    Err(error) => {
                        // An empty file is what an agent that did not sync its checkpoints
                        // could leave after a power loss.
                        tracing::warn!(path = %path.display(), bytes = bytes.len(), error = %error, "unreadable log checkpoint; shipping the container's log from its start, lines may be sent twice");
                        Checkpoint::default()
                    }
                }
            }
        }
    }

    pub async fn save(
        &self,
        container_id: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), std::io::Error> {
        match self {
            CheckpointStore::Memory(map) => {
                map.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(container_id.to_string(), checkpoint);
                Ok(())
            }
            CheckpointStore::Dir(dir) => {
                let dir = dir.clone();
                let name = file_name(container_id);
                let bytes = serde_json::to_vec(&checkpoint).map_err(std::io::Error::other)?;
                // One blocking task for the whole sequence rather than one per step.
                tokio::task::spawn_blocking(move || write_durably(&dir, &name, &bytes))
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
        assert_eq!(store.load("abc").await, Checkpoint::default());
        let checkpoint = Checkpoint {
            since_seconds: 42,
            entries: 3,
            first_nanos: 42_000_000_007,
        };
        store.save("abc", checkpoint).await.expect("saves");
        let reopened = CheckpointStore::in_dir(dir.path().join("logs"));
        assert_eq!(reopened.load("abc").await, checkpoint);
        // Saving again replaces it and leaves no temporary file behind.
        let later = Checkpoint {
            entries: 4,
            ..checkpoint
        };
        store.save("abc", later).await.expect("saves");
        assert_eq!(reopened.load("abc").await, later);
        let names: Vec<String> = std::fs::read_dir(dir.path().join("logs"))
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["abc.json".to_string()]);
        reopened.remove("abc").await;
        assert_eq!(store.load("abc").await, Checkpoint::default());
        reopened.remove("abc").await;

        let memory = CheckpointStore::in_memory();
        memory.save("abc", checkpoint).await.expect("saves");
        assert_eq!(memory.clone().load("abc").await, checkpoint);
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
            assert_eq!(store.load(name).await, Checkpoint::default(), "{name}");
        }
        // The previous format (last shipped timestamp, entries at exactly that timestamp)
        // did not count in file order: resume at its second and skip nothing.
        std::fs::write(
            logs.join("old.json"),
            br#"{"timestampNanos":5000000001,"entries":2}"#,
        )
        .expect("writes");
        assert_eq!(
            store.load("old").await,
            Checkpoint {
                since_seconds: 5,
                entries: 0,
                first_nanos: 0
            }
        );
    }
}
