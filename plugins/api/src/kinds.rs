//! The traits a plugin author implements, one per kind family. Each type is both the kind
//! (its `NAME`, `DOC`, `ATTRS` and `configure`) and the configured instance.

use crate::attrs::Attrs;
use crate::error::{Error, Result};
use crate::ops::{Ops, Tensor};
use crate::rng::Rng;

/// How a parameter is initialised by the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// N(mean, std²).
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// U(−bound, bound).
    Uniform {
        /// Half-width.
        bound: f32,
    },
}

/// A parameter a block declares; the host creates, initialises, trains and saves it, and
/// passes its handle to `forward` (in declaration order).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Local name (`query.weight`); the host prefixes the node's path.
    pub name: String,
    /// Shape (no batch dimension).
    pub shape: Vec<usize>,
    /// Initialiser.
    pub init: Init,
    /// Trained by the optimiser (`false`: a buffer such as a running statistic).
    pub trainable: bool,
}

impl ParamSpec {
    /// A trainable parameter.
    pub fn trainable(name: &str, shape: impl Into<Vec<usize>>, init: Init) -> Self {
        Self { name: name.into(), shape: shape.into(), init, trainable: true }
    }

    /// A buffer (updated by forward, saved in checkpoints, not trained).
    pub fn buffer(name: &str, shape: impl Into<Vec<usize>>, init: Init) -> Self {
        Self { name: name.into(), shape: shape.into(), init, trainable: false }
    }
}

/// What shape inference returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inferred {
    /// Per-sample shapes of the output ports, in port order.
    pub outputs: Vec<Vec<usize>>,
    /// Parameters, in the order `forward` receives them.
    pub params: Vec<ParamSpec>,
    /// Forward FLOPs per sample (2 per multiply-add).
    pub flops: u64,
}

impl Inferred {
    /// Outputs only: no parameters, no FLOPs.
    pub fn outputs(outputs: impl IntoIterator<Item = Vec<usize>>) -> Self {
        Self { outputs: outputs.into_iter().collect(), ..Default::default() }
    }
}

/// One configuration to test a kind with: its attributes as a graph file writes them
/// (RON) and, for a block, the per-sample shapes of its inputs. The host's test suite
/// runs every probe of every registered kind: a block's inferred shapes must be the real
/// ones and its gradients must agree with finite differences; a loss's gradients too.
pub type Probe = (&'static str, &'static [&'static [usize]]);

/// A node kind. Shapes passed to [`Block::infer`] are per sample (no batch dimension);
/// tensors passed to [`Block::forward`] have the batch first.
pub trait Block: Send + Sync + Sized + 'static {
    /// Namespaced kind name (`example.self_attention`).
    const NAME: &'static str;
    /// One-line description.
    const DOC: &'static str;
    /// `(attribute, doc)` pairs.
    const ATTRS: &'static [(&'static str, &'static str)] = &[];
    /// Configurations and input shapes to test the kind with ([`Probe`]).
    const PROBES: &'static [Probe] = &[];

    /// Read the node's attributes.
    fn configure(attrs: &mut Attrs) -> Result<Self>;

    /// Output port names; the first is the node's default output.
    fn ports(&self) -> Vec<String> {
        vec!["out".to_string()]
    }

    /// Output shapes, parameters and FLOPs for these input shapes. The message of an `Err`
    /// is shown with the node, its kind, the input shapes and the node's span.
    fn infer(&self, inputs: &[Vec<usize>]) -> std::result::Result<Inferred, String>;

    /// Compute the outputs; `params` follow [`Inferred::params`].
    fn forward<'a>(&self, ops: &'a Ops, inputs: &[Tensor<'a>], params: &[Tensor<'a>]) -> Result<Vec<Tensor<'a>>>;
}

/// Discriminator outputs by name.
pub struct Outs<'a> {
    items: Vec<(String, Tensor<'a>)>,
    pair: &'static str,
}

impl<'a> Outs<'a> {
    /// Wrap named tensors of the `pair` kind (`real`, `mismatched`, `fake`).
    pub fn new(items: Vec<(String, Tensor<'a>)>, pair: &'static str) -> Self {
        Self { items, pair }
    }

    /// An output by name.
    pub fn get(&self, name: &str) -> Option<Tensor<'a>> {
        self.items.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }

    /// A required output.
    pub fn need(&self, name: &str) -> Result<Tensor<'a>> {
        self.get(name).ok_or_else(|| Error::new(format!("no `{name}` for the {} pairs", self.pair)))
    }

    /// Every output.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Tensor<'a>)> {
        self.items.iter().map(|(n, t)| (n.as_str(), *t))
    }
}

/// A loss value and named parts for logs, all of shape `[1]`.
pub struct Terms<'a> {
    /// What is minimised.
    pub total: Tensor<'a>,
    /// Named parts (`D_real`, …).
    pub parts: Vec<(String, Tensor<'a>)>,
}

impl<'a> Terms<'a> {
    /// A total without parts.
    pub fn total(total: Tensor<'a>) -> Self {
        Self { total, parts: Vec::new() }
    }
}

/// A GAN objective over named discriminator outputs.
pub trait Loss: Send + Sync + Sized + 'static {
    /// Namespaced kind name (`gan_losses.hinge`).
    const NAME: &'static str;
    /// One-line description.
    const DOC: &'static str;
    /// `(attribute, doc)` pairs.
    const ATTRS: &'static [(&'static str, &'static str)] = &[];
    /// Configurations to test the kind with (attributes only; [`Probe`]).
    const PROBES: &'static [Probe] = &[("()", &[])];

    /// Read the stage's `loss_params`.
    fn configure(attrs: &mut Attrs) -> Result<Self>;

    /// Discriminator outputs the loss needs (checked when a stage is set up).
    fn needs(&self) -> Vec<String>;

    /// Outputs the loss uses when the discriminator has them.
    fn optional(&self) -> Vec<String> {
        Vec::new()
    }

    /// D's loss from (real image, its text), (real image, mismatched text), (fake, text).
    /// The mismatched pairs carry only outputs that depend on the condition.
    fn d_loss<'a>(&self, ops: &'a Ops, real: &Outs<'a>, wrong: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>>;

    /// G's adversarial loss from D's outputs on fakes (the host adds the KL term). `real`
    /// holds D's outputs on (real image, its text) from this iteration's D step, before
    /// D's update, as constants: relativistic and feature-matching losses compare with
    /// them; the others ignore them.
    fn g_loss<'a>(&self, ops: &'a Ops, real: &Outs<'a>, fake: &Outs<'a>) -> Result<Terms<'a>>;
}

/// Draws the generator's noise on the plugin side, from the host's generator.
pub trait NoiseSampler: Send + Sync + Sized + 'static {
    /// Namespaced kind name (`samplers.truncated_normal`).
    const NAME: &'static str;
    /// One-line description.
    const DOC: &'static str;
    /// `(attribute, doc)` pairs.
    const ATTRS: &'static [(&'static str, &'static str)] = &[];
    /// Configurations to test the kind with (attributes only; [`Probe`]).
    const PROBES: &'static [Probe] = &[("()", &[])];

    /// Read the attributes.
    fn configure(attrs: &mut Attrs) -> Result<Self>;

    /// `batch × dim` values, C order.
    fn sample(&self, rng: &mut Rng, batch: usize, dim: usize) -> Result<Vec<f32>>;
}

/// Chooses mismatched (image, text) pairs for the matching-aware discriminator.
pub trait MismatchSampler: Send + Sync + Sized + 'static {
    /// Namespaced kind name (`samplers.class_aware`).
    const NAME: &'static str;
    /// One-line description.
    const DOC: &'static str;
    /// `(attribute, doc)` pairs.
    const ATTRS: &'static [(&'static str, &'static str)] = &[];
    /// Configurations to test the kind with (attributes only; [`Probe`]).
    const PROBES: &'static [Probe] = &[("()", &[])];

    /// Read the attributes.
    fn configure(attrs: &mut Attrs) -> Result<Self>;

    /// Pairs `(image index, text index)` within a batch whose sample `i` has the dataset
    /// labels `tags[i]` (possibly empty).
    fn pairs(&self, rng: &mut Rng, tags: &[&[u32]]) -> Result<Vec<(usize, usize)>>;
}
