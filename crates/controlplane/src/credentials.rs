//! The server's access keys: created on first start, kept in the data directory readable by
//! its owner only, and printed as ready-to-paste environment lines on every start.

use std::io::Write;
use std::path::Path;

use rand::Rng;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid credentials file: {source}; delete it to create new keys")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
}

const FILE_NAME: &str = "credentials.json";

impl Credentials {
    /// A new key pair in AWS's formats: `AKIA` + 16 upper-case letters/digits, and a 40-character
    /// secret.
    pub fn generate() -> Self {
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = rand::rng();
        let id: String = (0..16)
            .map(|_| UPPER[rng.random_range(0..UPPER.len())] as char)
            .collect();
        let secret: String = (0..40)
            .map(|_| SECRET[rng.random_range(0..SECRET.len())] as char)
            .collect();
        Credentials {
            access_key_id: format!("AKIA{id}"),
            secret_access_key: secret,
        }
    }

    /// Load the key pair stored in `data_dir`, creating (and storing, mode 0600) a new one if
    /// there is none. Returns whether it was created.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, bool), CredentialsError> {
        let path = data_dir.join(FILE_NAME);
        let io = |source| CredentialsError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let credentials =
                    serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Corrupt {
                        path: path.display().to_string(),
                        source,
                    })?;
                Ok((credentials, false))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let credentials = Self::generate();
                std::fs::create_dir_all(data_dir).map_err(io)?;
                let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&tmp).map_err(io)?;
                let body = serde_json::to_vec_pretty(&credentials).unwrap_or_default();
                file.write_all(&body).map_err(io)?;
                file.sync_all().map_err(io)?;
                // Rename so a crash never leaves a half-written key file behind.
                std::fs::rename(&tmp, &path).map_err(io)?;
                Ok((credentials, true))
            }
            Err(error) => Err(io(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = Credentials::load_or_create(dir.path()).unwrap();
        assert!(created);
        assert!(first.access_key_id.starts_with("AKIA") && first.access_key_id.len() == 20);
        assert_eq!(first.secret_access_key.len(), 40);
        let (again, created) = Credentials::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
