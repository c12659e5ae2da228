//! Shared helpers of the fixture tests: reading tests/fixtures (see its README), the
//! hash-generated inputs, subsampling and the manifest's tolerances.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stackflow_core::exec::weights;
use stackflow_core::ir::{self, BuildOptions, Flow};
use stackflow_core::ops::{Binary, Ops, Tensor};
use stackflow_core::registry::Registry;

/// The repository the tests read graphs and fixtures from: `STACKFLOW_ROOT` when set (a
/// test binary built on one machine and run on another, see scripts/gpu-check.sh), else
/// the one they were built in.
pub fn root() -> PathBuf {
    match std::env::var_os("STACKFLOW_ROOT") {
        Some(r) => PathBuf::from(r),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

pub fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap()).unwrap()
}

pub use stackflow_test_util::hash_uniform;

/// The fixture's tensors: stored ones, hash-generated ones, and subsampling strides.
pub struct Fixture {
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub strides: HashMap<String, usize>,
}

impl Fixture {
    pub fn open(file: &str) -> Self {
        let path = fixtures().join(file);
        let mut tensors: HashMap<_, _> = weights::read_all(&path).unwrap().into_iter().collect();
        for g in manifest()["generated_tensors"].as_array().unwrap() {
            if g["file"] == file {
                let shape: Vec<usize> =
                    g["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                let n = shape.iter().product();
                let data = hash_uniform(n, g["tag"].as_u64().unwrap() as u32, g["scale_pow2"].as_i64().unwrap() as i32);
                tensors.insert(g["name"].as_str().unwrap().to_string(), (shape, data));
            }
        }
        let bytes = std::fs::read(&path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut strides = HashMap::new();
        if let Some(m) = meta.metadata().as_ref().and_then(|m| m.get("fixture")) {
            let j: serde_json::Value = serde_json::from_str(m).unwrap();
            if let Some(sub) = j["subsampled"].as_object() {
                for (k, v) in sub {
                    strides.insert(k.clone(), v["stride"].as_u64().unwrap() as usize);
                }
            }
        }
        Fixture { tensors, strides }
    }

    pub fn get(&self, name: &str) -> &(Vec<usize>, Vec<f32>) {
        self.tensors.get(name).unwrap_or_else(|| panic!("fixture has no `{name}`"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Compare ours (full, C order) with the fixture's `name`; return (max_rel, l2_rel).
    pub fn compare(&self, name: &str, ours: &[f32]) -> (f64, f64) {
        let want = &self.get(name).1;
        let stride = self.strides.get(name).copied().unwrap_or(1);
        let got: Vec<f32> = ours.iter().step_by(stride).copied().collect();
        assert_eq!(got.len(), want.len(), "{name}: length (stride {stride})");
        let max_b = want.iter().fold(0f64, |m, b| m.max((*b as f64).abs()));
        let max_d = got.iter().zip(want).fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
        let l2_d: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt();
        let l2_b: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
        let rel = |d: f64, b: f64| if b == 0.0 { d } else { d / b };
        (rel(max_d, max_b), rel(l2_d, l2_b))
    }
}

/// The manifest's bounds for a category: (max_rel, l2_rel); `None` is unchecked.
pub fn tol(category: &str) -> (Option<f64>, Option<f64>) {
    let t = &manifest()["tolerances"]["recommended"]["free_running"][category];
    assert!(t.is_object(), "no tolerance category `{category}` in the manifest");
    (t["max_rel"].as_f64(), t["l2_rel"].as_f64())
}

/// Record a failure unless `ours` is within every bound of `category` for fixture `name`.
pub fn check(fx: &Fixture, name: &str, ours: &[f32], category: &str, failures: &mut Vec<String>) {
    let (max_rel, l2_rel) = fx.compare(name, ours);
    let (tm, tl) = tol(category);
    let bad_max = tm.is_some_and(|t| max_rel > t);
    let bad_l2 = tl.is_some_and(|t| l2_rel > t);
    if bad_max || bad_l2 {
        failures.push(format!("{name}: max_rel {max_rel:.2e} (tol {tm:?}), l2_rel {l2_rel:.2e} (tol {tl:?})"));
    }
}

pub fn flow() -> Flow {
    let c = &manifest()["config"];
    let set = |k: &str, v: &str| format!("{k}={}", c[v].as_u64().unwrap());
    let overrides = vec![
        set("embed_dim", "embed_dim"),
        set("z_dim", "z_dim"),
        set("cond_dim", "cond_dim"),
        set("gf_dim", "gf_dim"),
        set("df_dim", "df_dim"),
        set("r_num", "r_num"),
    ];
    let parsed = stackflow_core::dsl::load(&root().join("graphs/stackgan256.ron")).unwrap();
    ir::build(Arc::new(parsed), &Registry::with_builtins(), &BuildOptions { overrides }).unwrap()
}

/// `loss + Σ weights ⊙ h` (`weights` has `h`'s elements), recorded on `r`'s tape; the
/// sum alone when there is no `loss` yet.
pub fn add_weighted_sum(r: &mut impl Ops, loss: Option<Tensor>, h: Tensor, weights: &[f32]) -> Tensor {
    let dims = r.shape(h).unwrap();
    let w = r.constant(weights, &dims).unwrap();
    let prod = r.binary(Binary::Mul, h, w).unwrap();
    let s = r.sum(prod).unwrap();
    match loss {
        None => s,
        Some(l) => r.binary(Binary::Add, l, s).unwrap(),
    }
}
