//! The built-in sentence encoders (the registry family of [`crate::kind::EncoderKind`]):
//! the hashed encoder that needs no weights ([`hashed`]) and a BERT-family encoder run
//! from a Hugging Face model folder as a stackflow graph ([`bert`]).

pub mod bert;
pub mod embeddings;
pub mod hashed;

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kind::{EncoderOptions, Record, SentenceEncoder};
use crate::registry::{Registry, Source};

/// Registers the built-in encoders.
pub fn register_builtins(r: &mut Registry) -> Result<()> {
    r.add_encoder(Arc::new(hashed::Hashed), Source::BuiltIn)?;
    r.add_encoder(Arc::new(bert::Bert), Source::BuiltIn)?;
    Ok(())
}

/// Opens the encoder `record` names, as it was: the same kind and width, and for an
/// encoder with weights the same weights (by hash), read from `weights` when given (the
/// model folder moved) or from the recorded folder.
pub fn reopen(registry: &Registry, record: &Record, weights: Option<&Path>) -> Result<Box<dyn SentenceEncoder>> {
    let kind = registry.encoder(&record.encoder)?;
    let folder = weights.map(Path::to_path_buf).or_else(|| record.weights.as_ref().map(|w| w.path.clone()));
    let enc = kind.open(&EncoderOptions { weights: folder, dim: Some(record.dim) }).map_err(|e| {
        e.with_help(format!(
            "the embeddings were made by `{}`{}; give its model folder with --encoder-weights DIR",
            record.encoder,
            record.weights.as_ref().map(|w| format!(" with the weights in `{}`", w.path.display())).unwrap_or_default()
        ))
    })?;
    let now = enc.record();
    if let (Some(want), Some(have)) = (&record.weights, &now.weights) {
        if want.sha256 != have.sha256 {
            return Err(Error::input(
                "encode::weights_changed",
                format!(
                    "the weights in `{}` are not those the embeddings were made with (sha256 {} , recorded {})",
                    have.path.display(),
                    short(&have.sha256),
                    short(&want.sha256)
                ),
            )
            .with_help("give the model folder the run's embeddings came from with --encoder-weights DIR"));
        }
    }
    if now.dim != record.dim {
        return Err(Error::input(
            "encode::weights_changed",
            format!("`{}` now gives {}-d embeddings; the record says {}", record.encoder, now.dim, record.dim),
        ));
    }
    Ok(enc)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
