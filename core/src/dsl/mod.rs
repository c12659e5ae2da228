//! The graph file as written: RON parsed into plain serde types (`Doc`), with the source
//! text and a span tree kept so that every later error can point at its cause.

pub mod compose;
pub mod expr;
pub mod recipe;
pub mod spans;
pub mod write;

use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SourceFile, Span};
pub use recipe::{
    Augment, CheckpointEvery, DCondition, DataDef, EvalDef, EvalMetric, LrDecay, Optimizer, StageDef, StagePatch,
};
pub use spans::{Key, SpanTree};

/// Graph files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// A flow with every `extends` and `include` applied: the whole StackGAN (nets,
/// templates, training recipe) as the compiler sees it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename = "Flow")]
pub struct Doc {
    /// The flow's name (used for run directories).
    pub name: String,
    /// Named integer variables: numbers or expressions over earlier variables.
    pub vars: ron::Value,
    /// Plugin libraries to load, relative to the (first) graph file.
    pub plugins: Vec<String>,
    /// Reusable parameterised sub-graphs.
    pub blocks: IndexMap<String, BlockDef>,
    /// The networks.
    pub nets: IndexMap<String, NetDef>,
    /// Weight-name maps for other implementations' checkpoints: format → net → map.
    pub weight_maps: IndexMap<String, IndexMap<String, WeightMapDef>>,
    /// The training recipe: stages run in order.
    pub train: Vec<StageDef>,
}

/// A graph file as written: a flow that may extend another file and include libraries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "Flow")]
pub struct FlowFile {
    /// The flow's name; inherited from the file extended when left out.
    #[serde(default, deserialize_with = "recipe::present")]
    pub name: Option<String>,
    /// A graph file this one starts from, relative to this file.
    #[serde(default, deserialize_with = "recipe::present")]
    pub extends: Option<String>,
    /// Library files whose blocks and nets this file uses, relative to this file.
    #[serde(default)]
    pub include: Vec<String>,
    /// Named integer variables: numbers or expressions over earlier variables.
    #[serde(default = "unit")]
    pub vars: ron::Value,
    /// Plugin libraries to load, relative to this file.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Reusable parameterised sub-graphs.
    #[serde(default)]
    pub blocks: IndexMap<String, BlockDef>,
    /// The networks.
    #[serde(default)]
    pub nets: IndexMap<String, NetDef>,
    /// Weight-name maps for other implementations' checkpoints: format → net → map.
    #[serde(default)]
    pub weight_maps: IndexMap<String, IndexMap<String, WeightMapDef>>,
    /// The training recipe, stage by stage (field by field over an extended file's stage).
    #[serde(default)]
    pub train: Vec<StagePatch>,
}

/// A library file (`Library(blocks: {…}, nets: {…})`): templates and nets to `include`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "Library")]
pub struct LibraryFile {
    /// Reusable parameterised sub-graphs.
    #[serde(default)]
    pub blocks: IndexMap<String, BlockDef>,
    /// Networks.
    #[serde(default)]
    pub nets: IndexMap<String, NetDef>,
}

/// A block template: nodes wired to named inputs, parameterised by `params`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
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
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct NodeDef(
    pub String,
    pub String,
    #[serde(default = "unit")] pub ron::Value,
    #[serde(default)] pub Vec<String>,
);

/// How one net's parameter paths map to another implementation's tensor names.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename = "WeightMap")]
pub struct WeightMapDef {
    /// Ordered prefix rewrites such as `("g1.up1.conv.", "upsample1.1.")`; `*` matches
    /// one path segment and is copied to the same place; the first match wins.
    pub prefixes: Vec<(String, String)>,
    /// Embedded nets: their parameters take the embedded net's own map behind this
    /// prefix (`{"g1": "STAGE1_G."}`).
    #[serde(default)]
    pub embedded: IndexMap<String, String>,
    /// Tensors of the file the net does not use (`fc.bias`); `*` matches one segment.
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// A flow ready to compile: its sources, resolved document and span tree.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The text and its name; for a flow of several files, every file joined
    /// ([`SourceFile::joined`]), named after the file given.
    pub src: SourceFile,
    /// The resolved document.
    pub doc: Doc,
    /// Spans of every value of `doc`, into `src`, in whichever file it was written.
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

    /// `file:line` where the value at `path` is written.
    pub fn place(&self, path: &[Key]) -> String {
        self.src.place(self.span(path).offset())
    }

    /// Whether the flow was read from more than one file.
    pub fn is_composed(&self) -> bool {
        self.src.files().len() > 1
    }

    /// The flow as one self-contained graph file: the text as given for a single file,
    /// else the resolved document written out ([`write::flow_text`]). Run directories keep
    /// this text, and graph hashes cover it.
    pub fn resolved_text(&self) -> Result<std::borrow::Cow<'_, str>> {
        Ok(if self.is_composed() {
            std::borrow::Cow::Owned(write::flow_text(&self.doc, &self.src)?)
        } else {
            std::borrow::Cow::Borrowed(&self.src.text)
        })
    }
}

/// Read a graph file and every file it extends or includes.
pub fn load(path: &Path) -> Result<Parsed> {
    compose::resolve(read_file(path)?, path.parent().unwrap_or(Path::new("")))
}

/// Parse graph text; files it extends or includes are found next to `src.name`.
pub fn parse(src: SourceFile) -> Result<Parsed> {
    let dir = Path::new(&src.name).parent().unwrap_or(Path::new("")).to_path_buf();
    compose::resolve(src, &dir)
}

/// The text of a graph or library file, refused when too large or not UTF-8.
pub fn read_file(path: &Path) -> Result<SourceFile> {
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
    match String::from_utf8(bytes) {
        Ok(t) => Ok(SourceFile::new(name, t)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let src = SourceFile::new(name, lossy);
            Err(src
                .error("graph::not_utf8", (at, 1).into(), "graph file is not valid UTF-8 text")
                .with_help("graph files are RON text; is this the right file?"))
        }
    }
}

/// One file's text as `T` (a [`FlowFile`] or [`LibraryFile`]) and its span tree.
pub fn parse_text<T: serde::de::DeserializeOwned>(src: &SourceFile) -> Result<(T, SpanTree)> {
    if src.text.len() > MAX_FILE_BYTES {
        return Err(src.error("graph::too_large", (0, 0).into(), "graph text is too large"));
    }
    if src.text.trim().is_empty() {
        return Err(src
            .error("graph::empty", src.whole(), "graph file is empty")
            .with_help("a graph file starts with `Flow(name: \"…\", nets: { … })`; see docs/graph-format.md"));
    }
    let doc: T = match ron::Options::default().from_str(&src.text) {
        Ok(d) => d,
        Err(e) => return Err(ron_error(src, &e)),
    };
    let spans = SpanTree::scan(&src.text).unwrap_or_default();
    Ok((doc, spans))
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
