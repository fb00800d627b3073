//! Builds the pause program (`pause/pause.c`) as a static executable into `OUT_DIR/pause`;
//! `network::pause` embeds it with `include_bytes!` and imports it into Docker, since no image
//! can be pulled. It runs as PID 1 of a scratch image, so it must not need a libc on disk.
//!
//! The compiler is `$CC` or `gcc`; the static libc comes with Debian's `libc6-dev`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "pause/pause.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CC");
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out.join("pause");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "gcc".to_string());
    let output = Command::new(&compiler)
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&target)
        .arg(manifest_dir.join(source))
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {compiler} to build the pause program ({error}); install gcc and libc6-dev")
        });
    if !output.status.success() {
        panic!(
            "{compiler} failed to build the pause program (a static libc is needed: apt-get install libc6-dev):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
