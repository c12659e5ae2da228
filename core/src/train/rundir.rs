//! A run directory: its identity (`run.json`), its resolved graph (`graph.ron`), its
//! lock, and how a checkpoint finds the run it belongs to.
//!
//! A checkpoint names its run by id; a checkpoint file belongs to a run directory only
//! when it lies in that directory's `checkpoints/` and the directory's `run.json` carries
//! the same id. Nothing is ever written to a directory guessed from a file's path.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::checkpoint::{self, Loaded};
use crate::error::{Error, Result};

/// `run.json`: what made the run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    /// The graph file the run was started from.
    pub graph: PathBuf,
    /// `--set` overrides.
    pub overrides: Vec<String>,
    /// The run's seed.
    pub seed: u64,
    /// Hash of the graph text and overrides.
    pub graph_hash: String,
    /// Plugin libraries the run loaded (for the record; never loaded from here).
    #[serde(default)]
    pub plugins: Vec<PathBuf>,
    /// The run's id, also in each of its checkpoints.
    #[serde(default)]
    pub run_id: String,
}

/// The id of a new run: a hash of its directory (canonical), graph hash and seed. Runs
/// in different directories differ; the same run started again in the same (emptied)
/// directory gets the same id, so identical runs write identical checkpoint bytes.
pub fn new_run_id(dir: &Path, graph_hash: &str, seed: u64) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut h = Sha256::new();
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update(b"\n");
    h.update(graph_hash.as_bytes());
    h.update(seed.to_le_bytes());
    format!("{:x}", h.finalize())[..16].to_string()
}

/// The line that records one `--set` value above the graph text in `graph.ron`.
const SET_LINE: &str = "// --set ";

/// Write the run's `graph.ron`: a `// --set name=value` line per override, then the
/// graph text exactly as given (what the graph hash covers).
pub fn write_graph(dir: &Path, text: &str, overrides: &[String]) -> Result<()> {
    let header: String = overrides.iter().map(|o| format!("{SET_LINE}{o}\n")).collect();
    checkpoint::write_atomic(&dir.join("graph.ron"), format!("{header}{text}").as_bytes())
}

/// The graph text of a `graph.ron` written with `overrides` lines of `--set` header.
pub fn graph_text(graph_ron: &str, overrides: usize) -> &str {
    let mut rest = graph_ron;
    for _ in 0..overrides {
        match rest.strip_prefix(SET_LINE).and_then(|r| r.split_once('\n')) {
            Some((_, after)) => rest = after,
            None => return graph_ron,
        }
    }
    rest
}

/// Read a run directory's `run.json`, if it has one.
pub fn read_info(dir: &Path) -> Result<Option<RunInfo>> {
    let path = dir.join("run.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::input("run::bad_metadata", format!("`{}` is not a stackflow run.json: {e}", path.display()))
    })
}

/// The run directory a checkpoint file belongs to: `<dir>/checkpoints/<file>` with a
/// `<dir>/run.json` of the same run id; `None` when it belongs to no run directory.
pub fn owner_of(file: &Path, loaded: &Loaded) -> Result<Option<PathBuf>> {
    let Ok(file) = std::fs::canonicalize(file) else { return Ok(None) };
    let Some(ckpt_dir) = file.parent() else { return Ok(None) };
    if ckpt_dir.file_name().is_none_or(|n| n != "checkpoints") {
        return Ok(None);
    }
    let Some(dir) = ckpt_dir.parent() else { return Ok(None) };
    Ok(match read_info(dir)? {
        Some(info) if !info.run_id.is_empty() && info.run_id == loaded.meta.run_id => Some(dir.to_path_buf()),
        _ => None,
    })
}

/// The newest checkpoint of a run directory that verifies, and the newer ones that did not
/// (each with the reason), so that callers can say which file they use and why.
pub struct Newest {
    /// The checkpoint file.
    pub path: PathBuf,
    /// Its content, loaded once (a later prune cannot pull it away).
    pub loaded: Loaded,
    /// Newer files that failed to load, with the error.
    pub skipped: Vec<(PathBuf, Error)>,
}

impl Newest {
    /// Print one warning per skipped file.
    pub fn warn_skipped(&self) {
        for (p, e) in &self.skipped {
            eprintln!("warning: skipping checkpoint `{}`: {}", p.display(), e.message());
        }
    }
}

/// Find the newest loadable checkpoint of `dir`.
pub fn newest(dir: &Path) -> Result<Newest> {
    let mut skipped = Vec::new();
    for path in checkpoint::list(&dir.join("checkpoints")).into_iter().rev() {
        match checkpoint::load(&path) {
            Ok(loaded) => return Ok(Newest { path, loaded, skipped }),
            // Pruned between listing and reading: not a damaged file.
            Err(e) if !path.exists() => drop(e),
            Err(e) => skipped.push((path, e)),
        }
    }
    let why: Vec<String> = skipped.iter().map(|(p, e)| format!("`{}`: {}", p.display(), e.message())).collect();
    let mut err = Error::input("run::no_checkpoint", format!("`{}` has no loadable checkpoint", dir.display()));
    err = if why.is_empty() && dir.join("run.json").exists() {
        err.with_help(format!(
            "the run stopped before its first checkpoint; start it again with `--out {}` (or use \
             `--checkpoint-every` to save within epochs)",
            dir.display()
        ))
    } else if why.is_empty() {
        err.with_help("pass a run directory made by `stackflow run`, or a checkpoint file in one")
    } else {
        err.with_help(format!("every checkpoint failed to load: {}", why.join("; ")))
    };
    Err(err)
}

/// A checkpoint named on the command line, loaded once, with the run directory it
/// belongs to (`None` for a file that lies in no run's `checkpoints/` with its id).
pub struct Located {
    /// The run directory, if the checkpoint has one.
    pub dir: Option<PathBuf>,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Its content.
    pub loaded: Loaded,
}

/// Locate `path`: a run directory resumes from its newest loadable checkpoint (newer
/// damaged ones are named on stderr); a file is loaded and its own run directory found.
pub fn locate(path: &Path) -> Result<Located> {
    if path.is_dir() {
        let n = newest(path)?;
        n.warn_skipped();
        return Ok(Located { dir: Some(path.to_path_buf()), checkpoint: n.path, loaded: n.loaded });
    }
    let loaded = checkpoint::load(path)?;
    Ok(Located { dir: owner_of(path, &loaded)?, checkpoint: path.to_path_buf(), loaded })
}

/// The error for a checkpoint file that belongs to no run directory.
pub fn stray(path: &Path, help: &str) -> Error {
    Error::input(
        "run::stray_checkpoint",
        format!(
            "`{}` does not belong to a run directory (its folder is not the checkpoints/ of a run with its id)",
            path.display()
        ),
    )
    .with_help(help.to_string())
}

/// Where a resumed run continues: its directory and the checkpoint it starts from.
pub struct ResumeFrom {
    /// The run directory to write into.
    pub dir: PathBuf,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Its content.
    pub loaded: Loaded,
}

/// Resolve `--resume PATH [--out DIR]`: the checkpoint [`locate`] finds continues in
/// `--out` when given, else in its own run directory; a file that belongs to no run
/// directory needs `--out`.
pub fn resume_from(path: &Path, out: Option<&Path>) -> Result<ResumeFrom> {
    let Located { dir, checkpoint, loaded } = locate(path)?;
    let dir = match out.map(Path::to_path_buf).or(dir) {
        Some(d) => d,
        None => return Err(stray(path, "pass `--out DIR` to continue it in a new run directory")),
    };
    Ok(ResumeFrom { dir, checkpoint, loaded })
}

/// The run directory's lock, held for the life of the value.
pub struct Lock(#[allow(dead_code)] File);

/// Take the lock of `dir` (refused while another stackflow process holds it).
pub fn lock(dir: &Path) -> Result<Lock> {
    let path = dir.join(".lock");
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Lock(f)),
        Err(_) => Err(Error::input("run::locked", format!("another stackflow run is using `{}`", dir.display()))
            .with_help("wait for it to finish, or pass a different --out")),
    }
}

/// Remove temp files that a killed or failed checkpoint write left behind. Only called
/// while holding the lock, so no other writer is using them.
pub fn clean_temp_files(ckpt_dir: &Path) {
    for e in std::fs::read_dir(ckpt_dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("ckpt-") && name.contains(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// One path component from a flow name: anything but letters, digits, `-`, `_` and `.`
/// becomes `_`, and names of only dots become `_`.
pub fn safe_component(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_component() {
        assert_eq!(safe_component("../../x"), ".._.._x");
        assert_eq!(safe_component("/abs/path"), "_abs_path");
        assert_eq!(safe_component(".."), "_");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component("quickstart"), "quickstart");
    }
}
