//! The one registry of extension kinds. Built-in blocks and plugin blocks register the
//! same way; a kind name can be registered once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{did_you_mean, Error, Result};
use crate::exec::ops::{Ops, Tensor};
use crate::ir::{Attrs, Inferred, Shape};

/// A node kind: reads its attributes into a configured [`Block`].
pub trait BlockKind: Send + Sync {
    /// Namespaced kind name (`core.conv2d`).
    fn name(&self) -> &str;
    /// One-line description.
    fn doc(&self) -> &str;
    /// Read attributes (call [`Attrs::finish`] is done by the caller) and configure.
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>>;
}

/// A configured node: shape inference, parameter specs and forward.
pub trait Block: Send + Sync + fmt::Debug {
    /// Output port names; the first is the node's default output.
    fn ports(&self) -> Vec<String> {
        vec!["out".to_string()]
    }

    /// Output shapes, parameters and FLOPs for these per-sample input shapes. The
    /// message of an `Err` is shown with the node, its kind, the shapes and the span.
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String>;

    /// Compute the outputs. `params` follow the order of [`Inferred::params`]. Shapes
    /// were proven by [`Block::infer`]; batch size is the leading dim of every input.
    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>>;
}

/// Where a kind comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Compiled into stackflow.
    BuiltIn,
    /// Loaded from a plugin library.
    Plugin(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn => f.write_str("built-in"),
            Source::Plugin(p) => f.write_str(p),
        }
    }
}

/// A GAN objective: reads named discriminator outputs; D and G losses built with [`Ops`].
pub trait LossKind: Send + Sync {
    /// Namespaced kind name (`stackgan.matching_aware_bce`).
    fn name(&self) -> &str;
    /// One-line description.
    fn doc(&self) -> &str;
    /// Read attributes and configure.
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Loss>>;
}

/// Discriminator outputs by name for one kind of pair.
pub type Outs = Vec<(String, Tensor)>;

/// A loss value and its named parts (for logs), all shape [1].
#[derive(Clone, Debug)]
pub struct Terms {
    /// What is minimised.
    pub total: Tensor,
    /// Named parts (`D_cond_real`, …).
    pub parts: Vec<(String, Tensor)>,
}

/// A configured GAN objective.
pub trait Loss: Send + Sync + fmt::Debug {
    /// Discriminator outputs the loss needs (checked when a stage is set up).
    fn needs(&self) -> Vec<String>;
    /// Outputs the loss uses when the discriminator has them (e.g. `uncond_prob`).
    fn optional(&self) -> Vec<String> {
        Vec::new()
    }
    /// D loss from (real image, its text), (real image, mismatched text), (fake, text). The
    /// mismatched pairs carry only outputs that depend on the condition.
    fn d_loss(&self, ops: &mut dyn Ops, real: &Outs, wrong: &Outs, fake: &Outs) -> Result<Terms>;
    /// G's adversarial loss from D's outputs on fakes (the trainer adds the KL term).
    fn g_loss(&self, ops: &mut dyn Ops, fake: &Outs) -> Result<Terms>;
}

/// What a sampler kind configures into.
pub enum SamplerImpl {
    /// Draws G's noise `z`.
    Noise(Arc<dyn NoiseSampler>),
    /// Picks mismatched (image, text) pairs.
    Mismatch(Arc<dyn MismatchSampler>),
}

/// A sampler kind.
pub trait SamplerKind: Send + Sync {
    /// Namespaced kind name (`core.normal`).
    fn name(&self) -> &str;
    /// One-line description.
    fn doc(&self) -> &str;
    /// Read attributes and configure.
    fn configure(&self, attrs: &mut Attrs) -> Result<SamplerImpl>;
}

/// Draws the generator's noise.
pub trait NoiseSampler: Send + Sync + fmt::Debug {
    /// `batch × dim` values, C order.
    fn sample(&self, rng: &mut dyn rand::RngCore, batch: usize, dim: usize) -> Result<Vec<f32>>;
}

/// Chooses mismatched pairs for the matching-aware discriminator.
pub trait MismatchSampler: Send + Sync + fmt::Debug {
    /// Pairs `(image index, text index)` within the batch whose text does not describe
    /// the image; `tags[i]` are the dataset's labels of sample `i` (may be empty).
    fn pairs(&self, rng: &mut dyn rand::RngCore, tags: &[Vec<u32>]) -> Result<Vec<(usize, usize)>>;
}

/// Kinds of one family by name, with where each came from.
pub struct Table<K: ?Sized> {
    items: BTreeMap<String, (Arc<K>, Source)>,
}

impl<K: ?Sized> Clone for Table<K> {
    fn clone(&self) -> Self {
        Self { items: self.items.clone() }
    }
}

impl<K: ?Sized> Default for Table<K> {
    fn default() -> Self {
        Self { items: BTreeMap::new() }
    }
}

impl<K: ?Sized> Table<K> {
    fn add(&mut self, family: &str, name: &str, kind: Arc<K>, source: Source) -> Result<()> {
        if !valid_kind_name(name) {
            return Err(Error::input(
                "registry::bad_name",
                format!("{family} kind name `{name}` is not namespaced snake_case (`namespace.name`)"),
            ));
        }
        if let Some((_, prev)) = self.items.get(name) {
            return Err(Error::input(
                "registry::duplicate_kind",
                format!("{family} kind `{name}` from {source} is already registered by {prev}"),
            )
            .with_help("rename the kind in one of them; kinds are never overwritten"));
        }
        self.items.insert(name.to_string(), (kind, source));
        Ok(())
    }

    /// A kind by name.
    pub fn get(&self, name: &str) -> Option<&Arc<K>> {
        self.items.get(name).map(|(k, _)| k)
    }

    /// All kinds with their source, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<K>, &Source)> {
        self.items.iter().map(|(n, (k, s))| (n.as_str(), k, s))
    }

    /// A help line for an unknown name.
    pub fn suggest(&self, name: &str) -> String {
        did_you_mean(name, self.items.keys().map(String::as_str))
            .or_else(|| plugin_hint(name, self.items.keys()))
            .unwrap_or_else(|| format!("known kinds: {}", self.items.keys().cloned().collect::<Vec<_>>().join(", ")))
    }
}

/// Every kind stackflow knows, built-in or loaded: blocks, losses and samplers.
#[derive(Clone, Default)]
pub struct Registry {
    blocks: Table<dyn BlockKind>,
    losses: Table<dyn LossKind>,
    samplers: Table<dyn SamplerKind>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with every built-in kind.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        crate::blocks::register_builtins(&mut r).expect("built-in kinds are unique");
        crate::train::register_builtins(&mut r).expect("built-in kinds are unique");
        r
    }

    /// Register a block kind; a duplicate name is an error.
    pub fn add_block(&mut self, kind: Arc<dyn BlockKind>, source: Source) -> Result<()> {
        let name = kind.name().to_string();
        self.blocks.add("block", &name, kind, source)
    }

    /// Register a loss kind; a duplicate name is an error.
    pub fn add_loss(&mut self, kind: Arc<dyn LossKind>, source: Source) -> Result<()> {
        let name = kind.name().to_string();
        self.losses.add("loss", &name, kind, source)
    }

    /// Register a sampler kind; a duplicate name is an error.
    pub fn add_sampler(&mut self, kind: Arc<dyn SamplerKind>, source: Source) -> Result<()> {
        let name = kind.name().to_string();
        self.samplers.add("sampler", &name, kind, source)
    }

    /// A block kind by name.
    pub fn block(&self, name: &str) -> Option<&Arc<dyn BlockKind>> {
        self.blocks.get(name)
    }

    /// All block kinds.
    pub fn blocks(&self) -> &Table<dyn BlockKind> {
        &self.blocks
    }

    /// All loss kinds.
    pub fn losses(&self) -> &Table<dyn LossKind> {
        &self.losses
    }

    /// All sampler kinds.
    pub fn samplers(&self) -> &Table<dyn SamplerKind> {
        &self.samplers
    }

    /// A help line for an unknown block kind.
    pub fn suggest_block(&self, name: &str) -> String {
        did_you_mean(name, self.blocks.items.keys().map(String::as_str))
            .or_else(|| plugin_hint(name, self.blocks.items.keys()))
            .unwrap_or_else(|| {
                format!(
                    "known kinds: {}; templates and nets of this file are used by name",
                    self.blocks.items.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
    }
}

/// For a namespaced name whose namespace no known kind uses: how to load a plugin.
fn plugin_hint<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Option<String> {
    let (ns, _) = name.split_once('.')?;
    let mut known = known;
    if known.any(|k| k.split_once('.').is_some_and(|(n, _)| n == ns)) {
        return None;
    }
    Some(format!("no loaded kind is in namespace `{ns}`: if a plugin provides it, load it with `--plugin LIB` (`stackflow plugins list` shows what is loaded)"))
}

fn valid_kind_name(name: &str) -> bool {
    let mut parts = name.split('.');
    let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if ok(a) && ok(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_kind_is_an_error() {
        let mut r = Registry::with_builtins();
        let k = r.block("core.relu").unwrap().clone();
        let e = r.add_block(k, Source::Plugin("x.so".into())).unwrap_err();
        assert_eq!(e.code_str(), "registry::duplicate_kind");
        assert!(e.message().contains("x.so"));
    }

    #[test]
    fn suggests_close_names() {
        let r = Registry::with_builtins();
        assert_eq!(r.suggest_block("core.conv2"), "did you mean `core.conv2d`?");
        assert!(valid_kind_name("my_plugin.attn2"));
        assert!(!valid_kind_name("Conv"));
        assert!(r.suggest_block("myplugin.attn").contains("--plugin"));
        assert!(!r.suggest_block("core.nothing_like_it").contains("--plugin"));
    }
}
