//! The graph file as written: RON parsed into plain serde types (`Doc`), with the source
//! text and a span tree kept so that every later error can point at its cause.

pub mod expr;
pub mod spans;

use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::{Error, Result, SourceFile, Span};
pub use spans::{Key, SpanTree};

/// Graph files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// A parsed graph file: the whole StackGAN (nets, templates, training recipe).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "Flow")]
pub struct Doc {
    /// The flow's name (used for run directories).
    pub name: String,
    /// Named integer variables: numbers or expressions over earlier variables.
    #[serde(default = "unit")]
    pub vars: ron::Value,
    /// Plugin libraries to load, relative to the graph file.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Reusable parameterised sub-graphs.
    #[serde(default)]
    pub blocks: IndexMap<String, BlockDef>,
    /// The networks.
    pub nets: IndexMap<String, NetDef>,
    /// Weight-name maps for other implementations' checkpoints: format → net → map.
    #[serde(default)]
    pub weight_maps: IndexMap<String, IndexMap<String, WeightMapDef>>,
    /// The training recipe: stages run in order.
    #[serde(default)]
    pub train: Vec<StageDef>,
}

/// A block template: nodes wired to named inputs, parameterised by `params`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "Block")]
pub struct BlockDef {
    /// One-line description shown by `stackflow plugins list` and `info`.
    #[serde(default)]
    pub doc: String,
    /// Parameter names; uses are substituted inside node attributes.
    #[serde(default)]
    pub params: Vec<String>,
    /// Input names, bound positionally to the using node's inputs.
    #[serde(default = "default_block_inputs")]
    pub inputs: Vec<String>,
    /// The template's nodes.
    pub nodes: Vec<NodeDef>,
    /// Named outputs (`name: "node.port"`); default: the last node's first output as `out`.
    #[serde(default = "unit")]
    pub outputs: ron::Value,
}

fn unit() -> ron::Value {
    ron::Value::Unit
}

fn default_block_inputs() -> Vec<String> {
    vec!["in".to_string()]
}

/// A network: typed inputs, nodes, named outputs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "Net")]
pub struct NetDef {
    /// Input names and per-sample shapes (batch dimension implicit).
    pub inputs: ron::Value,
    /// Nodes in any order; edges decide the evaluation order.
    pub nodes: Vec<NodeDef>,
    /// Output names and the values they expose.
    pub outputs: ron::Value,
}

/// One node: `(id, kind, attributes, inputs)`.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeDef(
    pub String,
    pub String,
    #[serde(default = "unit")] pub ron::Value,
    #[serde(default)] pub Vec<String>,
);

/// How one net's parameter paths map to another implementation's tensor names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "WeightMap")]
pub struct WeightMapDef {
    /// Ordered prefix rewrites such as `("g1.up1.conv.", "upsample1.1.")`; `*` matches
    /// one path segment and is copied to the same place; the first match wins.
    pub prefixes: Vec<(String, String)>,
    /// Embedded nets: their parameters take the embedded net's own map behind this
    /// prefix (`{"g1": "STAGE1_G."}`).
    #[serde(default)]
    pub embedded: IndexMap<String, String>,
}

/// One training stage: a GAN game between a generator and a discriminator net.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "Stage")]
pub struct StageDef {
    /// Stage name (`stage1`).
    pub name: String,
    /// The net playing G; needs outputs `fake_img`, `mu`, `logvar`.
    pub generator: String,
    /// The net playing D; needs input `img` and the outputs the loss asks for.
    pub discriminator: String,
    /// Nets whose parameters are not trained in this stage.
    #[serde(default)]
    pub frozen: Vec<String>,
    /// The GAN loss kind.
    #[serde(default = "default_loss")]
    pub loss: String,
    /// Attributes of the loss.
    #[serde(default = "unit")]
    pub loss_params: ron::Value,
    /// The noise sampler kind.
    #[serde(default = "default_noise")]
    pub noise: String,
    /// The mismatched-text sampler kind.
    #[serde(default = "default_mismatch")]
    pub mismatch: String,
    /// Attributes of the mismatch sampler.
    #[serde(default = "unit")]
    pub mismatch_params: ron::Value,
    /// What D's `cond` input receives: G's detached CA mean (StackGAN-Pytorch) or the
    /// text embedding itself, for a D with its own text projection (the TF original).
    #[serde(default)]
    pub d_condition: DCondition,
    /// Weight of the CA KL term in the G loss.
    #[serde(default = "default_kl")]
    pub kl_weight: f64,
    /// Optimiser of both nets (unless `d_optimizer` is given).
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Optimiser of D, if it differs.
    #[serde(default)]
    pub d_optimizer: Option<Optimizer>,
    /// Learning-rate schedule.
    #[serde(default)]
    pub lr_decay: LrDecay,
    /// Number of epochs.
    pub epochs: u64,
    /// Batch size.
    pub batch: u64,
    /// Where images and captions come from.
    pub data: DataDef,
    /// Checkpoints within an epoch, besides the one at each epoch's end.
    #[serde(default)]
    pub checkpoint_every: Option<CheckpointEvery>,
    /// An exponential moving average of G's weights with this decay per G step
    /// (`Some(0.999)`); the stage's G ends as the average.
    #[serde(default)]
    pub ema: Option<f64>,
}

/// How often a stage writes a checkpoint within an epoch.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum CheckpointEvery {
    /// Every this many iterations.
    Steps(u64),
    /// Every this many minutes of training.
    Minutes(u64),
}

fn default_loss() -> String {
    "stackgan.matching_aware_bce".into()
}
fn default_noise() -> String {
    "core.normal".into()
}
fn default_mismatch() -> String {
    "stackgan.batch_shift".into()
}
fn default_kl() -> f64 {
    2.0
}

/// The source of the discriminator's condition.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum DCondition {
    /// The generator's CA mean μ, detached.
    #[default]
    Mu,
    /// The text embedding.
    Embedding,
}

/// An optimiser and its hyper-parameters.
#[derive(Clone, Debug, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, PartialEq)]
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

/// A graph file: its source, parsed document and span tree.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The text and its name.
    pub src: SourceFile,
    /// The typed document.
    pub doc: Doc,
    /// Spans of every value.
    pub spans: SpanTree,
}

impl Parsed {
    /// The span of the deepest value that exists along `path`.
    pub fn span(&self, path: &[Key]) -> Span {
        self.spans.best(path)
    }

    /// A spanned input error at `path`.
    pub fn error(&self, code: &'static str, path: &[Key], message: impl Into<String>) -> Error {
        self.src.error(code, self.span(path), message)
    }
}

/// Read and parse a graph file.
pub fn load(path: &Path) -> Result<Parsed> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() as usize > MAX_FILE_BYTES {
        return Err(Error::input(
            "graph::too_large",
            format!("`{}` is {} bytes; graph files are limited to {MAX_FILE_BYTES}", path.display(), meta.len()),
        ));
    }
    // The size from metadata can lie (`/dev/zero`, a FIFO): read at most one byte past the limit.
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_FILE_BYTES as u64 + 1), &mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Error::input(
            "graph::too_large",
            format!("`{}` is longer than {MAX_FILE_BYTES} bytes, the limit for graph files", path.display()),
        ));
    }
    let name = path.display().to_string();
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let src = SourceFile::new(name, lossy);
            return Err(src
                .error("graph::not_utf8", (at, 1).into(), "graph file is not valid UTF-8 text")
                .with_help("graph files are RON text; is this the right file?"));
        }
    };
    parse(SourceFile::new(name, text))
}

/// Parse graph text.
pub fn parse(src: SourceFile) -> Result<Parsed> {
    if src.text.len() > MAX_FILE_BYTES {
        return Err(src.error("graph::too_large", (0, 0).into(), "graph text is too large"));
    }
    if src.text.trim().is_empty() {
        return Err(src
            .error("graph::empty", src.whole(), "graph file is empty")
            .with_help("a graph file starts with `Flow(name: \"…\", nets: { … })`; see docs/graph-format.md"));
    }
    let doc: Doc = match ron::Options::default().from_str(&src.text) {
        Ok(d) => d,
        Err(e) => return Err(ron_error(&src, &e)),
    };
    let spans = SpanTree::scan(&src.text).unwrap_or_default();
    Ok(Parsed { src, doc, spans })
}

fn ron_error(src: &SourceFile, e: &ron::error::SpannedError) -> Error {
    let at = src.offset_of(e.position.line, e.position.col);
    let at = at.min(src.text.len());
    let len = src.text[at..].chars().next().map_or(0, char::len_utf8);
    // ron reports the position after a field name; point at the name itself.
    let (at, len) = match &e.code {
        ron::Error::NoSuchStructField { found: field, .. } => match src.text[..at].rfind(field.as_str()) {
            Some(start) => (start, field.len()),
            None => (at, len),
        },
        ron::Error::DuplicateStructField { field, .. } => match src.text[..at].rfind(field) {
            Some(start) => (start, field.len()),
            None => (at, len),
        },
        _ => (at, len),
    };
    let message = match &e.code {
        ron::Error::ExceededRecursionLimit => "the file nests deeper than 128 levels".to_string(),
        ron::Error::NoSuchStructField { found, outer: Some(outer), .. } => format!("`{outer}` has no field `{found}`"),
        other => other.to_string(),
    };
    let code = match &e.code {
        ron::Error::NoSuchStructField { .. } | ron::Error::NoSuchExtension(_) => "graph::unknown_field",
        ron::Error::ExceededRecursionLimit => "graph::too_deep",
        ron::Error::MissingStructField { .. } => "graph::missing_field",
        ron::Error::Message(_) | ron::Error::InvalidValueForType { .. } => "graph::bad_value",
        _ => "graph::syntax",
    };
    let help = match &e.code {
        ron::Error::NoSuchStructField { expected, .. } => Some(format!(
            "expected one of: {}",
            expected.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        )),
        ron::Error::ExceededRecursionLimit => {
            Some("graph files never need this much nesting; is it generated by mistake?".to_string())
        }
        _ => None,
    };
    let mut err = src.error(code, (at, len).into(), message);
    if let Some(h) = help {
        err = err.with_help(h);
    }
    err
}

/// A RON map value as ordered (name, value) pairs; unit and empty values are empty maps.
pub fn entries(v: &ron::Value) -> Option<Vec<(String, ron::Value)>> {
    match v {
        ron::Value::Unit => Some(Vec::new()),
        ron::Value::Option(None) => Some(Vec::new()),
        ron::Value::Map(m) => m
            .iter()
            .map(|(k, v)| match k {
                ron::Value::String(s) => Some((s.clone(), v.clone())),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Parsed> {
        parse(SourceFile::new("t.ron", text))
    }

    #[test]
    fn parses_minimal_flow() {
        let f = p(r#"Flow(name: "x", vars: (a: 2), nets: { "n": Net(inputs: (x: ["a"]), nodes: [("r", "core.relu", (), ["x"]), ("t", "core.tanh")], outputs: (y: "t")) })"#).unwrap();
        assert_eq!(f.doc.nets["n"].nodes.len(), 2);
        assert_eq!(f.doc.nets["n"].nodes[1].3.len(), 0);
        assert_eq!(entries(&f.doc.vars).unwrap()[0].0, "a");
    }

    #[test]
    fn unknown_field_points_at_it() {
        let e = p(r#"Flow(name: "x", nets: {}, colour: 3)"#).unwrap_err();
        assert_eq!(e.code_str(), "graph::unknown_field");
        assert_eq!(e.spans()[0].offset(), 26);
    }

    #[test]
    fn hostile_text_is_an_error() {
        for t in ["", "   ", "\0\0\0", "Flow(", &"[".repeat(100_000), "Flow(name: 3)"] {
            assert!(p(t).is_err(), "{t:?}");
        }
    }
}
