//! How far each container's log was shipped. A [`Checkpoint`] is the engine timestamp
//! (nanoseconds) of the last shipped entry and how many entries with exactly that timestamp
//! were shipped: entries are stamped by the engine, several can share a nanosecond, and the
//! engine's `since` filter only takes whole seconds, so the count is what makes resuming exact.
//!
//! [`CheckpointStore::in_dir`] keeps one small JSON file per container id under the agent's
//! data directory (`logs/<container id>.json`), written after every successful delivery
//! (write to a temporary file, then rename, so a crash leaves the old or the new one);
//! [`CheckpointStore::in_memory`] is for engines without a data directory (tests).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where shipping resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The engine timestamp of the last shipped entry; 0 when nothing was shipped.
    pub timestamp_nanos: i64,
    /// How many entries stamped exactly `timestamp_nanos` were shipped.
    pub entries: u64,
}

impl Checkpoint {
    /// Moves past one more entry stamped `timestamp_nanos`.
    pub fn advance(&mut self, timestamp_nanos: i64) {
        if timestamp_nanos == self.timestamp_nanos {
            self.entries += 1;
        } else {
            self.timestamp_nanos = timestamp_nanos;
            self.entries = 1;
        }
    }

    /// The engine's `since` (whole seconds) that returns everything not yet shipped.
    pub fn since_seconds(&self) -> i64 {
        self.timestamp_nanos.div_euclid(1_000_000_000).max(0)
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

impl CheckpointStore {
    pub fn in_memory() -> Self {
        CheckpointStore::Memory(Arc::default())
    }

    /// Files in `dir` (created when the first checkpoint is written).
    pub fn in_dir(dir: PathBuf) -> Self {
        CheckpointStore::Dir(dir)
    }

    /// The container's checkpoint; the start of its log when there is none (or it cannot be
    /// read, which is logged: shipping from the start may repeat lines but loses none).
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
                match tokio::fs::read(&path).await {
                    Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                        tracing::warn!(path = %path.display(), error = %error, "unreadable log checkpoint; shipping from the start");
                        Checkpoint::default()
                    }),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        Checkpoint::default()
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), error = %error, "cannot read log checkpoint; shipping from the start");
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
                tokio::fs::create_dir_all(dir).await?;
                let name = file_name(container_id);
                let path = dir.join(&name);
                let temporary = dir.join(format!(".{name}.tmp"));
                let bytes = serde_json::to_vec(&checkpoint).map_err(std::io::Error::other)?;
                tokio::fs::write(&temporary, bytes).await?;
                tokio::fs::rename(&temporary, &path).await
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

    #[test]
    fn checkpoints_count_entries_at_one_timestamp() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.advance(5_000_000_001);
        checkpoint.advance(5_000_000_001);
        assert_eq!(
            checkpoint,
            Checkpoint {
                timestamp_nanos: 5_000_000_001,
                entries: 2
            }
        );
        assert_eq!(checkpoint.since_seconds(), 5);
        checkpoint.advance(6_000_000_000);
        assert_eq!(checkpoint.entries, 1);
        assert_eq!(Checkpoint::default().since_seconds(), 0);
    }

    #[tokio::test]
    async fn files_survive_a_new_store_and_can_be_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = CheckpointStore::in_dir(dir.path().join("logs"));
        assert_eq!(store.load("abc").await, Checkpoint::default());
        let checkpoint = Checkpoint {
            timestamp_nanos: 42,
            entries: 3,
        };
        store.save("abc", checkpoint).await.expect("saves");
        let reopened = CheckpointStore::in_dir(dir.path().join("logs"));
        assert_eq!(reopened.load("abc").await, checkpoint);
        reopened.remove("abc").await;
        assert_eq!(store.load("abc").await, Checkpoint::default());
        reopened.remove("abc").await;

        std::fs::write(dir.path().join("logs").join("bad.json"), b"{").expect("writes");
        assert_eq!(store.load("bad").await, Checkpoint::default());

        let memory = CheckpointStore::in_memory();
        memory.save("abc", checkpoint).await.expect("saves");
        assert_eq!(memory.clone().load("abc").await, checkpoint);
    }
}
