//! One module per subcommand; shared argument groups here.

pub mod bench;
pub mod check;
pub mod encode;
pub mod eval;
pub mod forward;
pub mod graph;
pub mod info;
pub mod metrics;
pub mod plugins;
pub mod run;
pub mod sample;

use std::path::PathBuf;
use std::sync::Arc;

use stackflow_core::ir::{self, BuildOptions, Flow};
use stackflow_core::registry::Registry;
use stackflow_core::train::infer;
use stackflow_core::{dsl, plugin, Error, Result};

/// The graph file and what changes it.
#[derive(clap::Args, Debug, Clone)]
pub struct GraphArgs {
    /// The RON graph file.
    pub file: PathBuf,
    /// Override a variable, `--set gf_dim=16` (the value may be an expression), or a stage
    /// field, `--set stage1.epochs=4` (repeatable; see docs/graph-format.md).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Take a net from another graph file, `--use d1=graphs/variants/d1_patch.ron`, with
    /// the templates it uses (repeatable; the recipe stays this file's).
    #[arg(long = "use", value_name = "NET=FILE")]
    pub uses: Vec<String>,
    /// Refuse nets whose estimated memory exceeds this, e.g. `8GiB`, `512MiB`.
    #[arg(long, value_name = "SIZE", default_value = "16GiB", value_parser = parse_size)]
    pub max_memory: u64,
    /// Load a plugin library (repeatable); also read from STACKFLOW_PLUGIN_PATH.
    #[arg(long = "plugin", value_name = "LIB")]
    pub plugins: Vec<PathBuf>,
    /// Use G's trained weights, not the moving average a stage with `ema` keeps (the default).
    #[arg(long)]
    pub no_ema: bool,
}

impl GraphArgs {
    /// Parse and check the graph with the kinds of `base` and the plugins it names.
    pub fn build(&self, base: &Registry) -> Result<Flow> {
        Ok(self.build_with_registry(base)?.0)
    }

    /// Parse the graph, add the plugins it and the flags name to the kinds of `base`, and
    /// check it.
    pub fn build_with_registry(&self, base: &Registry) -> Result<(Flow, Registry)> {
        let mut parsed = dsl::load(&self.file)?;
        let flags = stackflow_core::error::SourceFile::new("--use", self.uses.join(" "));
        let mut at = 0;
        for flag in &self.uses {
            let Some((net, file)) = flag.split_once('=') else {
                return Err(flags
                    .error("cli::bad_use", (at, flag.len().max(1)).into(), format!("`--use {flag}` is not `NET=FILE`"))
                    .with_help("e.g. `--use d1=graphs/variants/d1_patch.ron`"));
            };
            parsed = dsl::compose::use_net(&parsed, net.trim(), std::path::Path::new(file.trim()), &flags, at)?;
            at += flag.len() + 1;
        }
        let mut registry = base.clone();
        for lib in plugin::requested(Some(&self.file), &parsed.doc.plugins, &self.plugins) {
            plugin::load(&mut registry, &lib)?;
        }
        let flow = ir::build(Arc::new(parsed), &registry, &BuildOptions { overrides: self.set.clone() })?;
        Ok((flow, registry))
    }
}

/// The noise a sampling command draws (default: the sampler the stage trained with).
#[derive(clap::Args, Debug, Clone)]
pub struct NoiseArgs {
    /// A noise sampler kind instead of the run's, e.g. `samplers.truncated_normal`.
    #[arg(long, value_name = "KIND")]
    pub noise: Option<String>,
    /// An attribute of `--noise`, e.g. `--noise-attr truncation=0.5` (repeatable).
    #[arg(long = "noise-attr", value_name = "NAME=VALUE")]
    pub noise_attrs: Vec<String>,
}

impl NoiseArgs {
    /// The sampler for stage `s` of `t`.
    pub fn sampler(&self, t: &infer::Trained, s: usize) -> Result<Arc<dyn stackflow_core::kind::NoiseSampler>> {
        t.noise(s, self.noise.as_deref(), &self.noise_attrs)
    }
}

/// A trained run and the plugin libraries it needs.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainedArgs {
    /// A run directory, or a checkpoint file in its `checkpoints/` folder.
    pub run: PathBuf,
    /// Load a plugin library the run needs (repeatable); also read from STACKFLOW_PLUGIN_PATH.
    /// Libraries recorded in the run's run.json are never loaded implicitly.
    #[arg(long = "plugin", value_name = "LIB")]
    pub plugins: Vec<PathBuf>,
    /// Use G's trained weights, not the moving average a stage with `ema` keeps (the default).
    #[arg(long)]
    pub no_ema: bool,
}

impl TrainedArgs {
    /// Open the run with the named plugins and say which checkpoint is used.
    pub fn open(&self, base: &Registry) -> Result<infer::Trained> {
        let mut registry = base.clone();
        for lib in plugin::requested(None, &[], &self.plugins) {
            plugin::load(&mut registry, &lib)?;
        }
        let mut t = infer::open(&self.run, &registry)?;
        if self.no_ema {
            t.without_averages()?;
        }
        let p = &t.loaded.meta.position;
        eprintln!("using checkpoint {} (stage {}, iteration {})", t.checkpoint.display(), p.stage + 1, p.step);
        Ok(t)
    }
}

/// `16GiB`, `512MiB`, `1000000` (bytes).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a size such as 8GiB"))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("unknown size unit in `{s}` (use B, KiB, MiB, GiB, TiB)")),
    };
    let v = n * mul as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(v as u64)
}

/// `10,301,248`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A net by name or a diagnostic listing the nets.
pub fn pick_net<'a>(flow: &'a Flow, name: &str) -> Result<&'a ir::Net> {
    flow.net(name).ok_or_else(|| {
        let names: Vec<&str> = flow.nets.iter().map(|n| n.name.as_str()).collect();
        let mut e = Error::input("cli::unknown_net", format!("`{name}` is not a net of {}", flow.parsed.src.name));
        e = e.with_help(
            stackflow_core::error::did_you_mean(name, names.iter().copied())
                .unwrap_or_else(|| format!("nets: {}", names.join(", "))),
        );
        e
    })
}

/// Where tensors live.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The CPU (default).
    Cpu,
    /// An NVIDIA GPU (needs a build with `--features cuda`).
    Cuda,
}

/// Evaluate `$body` with `$dev` bound to the seeded device `$device` names (generic code
/// cannot be a closure, hence a macro). `--device cuda` in a CPU-only build is an error.
macro_rules! on_device {
    ($device:expr, $seed:expr, |$dev:ident| $body:expr) => {
        match $device {
            $crate::commands::Device::Cpu => {
                let $dev = stackflow_core::exec::cpu($seed);
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::commands::Device::Cuda => {
                let $dev = stackflow_core::exec::cuda($seed)?;
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::commands::Device::Cuda => Err($crate::commands::no_cuda()),
        }
    };
}
pub(crate) use on_device;

/// The error for `--device cuda` in a CPU-only build.
#[cfg(not(feature = "cuda"))]
pub fn no_cuda() -> Error {
    Error::input("cli::no_cuda", "this stackflow was built without CUDA support")
        .with_help("rebuild with `cargo build --release --features cuda` (needs the CUDA toolkit)")
}
