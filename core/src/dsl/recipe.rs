//! The training recipe as written: one `Stage(...)` per GAN game. A file that extends
//! another gives stages field by field ([`StagePatch`]); once every file is read, each
//! stage's patches make one [`StageDef`] with the defaults filled in.

use serde::{Deserialize, Deserializer, Serialize};

/// The stage fields: the required ones, then those with defaults. One list makes the
/// complete stage, the patch a file gives, and the merge of patches.
macro_rules! stage_fields {
    (
        required: [$($(#[$rm:meta])* $r:ident: $rt:ty,)*]
        optional: [$($(#[$om:meta])* $o:ident: $ot:ty = $od:expr,)*]
    ) => {
        /// One training stage: a GAN game between a generator and a discriminator net.
        #[derive(Clone, Debug, Serialize, PartialEq)]
        #[serde(rename = "Stage")]
        pub struct StageDef {
            /// Stage name (`stage1`).
            pub name: String,
            $($(#[$rm])* pub $r: $rt,)*
            $($(#[$om])* pub $o: $ot,)*
        }

        /// A stage as one file gives it: every field but the name may be left out, to be
        /// inherited (from the stage of the same name in the file extended) or defaulted.
        #[derive(Clone, Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename = "Stage")]
        pub struct StagePatch {
            /// Stage name (`stage1`): the stage this patch makes or changes.
            pub name: String,
            $($(#[$rm])* #[serde(default, deserialize_with = "present")] pub $r: Option<$rt>,)*
            $($(#[$om])* #[serde(default, deserialize_with = "present")] pub $o: Option<$ot>,)*
        }

        impl StagePatch {
            /// The names of the fields this patch gives.
            pub fn given(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(if self.$r.is_some() { out.push(stringify!($r)); })*
                $(if self.$o.is_some() { out.push(stringify!($o)); })*
                out
            }

            /// Lay `later` over this patch: every field `later` gives replaces this one's.
            pub fn merge(&mut self, later: StagePatch) {
                $(if later.$r.is_some() { self.$r = later.$r; })*
                $(if later.$o.is_some() { self.$o = later.$o; })*
            }

            /// The complete stage, or the name of the first required field missing.
            pub fn finish(self) -> Result<StageDef, &'static str> {
                Ok(StageDef {
                    name: self.name,
                    $($r: self.$r.ok_or(stringify!($r))?,)*
                    $($o: self.$o.unwrap_or_else(|| $od),)*
                })
            }
        }
    };
}

stage_fields! {
    required: [
        /// The net playing G; needs outputs `fake_img`, `mu`, `logvar`.
        generator: String,
        /// The net playing D; needs input `img` and the outputs the loss asks for.
        discriminator: String,
        /// Number of epochs.
        epochs: u64,
        /// Batch size.
        batch: u64,
        /// Where images and captions come from.
        data: DataDef,
    ]
    optional: [
        /// Nets whose parameters are not trained in this stage.
        frozen: Vec<String> = Vec::new(),
        /// The GAN loss kind.
        loss: String = "stackgan.matching_aware_bce".into(),
        /// Attributes of the loss.
        loss_params: ron::Value = ron::Value::Unit,
        /// The noise sampler kind.
        noise: String = "core.normal".into(),
        /// Attributes of the noise sampler (`(truncation: 0.5)`).
        noise_params: ron::Value = ron::Value::Unit,
        /// The mismatched-text sampler kind.
        mismatch: String = "stackgan.batch_shift".into(),
        /// Attributes of the mismatch sampler.
        mismatch_params: ron::Value = ron::Value::Unit,
        /// What D's `cond` input receives: G's detached CA mean (StackGAN-Pytorch) or the
        /// text embedding itself, for a D with its own text projection (the TF original).
        d_condition: DCondition = DCondition::default(),
        /// Weight of the CA KL term in the G loss.
        kl_weight: f64 = 2.0,
        /// Optimiser of both nets (unless `d_optimizer` is given).
        optimizer: Optimizer = Optimizer::default(),
        /// Optimiser of D, if it differs.
        d_optimizer: Option<Optimizer> = None,
        /// Learning-rate schedule.
        lr_decay: LrDecay = LrDecay::default(),
        /// Checkpoints within an epoch, besides the one at each epoch's end.
        checkpoint_every: Option<CheckpointEvery> = None,
        /// An exponential moving average of G's weights with this decay per G step
        /// (`Some(0.999)`); the stage's G ends as the average.
        ema: Option<f64> = None,
        /// DiffAugment policies applied to every image batch D sees, real and fake
        /// (`[Color, Translation, Cutout]`).
        augment: Vec<Augment> = Vec::new(),
        /// Periodic evaluation, keeping `checkpoints/best.safetensors`
        /// (`Some((every: 500, metric: Both))`, `Some((every: 1000, metric: Fid))`).
        eval: Option<EvalDef> = None,
    ]
}

/// A field that is present, whatever its value (`ema: None` is given, and turns EMA off).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// How often a stage writes a checkpoint within an epoch.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum CheckpointEvery {
    /// Every this many iterations.
    Steps(u64),
    /// Every this many minutes of training.
    Minutes(u64),
}

/// Periodic evaluation during a stage: caption fidelity on held-out synthetic captions,
/// or FID/KID against the stage's real images (with `run --inception`), logged to
/// `metrics.jsonl`, with the best checkpoint kept.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EvalDef {
    /// Every this many iterations of the stage.
    pub every: u64,
    /// The score `checkpoints/best.safetensors` is kept by.
    #[serde(default)]
    pub metric: EvalMetric,
    /// Held-out captions (caption fidelity).
    #[serde(default = "default_eval_captions")]
    pub captions: usize,
    /// Samples per caption (caption fidelity).
    #[serde(default = "default_eval_per_caption")]
    pub per_caption: usize,
    /// Real and generated images compared (FID, KID).
    #[serde(default = "default_eval_images")]
    pub images: usize,
}

fn default_eval_captions() -> usize {
    64
}

fn default_eval_per_caption() -> usize {
    2
}

fn default_eval_images() -> usize {
    500
}

/// Which score picks the best checkpoint.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum EvalMetric {
    /// Background and object colour both match the caption (synthetic shapes).
    #[default]
    Both,
    /// The object colour matches (synthetic shapes).
    Object,
    /// The background colour matches (synthetic shapes).
    Background,
    /// Fréchet Inception Distance to the stage's real images (any data).
    Fid,
    /// Kernel Inception Distance to the stage's real images (any data).
    Kid,
}

impl EvalMetric {
    /// The `metrics.jsonl` key of this score.
    pub fn key(self) -> &'static str {
        match self {
            EvalMetric::Both => "eval_both",
            EvalMetric::Object => "eval_object",
            EvalMetric::Background => "eval_background",
            EvalMetric::Fid => "eval_fid",
            EvalMetric::Kid => "eval_kid",
        }
    }

    /// Whether the score compares Inception features (and needs its weights).
    pub fn uses_inception(self) -> bool {
        matches!(self, EvalMetric::Fid | EvalMetric::Kid)
    }

    /// Whether `a` is a better score than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        if self.uses_inception() {
            a < b
        } else {
            a > b
        }
    }
}

/// A DiffAugment policy (Zhao et al., 2020).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum Augment {
    /// Random brightness, saturation and contrast per image.
    Color,
    /// A random shift of up to 1/8 of the side, zeros shifted in.
    Translation,
    /// A random square of half the side set to zero.
    Cutout,
}

/// The source of the discriminator's condition.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum DCondition {
    /// The generator's CA mean μ, detached.
    #[default]
    Mu,
    /// The text embedding.
    Embedding,
}

/// An optimiser and its hyper-parameters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub enum Optimizer {
    /// Adam as in PyTorch.
    Adam {
        /// Learning rate.
        lr: f64,
        /// (β1, β2).
        #[serde(default = "default_betas")]
        betas: (f64, f64),
        /// ε added to the denominator.
        #[serde(default = "default_eps")]
        eps: f64,
    },
}

fn default_betas() -> (f64, f64) {
    (0.5, 0.999)
}
fn default_eps() -> f64 {
    1e-8
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Adam { lr: 2e-4, betas: default_betas(), eps: default_eps() }
    }
}

/// A learning-rate schedule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub enum LrDecay {
    /// Constant learning rate.
    #[default]
    Constant,
    /// Halve the learning rate every `every_epochs` epochs.
    Halve {
        /// Period in epochs.
        every_epochs: u64,
    },
}

/// A dataset.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub enum DataDef {
    /// Generated captioned shapes; no files needed.
    SyntheticShapes {
        /// Number of images per epoch.
        #[serde(default = "default_count")]
        count: u64,
        /// Generator seed.
        #[serde(default)]
        seed: u64,
    },
    /// A StackGAN (CUB/Oxford) style folder.
    Folder {
        /// The dataset root, relative to the graph file.
        root: String,
        /// The split (`train` or `test`).
        #[serde(default = "default_split")]
        split: String,
    },
}

fn default_count() -> u64 {
    2048
}
fn default_split() -> String {
    "train".into()
}
