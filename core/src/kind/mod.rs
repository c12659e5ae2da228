//! The interface every kind implements: blocks, losses, samplers and sentence encoders, with the attribute
//! reader they configure from and the shapes and parameter specs they infer. Built-in and
//! plugin kinds implement these traits; the [`crate::registry::Registry`] holds them by
//! name and the compiler and trainer use them only through this module.

pub mod attrs;
pub mod encoder;
pub mod shape;

use std::fmt;
use std::sync::Arc;

pub use attrs::Attrs;
pub use encoder::{EncoderKind, EncoderOptions, Record, SentenceEncoder, WeightsRecord};
pub use shape::{Inferred, Init, ParamSpec, Role, Shape, MAX_ELEMENTS};

use crate::error::Result;
use crate::ops::{Ops, Tensor};

/// A node kind: reads its attributes into a configured [`Block`].
pub trait BlockKind: Send + Sync {
    /// Namespaced kind name (`core.conv2d`).
    fn name(&self) -> &str;
    /// One-line description.
    fn doc(&self) -> &str;
    /// Read attributes (call [`Attrs::finish`] is done by the caller) and configure.
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>>;
    /// Configurations and input shapes that exercise the kind. The registry-driven test
    /// suite runs each as a one-node net: the inferred shapes must be the real ones and
    /// every gradient must agree with finite differences. A kind without probes fails it.
    fn probes(&self) -> Vec<Probe> {
        Vec::new()
    }
}

/// One configuration of a block kind to test: its attributes as the graph file writes
/// them (RON) and the per-sample shapes of its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Attributes, RON (`(out: 3, bias: false)`).
    pub attrs: String,
    /// Per-sample input shapes.
    pub inputs: Vec<Vec<usize>>,
}

impl Probe {
    /// A probe from attribute text and input shapes.
    pub fn new(attrs: &str, inputs: &[&[usize]]) -> Self {
        Self { attrs: attrs.to_string(), inputs: inputs.iter().map(|d| d.to_vec()).collect() }
    }
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

/// A GAN objective: reads named discriminator outputs; D and G losses built with [`Ops`].
pub trait LossKind: Send + Sync {
    /// Namespaced kind name (`stackgan.matching_aware_bce`).
    fn name(&self) -> &str;
    /// One-line description.
    fn doc(&self) -> &str;
    /// Read attributes and configure.
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Loss>>;
    /// Configurations to test the kind with (attributes only); the default configuration
    /// unless the kind says otherwise.
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[])]
    }
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
    fn g_loss(&self, ops: &mut dyn Ops, real: &Outs, fake: &Outs) -> Result<Terms>;
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
    /// Configurations to test the kind with (attributes only); the default configuration
    /// unless the kind says otherwise.
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[])]
    }
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
