//! The pause image, made on this host: `build.rs` compiles `pause/pause.c` statically, the
//! binary is embedded here, and on first use it is imported into the engine as
//! `wharf/pause:<agent version>` from a one-file tar built in memory. Nothing is pulled, so
//! awsvpc tasks run where no registry can be reached.

use tokio::sync::Mutex;

use crate::runtime::{ContainerRuntime, RuntimeError};

/// The static pause program.
pub const BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));
/// Where it sits in the image.
pub const BINARY_PATH: &str = "/pause";

/// The image reference: one per agent version, so an upgraded agent imports its own.
pub fn image_reference() -> String {
    format!("wharf/pause:{}", env!("CARGO_PKG_VERSION"))
}

/// The tar (ustar) holding one regular file: a header block, the data padded to 512 bytes,
/// and the two zero blocks that end an archive.
pub fn single_file_tar(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    fn octal(field: &mut [u8], value: u64) {
        // Zero-padded octal, NUL-terminated, filling the field.
        let digits = field.len() - 1;
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
        field[digits] = 0;
    }
    let mut header = [0u8; 512];
    let name = name.as_bytes();
    let name_len = name.len().min(100);
    header[..name_len].copy_from_slice(&name[..name_len]);
    octal(&mut header[100..108], u64::from(mode));
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], data.len() as u64);
    octal(&mut header[136..148], 0); // mtime: fixed, so the tar is deterministic
    header[156] = b'0'; // a regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[265..269].copy_from_slice(b"root");
    header[297..301].copy_from_slice(b"root");
    // The checksum is computed with its own field read as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());

    let padded = data.len().div_ceil(512) * 512;
    let mut tar = Vec::with_capacity(512 + padded + 1024);
    tar.extend_from_slice(&header);
    tar.extend_from_slice(data);
    tar.resize(512 + padded + 1024, 0);
    tar
}

/// Imports the pause image at most once per engine, and not at all when the engine has it.
/// Owners of concurrent awsvpc tasks wait for the one import; a failed import is tried again
/// by the next task. Two task engines (or agents) on one Docker engine may both import: the
/// tag then names the later, identical image and the earlier is left untagged, which is
/// harmless. (A process-wide lock would make owners of one engine wait on another's runtime,
/// which paused-time tests cannot tell from idleness.)
#[derive(Debug, Default)]
pub struct PauseImage {
    ready: Mutex<bool>,
}

impl PauseImage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the image present; returns its reference.
    pub async fn ensure(&self, runtime: &dyn ContainerRuntime) -> Result<String, RuntimeError> {
        let reference = image_reference();
        let mut ready = self.ready.lock().await;
        if *ready {
            return Ok(reference);
        }
        if !runtime.image_present(&reference).await? {
            tracing::info!(image = %reference, "importing the pause image");
            let tar = single_file_tar(BINARY_PATH.trim_start_matches('/'), 0o755, BINARY);
            runtime
                .import_image(
                    &reference,
                    bytes::Bytes::from(tar),
                    &[format!("CMD [\"{BINARY_PATH}\"]")],
                )
                .await?;
        }
        *ready = true;
        Ok(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    #[test]
    fn the_tar_has_a_valid_ustar_header_and_padding() {
        let tar = single_file_tar("pause", 0o755, b"hello");
        assert_eq!(tar.len(), 512 + 512 + 1024);
        assert_eq!(&tar[..5], b"pause");
        assert_eq!(&tar[100..108], b"0000755\0");
        assert_eq!(&tar[124..136], b"00000000005\0");
        assert_eq!(&tar[257..263], b"ustar\0");
        // Checksum: the header's bytes with the checksum field as spaces.
        let mut copy = tar[..512].to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
        let stored = std::str::from_utf8(&tar[148..154]).expect("ascii");
        assert_eq!(u32::from_str_radix(stored, 8), Ok(sum));
        assert_eq!(&tar[512..517], b"hello");
        assert!(tar[517..].iter().all(|b| *b == 0));
    }

    #[test]
    fn the_embedded_binary_is_a_static_elf() {
        assert_eq!(&BINARY[..4], b"\x7fELF");
        assert!(BINARY.len() > 1024);
    }

    #[tokio::test]
    async fn it_is_imported_once() {
        let fake = FakeRuntime::new();
        let pause = PauseImage::new();
        let (a, b) = tokio::join!(pause.ensure(&fake), pause.ensure(&fake));
        assert_eq!(a, Ok(image_reference()));
        assert_eq!(b, Ok(image_reference()));
        assert_eq!(fake.imports(), vec![image_reference()]);
        // A new process finds the image and does not import again.
        let again = PauseImage::new();
        again.ensure(&fake).await.expect("present");
        assert_eq!(fake.imports().len(), 1);
    }
}
