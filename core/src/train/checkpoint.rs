//! Checkpoints: every parameter and buffer, both Adam states, the position in the recipe,
//! the seed, the graph hash and the run's id, in one safetensors file written atomically
//! (temp file, fsync, rename). One SHA-256 covers the metadata and every tensor's name,
//! shape and bytes, so a torn, corrupt or edited file is refused as a whole.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use super::adam::Adam;
use super::game::{DeviceOptimizers, Optimizers};
use crate::error::{Error, Result};
use crate::exec::{ParamStore, Val};
use crate::kernels::KernelDevice;

/// Where a run is in its recipe.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Stage index.
    pub stage: usize,
    /// Epochs completed in that stage.
    pub epoch: u64,
    /// Iterations completed in that stage.
    pub step: u64,
    /// Whether the stage is finished.
    pub stage_done: bool,
}

/// Everything in a checkpoint besides tensors.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// Recipe position after the saved iteration.
    pub position: Position,
    /// Run seed (per-iteration randomness is derived from seed and step).
    pub seed: u64,
    /// Hash of the graph text and its overrides.
    pub graph_hash: String,
    /// `--set` overrides of the run.
    pub overrides: Vec<String>,
    /// Adam step counts (G, D).
    pub adam_t: (u64, u64),
    /// Id of the run that wrote it (also in the run directory's `run.json`): how a
    /// checkpoint file finds its own run directory.
    #[serde(default)]
    pub run_id: String,
}

/// The one metadata entry of a checkpoint: the metadata and the checksum over it and
/// every tensor. A single key keeps the file's bytes identical between identical runs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    meta: Meta,
    checksum: String,
}

/// SHA-256 over the metadata's JSON and each tensor's name, shape and bytes, in name order.
fn checksum<'a>(meta_json: &str, tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>) -> String {
    let mut digest = Sha256::new();
    digest.update((meta_json.len() as u64).to_le_bytes());
    digest.update(meta_json.as_bytes());
    for (name, shape, data) in tensors {
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name.as_bytes());
        digest.update((shape.len() as u64).to_le_bytes());
        for d in shape {
            digest.update((*d as u64).to_le_bytes());
        }
        digest.update((data.len() as u64).to_le_bytes());
        digest.update(data);
    }
    format!("{:x}", digest.finalize())
}

/// Hash of a graph text with its overrides (what `--resume` compares).
pub fn graph_hash(text: &str, overrides: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    for o in overrides {
        h.update(b"\n--set ");
        h.update(o.as_bytes());
    }
    format!("{:x}", h.finalize())
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write a checkpoint atomically.
pub fn save<D: KernelDevice>(path: &Path, store: &ParamStore<D>, opt: &DeviceOptimizers<D>, meta: &Meta) -> Result<()> {
    let mut owned: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (name, e) in store.iter() {
        owned.push((format!("param.{name}"), bytes_of(&e.value.to_vec()), e.value.dims()));
    }
    for (tag, adam) in [("g", &opt.g), ("d", &opt.d)] {
        let mut keys: Vec<&String> = adam.moments.keys().collect();
        keys.sort();
        for k in keys {
            for (which, moment) in [("m", &adam.moments[k].0), ("v", &adam.moments[k].1)] {
                let values = D::moment_to_host(moment);
                owned.push((format!("adam.{tag}.{which}.{k}"), bytes_of(&values), vec![values.len()]));
            }
        }
    }
    for (k, avg) in &opt.ema.shadow {
        owned.push((format!("ema.g.{k}"), bytes_of(avg), vec![avg.len()]));
    }
    for (k, w) in &opt.ema.raw {
        owned.push((format!("ema.trained.{k}"), bytes_of(w), vec![w.len()]));
    }
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let meta_json = serde_json::to_string(meta).map_err(|e| Error::other("checkpoint::write", e.to_string()))?;
    let sum = checksum(&meta_json, owned.iter().map(|(n, b, s)| (n.as_str(), s.as_slice(), b.as_slice())));
    let envelope = serde_json::to_string(&Envelope { meta: meta.clone(), checksum: sum })
        .map_err(|e| Error::other("checkpoint::write", e.to_string()))?;
    let metadata = HashMap::from([("stackflow".to_string(), envelope)]);
    let views = owned
        .iter()
        .map(|(n, b, s)| safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::other("checkpoint::write", e.to_string()))?;
    let data =
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::other("checkpoint::write", e.to_string()))?;
    write_atomic(path, &data)
}

/// Write `data` to `path` via a temp file, fsync and rename; the old file stays whole
/// until the new one is complete.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(data).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A loaded checkpoint.
pub struct Loaded {
    /// Its metadata.
    pub meta: Meta,
    /// Parameters by path.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Optimiser state.
    pub opt: Optimizers,
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::input("checkpoint::corrupt", format!("checkpoint `{}` is damaged: {why}", path.display()))
        .with_help("use an earlier checkpoint of the run (they are kept in its checkpoints/ folder)")
}

/// Read and verify a checkpoint.
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(path, e))?;
    let md = header.metadata().clone().unwrap_or_default();
    let text =
        md.get("stackflow").ok_or_else(|| corrupt(path, "no stackflow metadata (is it a stackflow checkpoint?)"))?;
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| {
        if md.contains_key("checksum") {
            Error::input(
                "checkpoint::old_format",
                format!(
                    "`{}` was written by an earlier stackflow whose checksum did not cover the metadata",
                    path.display()
                ),
            )
            .with_help("train the run again with this version; its metadata cannot be verified")
        } else {
            corrupt(path, e)
        }
    })?;
    if md.len() != 1 {
        return Err(corrupt(path, "unexpected metadata entries"));
    }
    let meta = envelope.meta;
    let meta_json = serde_json::to_string(&meta).map_err(|e| corrupt(path, e))?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let views = names.iter().map(|n| st.tensor(n).map_err(|e| corrupt(path, e))).collect::<Result<Vec<_>>>()?;
    let sum = checksum(&meta_json, names.iter().zip(&views).map(|(n, v)| (n.as_str(), v.shape(), v.data())));
    if envelope.checksum != sum {
        return Err(corrupt(path, "checksum mismatch"));
    }
    let mut params = Vec::new();
    let mut opt = Optimizers::default();
    opt.g.t = meta.adam_t.0;
    opt.d.t = meta.adam_t.1;
    for (n, v) in names.iter().zip(&views) {
        if v.dtype() != Dtype::F32 {
            return Err(corrupt(path, format!("`{n}` is not f32")));
        }
        let data: Vec<f32> = v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if let Some(p) = n.strip_prefix("param.") {
            params.push((p.to_string(), v.shape().to_vec(), data));
        } else if let Some(p) = n.strip_prefix("ema.g.") {
            opt.ema.shadow.insert(p.to_string(), data);
        } else if let Some(p) = n.strip_prefix("ema.trained.") {
            opt.ema.raw.insert(p.to_string(), data);
        } else if let Some(rest) = n.strip_prefix("adam.") {
            let (adam, rest): (&mut Adam, &str) = match rest.split_once('.') {
                Some(("g", r)) => (&mut opt.g, r),
                Some(("d", r)) => (&mut opt.d, r),
                _ => return Err(corrupt(path, format!("unknown tensor `{n}`"))),
            };
            let (which, key) = rest.split_once('.').ok_or_else(|| corrupt(path, format!("unknown tensor `{n}`")))?;
            let e = adam.moments.entry(key.to_string()).or_default();
            match which {
                "m" => e.0 = data,
                "v" => e.1 = data,
                _ => return Err(corrupt(path, format!("unknown tensor `{n}`"))),
            }
        } else {
            return Err(corrupt(path, format!("unknown tensor `{n}`")));
        }
    }
    check_moments(path, &params, &opt)?;
    Ok(Loaded { meta, params, opt })
}

/// Every Adam moment belongs to a stored parameter and has its element count.
fn check_moments(path: &Path, params: &[(String, Vec<usize>, Vec<f32>)], opt: &Optimizers) -> Result<()> {
    for (tag, adam) in [("g", &opt.g), ("d", &opt.d)] {
        for (key, (m, v)) in &adam.moments {
            let n = params.iter().find(|(name, _, _)| name == key).map(|(_, _, data)| data.len());
            if n != Some(m.len()) || n != Some(v.len()) {
                return Err(corrupt(
                    path,
                    format!("the Adam moments `adam.{tag}.m/v.{key}` do not match a stored parameter of that size"),
                ));
            }
        }
    }
    Ok(())
}

/// Put a checkpoint's parameters into `store`: every stored tensor must exist in the
/// graph with the same shape, and every tensor of the graph must be in the checkpoint.
pub fn restore<D: KernelDevice>(store: &mut ParamStore<D>, loaded: &Loaded, path: &Path) -> Result<()> {
    for (name, shape, data) in &loaded.params {
        if store.get(name).is_none() {
            return Err(Error::input(
                "checkpoint::mismatch",
                format!("`{}` has parameter `{name}`, which the graph does not", path.display()),
            ));
        }
        let v = Val::from_host(&store.dev, data.clone(), shape)?;
        store.set(name, v)?;
    }
    let have: std::collections::HashSet<&str> = loaded.params.iter().map(|(n, _, _)| n.as_str()).collect();
    let missing: Vec<&str> = store.iter().map(|(n, _)| n).filter(|n| !have.contains(n)).collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).copied().collect();
        return Err(Error::input(
            "checkpoint::incomplete",
            format!(
                "`{}` lacks {} parameter(s) of the graph ({}{})",
                path.display(),
                missing.len(),
                shown.join(", "),
                if missing.len() > shown.len() { ", …" } else { "" }
            ),
        )
        .with_help("the checkpoint was made by another graph; use a checkpoint of this run"));
    }
    Ok(())
}

/// Checkpoint files of a run, oldest first.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ckpt-"))
        })
        .collect();
    v.sort();
    v
}
