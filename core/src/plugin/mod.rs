//! The plugin host: loads `cdylib` plugins that speak stackflow's versioned C ABI and
//! adapts their kinds into the [`crate::registry::Registry`].

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::registry::Registry;

/// Environment variable with extra plugin paths (separated like `PATH`).
pub const PATH_VAR: &str = "STACKFLOW_PLUGIN_PATH";

/// Load the plugin library at `path` into `registry`.
pub fn load(registry: &mut Registry, path: &Path) -> Result<()> {
    let _ = registry;
    Err(Error::other("plugin::unsupported", format!("cannot load `{}`: plugin loading is being built", path.display())))
}

/// The plugin paths a user named: the graph file's `plugins` (relative to the file),
/// then `--plugin` flags, then `STACKFLOW_PLUGIN_PATH`. Never the current directory.
pub fn requested(graph_file: Option<&Path>, in_graph: &[String], flags: &[PathBuf]) -> Vec<PathBuf> {
    let base = graph_file.and_then(Path::parent).unwrap_or(Path::new(""));
    let mut out: Vec<PathBuf> = in_graph.iter().map(|p| base.join(p)).collect();
    out.extend(flags.iter().cloned());
    if let Some(v) = std::env::var_os(PATH_VAR) {
        out.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
    }
    out
}
