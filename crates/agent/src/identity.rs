//! The agent's durable identity in its data directory (`agent-state.json`): the instance id
//! (`i-` + 17 hex digits, generated once), and, once registered, the cluster and container
//! instance ARN, so a restarted agent registers as the same instance and re-adopts the
//! containers labelled with that ARN.
//!
//! Written atomically (temporary file, then rename), so a crash never leaves half a file.

use std::path::{Path, PathBuf};

const FILE_NAME: &str = "agent-state.json";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid agent state file ({source}); remove it to register as a new instance")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A new EC2-style instance id: `i-` and 17 lowercase hex digits.
pub fn generate_instance_id() -> String {
    let digits: String = (0..17)
        .map(|_| {
            let digit = rand::random_range(0..16u32);
            char::from_digit(digit, 16).unwrap_or('0')
        })
        .collect();
    format!("i-{digits}")
}

impl Identity {
    /// Loads the identity from `data_dir`, creating (and storing) a new one if there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<Identity, IdentityError> {
        let path = data_dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| IdentityError::Corrupt { path, source }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity {
                    instance_id: generate_instance_id(),
                    cluster: None,
                    container_instance_arn: None,
                };
                identity.save(data_dir)?;
                Ok(identity)
            }
            Err(source) => Err(IdentityError::Io { path, source }),
        }
    }

    /// The ARN registered before in `cluster`, if any (an ARN from another cluster is not
    /// reused: it names an instance of that cluster).
    pub fn arn_for(&self, cluster: &str) -> Option<&str> {
        match (&self.cluster, &self.container_instance_arn) {
            (Some(registered), Some(arn)) if registered == cluster => Some(arn),
            _ => None,
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let path = data_dir.join(FILE_NAME);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let temporary = data_dir.join(format!("{FILE_NAME}.tmp"));
        let body = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(&temporary, body).map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_look_like_ec2() {
        let id = generate_instance_id();
        assert_eq!(id.len(), 19);
        assert!(id.starts_with("i-"));
        assert!(id[2..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn identity_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut first = Identity::load_or_create(dir.path()).expect("creates");
        assert_eq!(first.arn_for("default"), None);
        first.cluster = Some("default".into());
        first.container_instance_arn = Some("arn:ci".into());
        first.save(dir.path()).expect("saves");
        let again = Identity::load_or_create(dir.path()).expect("loads");
        assert_eq!(again, first);
        assert_eq!(again.arn_for("default"), Some("arn:ci"));
        assert_eq!(again.arn_for("other"), None);
        std::fs::write(dir.path().join(FILE_NAME), b"{").expect("writes");
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Corrupt { .. })
        ));
    }
}
