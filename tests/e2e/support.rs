//! Running the binary from the workspace root with deterministic output.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (graph paths in tests are relative to it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// What a run of `stackflow` gave.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run `stackflow args…` in the workspace root without colours.
pub fn stackflow(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_stackflow"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("STACKFLOW_PLUGIN_PATH")
        .output()
        .expect("stackflow runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
