//! `stackflow encode`: captions to embeddings with the built-in text encoder, for a
//! folder dataset (`<split>/captions/<name>.txt`, one caption per line) or a file of
//! captions (one per line), written as float32 `[N, K, D]` `.npy` with a record of the
//! encoder beside it.

use std::path::PathBuf;

use stackflow_core::data::encode;
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
    /// Values per embedding: the graph's `embed_dim` (the quickstart's is 64).
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
}

/// Run `encode`.
pub fn run(a: Args) -> Result<()> {
    if a.dim == 0 || a.dim > 65_536 {
        return Err(Error::input("cli::bad_count", "--dim must be 1 to 65536"));
    }
    let rows = if a.input.is_dir() {
        encode::dataset_captions(&a.input, &a.split)?
    } else {
        let text = std::fs::read_to_string(&a.input).map_err(|e| Error::io(&a.input, e))?;
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| vec![l.to_string()]).collect()
    };
    let (n, k) = encode::write_embeddings(&a.out, &rows, a.dim)?;
    println!(
        "wrote {} ([{n}, {k}, {}], encoder {}) and {}",
        a.out.display(),
        a.dim,
        encode::BUILTIN,
        encode::record_path(&a.out).display()
    );
    Ok(())
}
