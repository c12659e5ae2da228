//! `stackflow encode`: captions to embeddings with a sentence encoder of the registry
//! (the built-in hashed one, or a BERT-family model from its Hugging Face folder), for a
//! folder dataset (`<split>/captions/<name>.txt`, one caption per line) or a file of
//! captions (one per line), written as float32 `[N, K, D]` `.npy` with a record of the
//! encoder and its weights beside it.

use std::path::PathBuf;

use stackflow_core::encoders::embeddings;
use stackflow_core::kind::EncoderOptions;
use stackflow_core::registry::Registry;
use stackflow_core::{Error, Result};

/// Arguments of `encode`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A dataset root (StackGAN's folder layout) or a text file with one caption per line.
    pub input: PathBuf,
    /// Where to write the embeddings (`.npy`); the record goes beside it
    /// (`<name>.encoder.json`). For a dataset, its `<split>/embeddings.npy` trains on them.
    #[arg(long, short)]
    pub out: PathBuf,
    /// The split of a dataset root.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// The sentence encoder: `hashed` (built in, no weights) or `bert` (a Hugging Face
    /// BERT-family model; `stackflow plugins list` shows all).
    #[arg(long, default_value = "hashed")]
    pub encoder: String,
    /// The encoder's model folder (`bert`: config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Values per embedding for the hashed encoder: the graph's `embed_dim` (the
    /// quickstart's is 64). A model's width is its own.
    #[arg(long)]
    pub dim: Option<usize>,
}

/// Run `encode`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    let kind = kinds.encoder(&a.encoder)?;
    let mut enc = kind.open(&EncoderOptions { weights: a.weights.clone(), dim: a.dim })?;
    let rows = if a.input.is_dir() {
        embeddings::dataset_captions(&a.input, &a.split)?
    } else {
        let text = std::fs::read_to_string(&a.input).map_err(|e| Error::io(&a.input, e))?;
        embeddings::caption_lines(&text).into_iter().map(|l| vec![l]).collect()
    };
    let total = rows.iter().map(Vec::len).sum::<usize>();
    let bar = super::metrics::feature_bar(total, "encoding");
    bar.set_message("captions");
    let written = embeddings::write_embeddings(&a.out, &rows, &mut *enc, &mut |done| bar.set_position(done as u64));
    bar.finish_and_clear();
    let (n, k) = written?;
    println!(
        "wrote {} ([{n}, {k}, {}], encoder {}) and {}",
        a.out.display(),
        enc.dim(),
        kind.name(),
        embeddings::record_path(&a.out).display()
    );
    Ok(())
}
