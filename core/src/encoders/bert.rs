//! `stackflow.bert`: a BERT-family sentence encoder (e.g. sentence-transformers'
//! all-MiniLM-L6-v2) from a Hugging Face model folder: `config.json` sets the variables of
//! the graph shipped in the binary (`graphs/encoders/bert.ron`), `model.safetensors` is
//! read through its `huggingface` weight map and `tokenizer.json` by the `tokenizers`
//! crate. A caption's embedding is the mean of the last hidden state over its tokens
//! (sentence-transformers' mean pooling).
//!
//! Captions are run in groups of equal token count, so nothing is padded and no
//! attention mask is needed: the graph is built once per count met.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dfdx::prelude::Cpu;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::dsl::{self, Parsed};
use crate::error::{Error, Result, SourceFile};
use crate::exec::forward::{forward_named, Named};
use crate::exec::weights::{self, Naming};
use crate::exec::ParamStore;
use crate::ir::{self, BuildOptions, Flow, Net};
use crate::kind::{EncoderKind, EncoderOptions, Record, SentenceEncoder, WeightsRecord};
use crate::registry::Registry;

/// The name this encoder is registered and recorded under.
pub const NAME: &str = "stackflow.bert";
/// The shipped graph.
pub const GRAPH: &str = include_str!("../../../graphs/encoders/bert.ron");
/// The name diagnostics give the shipped graph.
pub const GRAPH_NAME: &str = "graphs/encoders/bert.ron";
/// The weight map the model's weights are read through.
pub const WEIGHT_MAP: &str = "huggingface";
/// The net of the graph.
const NET: &str = "bert";
/// The files of a model folder this encoder reads, in the order they are hashed.
const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Captions per forward pass.
const BATCH: usize = 32;
/// The LayerNorm epsilon the shipped graph uses (BERT's).
const GRAPH_EPS: f64 = 1e-12;

/// The BERT encoder's kind.
pub struct Bert;

impl EncoderKind for Bert {
    fn name(&self) -> &str {
        NAME
    }
    fn doc(&self) -> &str {
        "a BERT-family model from a Hugging Face folder (--weights DIR: config.json, \
         model.safetensors, tokenizer.json), mean-pooled over each caption's tokens"
    }
    fn open(&self, opts: &EncoderOptions) -> Result<Box<dyn SentenceEncoder>> {
        let Some(dir) = &opts.weights else {
            return Err(Error::input("encode::no_weights", format!("`{NAME}` needs its model folder: --weights DIR"))
                .with_help("a Hugging Face BERT model's folder, e.g. sentence-transformers/all-MiniLM-L6-v2"));
        };
        let enc = BertEncoder::open(dir)?;
        if let Some(dim) = opts.dim.filter(|&d| d != enc.dim()) {
            return Err(Error::input(
                "encode::dim",
                format!("`{}` makes {}-d embeddings, not {dim}", dir.display(), enc.dim()),
            )
            .with_help("a BERT model's width is its hidden_size: drop --dim, and give the graph that embed_dim"));
        }
        Ok(Box::new(enc))
    }
}

/// The part of a Hugging Face `config.json` the graph needs.
#[derive(Clone, Debug, Deserialize)]
struct Config {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "bert_eps")]
    layer_norm_eps: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
}

fn two() -> usize {
    2
}
fn bert_eps() -> f64 {
    GRAPH_EPS
}
fn gelu() -> String {
    "gelu".into()
}

impl Config {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let c: Config = serde_json::from_str(&text)
            .map_err(|e| Error::input("encode::config", format!("`{}` is not a BERT config: {e}", path.display())))?;
        let unsupported = |what: String| {
            Err(Error::input("encode::config", format!("`{}`: {what}", path.display())).with_help(
                "stackflow's BERT graph runs BERT-family models (BERT, MiniLM) with GELU and LayerNorm eps 1e-12",
            ))
        };
        if c.model_type.as_deref().is_some_and(|t| t != "bert") {
            return unsupported(format!("model_type `{}` is not `bert`", c.model_type.unwrap_or_default()));
        }
        if c.hidden_act != "gelu" {
            return unsupported(format!("hidden_act `{}` is not `gelu`", c.hidden_act));
        }
        if (c.layer_norm_eps - GRAPH_EPS).abs() > GRAPH_EPS * 1e-3 {
            return unsupported(format!("layer_norm_eps {} is not {GRAPH_EPS}", c.layer_norm_eps));
        }
        Ok(c)
    }

    /// The graph's variables.
    fn sets(&self) -> Vec<String> {
        [
            ("vocab", self.vocab_size),
            ("hidden", self.hidden_size),
            ("layers", self.num_hidden_layers),
            ("heads", self.num_attention_heads),
            ("intermediate", self.intermediate_size),
            ("max_pos", self.max_position_embeddings),
            ("type_vocab", self.type_vocab_size),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
    }
}

/// An opened BERT encoder.
pub struct BertEncoder {
    config: Config,
    parsed: Arc<Parsed>,
    registry: Registry,
    /// The graph built for each token count met.
    flows: HashMap<usize, Flow>,
    store: ParamStore<Cpu>,
    tokenizer: Tokenizer,
    weights: WeightsRecord,
}

impl BertEncoder {
    /// Opens the model folder `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::input("encode::no_weights", format!("`{}` is not a folder", dir.display()))
                .with_help(format!("a Hugging Face model folder holds {}", FILES.join(", "))));
        }
        let config = Config::read(dir)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| {
            Error::input("encode::tokenizer", format!("`{}` is not a tokenizer: {e}", tok_path.display()))
        })?;
        // One caption at a time: padding would enter the mean.
        tokenizer.with_padding(None);
        let mut registry = Registry::empty();
        crate::blocks::register_builtins(&mut registry)?;
        let parsed = Arc::new(dsl::parse(SourceFile::new(GRAPH_NAME, GRAPH))?);
        let mut enc = Self {
            config,
            parsed,
            registry,
            flows: HashMap::new(),
            store: ParamStore::new(Cpu::default()),
            tokenizer,
            weights: WeightsRecord {
                path: fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
                sha256: hash(dir)?,
            },
        };
        let model = dir.join("model.safetensors");
        let flow = enc.flow(1)?;
        let net = bert_net(flow)?;
        let mut store = ParamStore::new(Cpu::default());
        weights::load(&mut store, flow, net, &model, &Naming::Mapped(WEIGHT_MAP.into()))
            .map_err(|e| e.with_help("the weights are a Hugging Face BertModel's model.safetensors"))?;
        enc.store = store;
        Ok(enc)
    }

    /// The token ids of `caption`, with the tokenizer's special tokens, at most
    /// `max_position_embeddings` (the last one, `[SEP]`, kept).
    pub fn tokens(&self, caption: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(caption, true)
            .map_err(|e| Error::input("encode::tokenizer", format!("cannot tokenize {caption:?}: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        let max = self.config.max_position_embeddings;
        if ids.len() > max {
            let last = ids[ids.len() - 1];
            ids.truncate(max);
            ids[max - 1] = last;
        }
        if ids.is_empty() {
            return Err(Error::input("encode::tokenizer", format!("{caption:?} has no tokens")));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.config.vocab_size) {
            return Err(Error::input(
                "encode::tokenizer",
                format!("the tokenizer gives id {bad}; the model's vocab_size is {}", self.config.vocab_size),
            )
            .with_help("tokenizer.json and config.json come from different models"));
        }
        Ok(ids)
    }

    /// The graph for captions of `seq` tokens.
    fn flow(&mut self, seq: usize) -> Result<&Flow> {
        if !self.flows.contains_key(&seq) {
            let mut overrides = self.config.sets();
            overrides.push(format!("seq={seq}"));
            let flow = ir::build(self.parsed.clone(), &self.registry, &BuildOptions { overrides })?;
            self.flows.insert(seq, flow);
        }
        Ok(&self.flows[&seq])
    }

    /// Mean-pooled last hidden states of captions that all have `seq` tokens.
    fn run(&mut self, seq: usize, ids: &[Vec<u32>]) -> Result<Vec<f32>> {
        let b = ids.len();
        let mut inputs = Named::new();
        let floats = |f: &dyn Fn(usize, usize) -> f32| (0..b).flat_map(|i| (0..seq).map(move |t| f(i, t))).collect();
        inputs.insert("input_ids".into(), (vec![b, seq], floats(&|i, t| ids[i][t] as f32)));
        inputs.insert("position_ids".into(), (vec![b, seq], floats(&|_, t| t as f32)));
        inputs.insert("token_type_ids".into(), (vec![b, seq], vec![0.0; b * seq]));
        self.flow(seq)?;
        let flow = &self.flows[&seq];
        let net = bert_net(flow)?;
        let naming = Naming::Mapped(WEIGHT_MAP.into());
        let (out, _) = forward_named(flow, net, &mut self.store, &inputs, false, &naming, 0)?;
        let (shape, hidden) = &out["hidden"];
        let h = shape[2];
        let mut pooled = vec![0.0f32; b * h];
        for (i, row) in pooled.chunks_mut(h).enumerate() {
            for t in 0..seq {
                let token = &hidden[(i * seq + t) * h..(i * seq + t + 1) * h];
                row.iter_mut().zip(token).for_each(|(p, x)| *p += x);
            }
            row.iter_mut().for_each(|p| *p /= seq as f32);
        }
        Ok(pooled)
    }
}

impl SentenceEncoder for BertEncoder {
    fn dim(&self) -> usize {
        self.config.hidden_size
    }

    fn encode(&mut self, captions: &[String], progress: &mut dyn FnMut(usize)) -> Result<Vec<f32>> {
        let ids: Vec<Vec<u32>> = captions.iter().map(|c| self.tokens(c)).collect::<Result<_>>()?;
        let mut by_len: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, t) in ids.iter().enumerate() {
            by_len.entry(t.len()).or_default().push(i);
        }
        let mut lens: Vec<usize> = by_len.keys().copied().collect();
        lens.sort_unstable();
        let h = self.dim();
        let (mut out, mut done) = (vec![0.0f32; captions.len() * h], 0);
        for len in lens {
            for chunk in by_len[&len].chunks(BATCH) {
                let group: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
                let pooled = self.run(len, &group)?;
                for (&i, row) in chunk.iter().zip(pooled.chunks(h)) {
                    out[i * h..(i + 1) * h].copy_from_slice(row);
                }
                done += chunk.len();
                progress(done);
            }
        }
        Ok(out)
    }

    fn record(&self) -> Record {
        Record { encoder: NAME.into(), dim: self.dim(), weights: Some(self.weights.clone()) }
    }
}

/// The net of a built BERT graph.
fn bert_net(flow: &Flow) -> Result<&Net> {
    flow.net(NET).ok_or_else(|| Error::other("encode::graph", "the BERT graph has no net `bert`"))
}

/// SHA-256 over the model folder's files that determine the embeddings.
fn hash(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    for name in FILES {
        let path: PathBuf = dir.join(name);
        let bytes = fs::read(&path).map_err(|e| {
            Error::io(&path, e).with_help(format!("a Hugging Face model folder holds {}", FILES.join(", ")))
        })?;
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bert")
    }

    #[test]
    fn matches_the_transformers_reference() {
        let dir = fixture();
        let mut enc = BertEncoder::open(&dir).unwrap();
        let captions =
            crate::encoders::embeddings::caption_lines(&fs::read_to_string(dir.join("captions.txt")).unwrap());
        let want_ids: Vec<Vec<u32>> =
            serde_json::from_str(&fs::read_to_string(dir.join("reference_ids.json")).unwrap()).unwrap();
        for (c, want) in captions.iter().zip(&want_ids) {
            assert_eq!(&enc.tokens(c).unwrap(), want, "{c}");
        }
        let got = enc.encode(&captions, &mut |_| {}).unwrap();
        let reference = weights::read_all(&dir.join("reference.safetensors")).unwrap();
        let (shape, want) = &reference["embeddings"];
        assert_eq!(shape, &vec![captions.len(), enc.dim()]);
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "largest difference {worst}");
        // Different captions differ, the same caption is the same wherever it stands.
        assert!(got[..32].iter().zip(&got[32..64]).any(|(a, b)| (a - b).abs() > 1e-2));
        let again = enc.encode(&[captions[2].clone()], &mut |_| {}).unwrap();
        assert_eq!(&again[..], &got[64..96]);
    }

    #[test]
    fn a_folder_without_a_model_says_what_it_needs() {
        let e = BertEncoder::open(Path::new("/nonexistent-model")).err().unwrap();
        assert_eq!(e.code_str(), "encode::no_weights");
        let dir = std::env::temp_dir().join(format!("stackflow-bert-cfg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
        assert_eq!(BertEncoder::open(&dir).err().unwrap().code_str(), "encode::config");
        fs::remove_dir_all(&dir).unwrap();
    }
}
