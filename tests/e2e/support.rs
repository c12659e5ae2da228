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

/// A temp path for one test, removed when the test passes and kept (for a look) when
/// it fails.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh (removed, not created) temp path for test `name`, unique per test process.
pub fn fresh(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("stackflow-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Scratch(dir)
}

/// The checkpoint files of a run directory, oldest first.
pub fn ckpts(run: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(run.join("checkpoints")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    v.sort();
    v
}

/// `tests/graphs/tiny.ron` with `edit` applied, written as `<work>/<name>.ron` (the
/// folder is created).
pub fn tiny_graph(work: &Path, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    std::fs::create_dir_all(work).expect("a temp folder");
    let text = std::fs::read_to_string(root().join("tests/graphs/tiny.ron")).expect("tiny.ron");
    let path = work.join(format!("{name}.ron"));
    std::fs::write(&path, edit(text)).expect("a temp graph");
    path
}
