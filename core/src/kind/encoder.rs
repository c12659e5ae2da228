//! The interface of sentence encoders, the registry family that turns captions into the
//! text embeddings a generator is conditioned on, and the record that says which encoder
//! (and which weights) made a file of embeddings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// An encoder kind: opens a [`SentenceEncoder`] from [`EncoderOptions`].
pub trait EncoderKind: Send + Sync {
    /// Namespaced kind name (`stackflow.bert`).
    fn name(&self) -> &str;
    /// One line for `stackflow plugins list`.
    fn doc(&self) -> &str;
    /// Opens the encoder; errors name what is wrong with the options.
    fn open(&self, opts: &EncoderOptions) -> Result<Box<dyn SentenceEncoder>>;
}

/// What an encoder is opened with.
#[derive(Clone, Debug, Default)]
pub struct EncoderOptions {
    /// A model folder, for encoders with weights.
    pub weights: Option<PathBuf>,
    /// Values per embedding, for encoders whose width is free (the hashed one).
    pub dim: Option<usize>,
}

/// An opened encoder.
pub trait SentenceEncoder {
    /// Values per embedding.
    fn dim(&self) -> usize;
    /// Embeddings of `captions`, `dim` values each, in order; `progress` hears how many
    /// are done.
    fn encode(&mut self, captions: &[String], progress: &mut dyn FnMut(usize)) -> Result<Vec<f32>>;
    /// What identifies this encoder and its weights.
    fn record(&self) -> Record;
}

/// Which encoder made an embeddings file (`<name>.encoder.json` beside it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The encoder kind (`stackflow.hashed`, `stackflow.bert`).
    pub encoder: String,
    /// Values per embedding.
    pub dim: usize,
    /// The weights it was opened with, for encoders that have them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightsRecord>,
}

/// The weights of an encoder: where they were and their content hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsRecord {
    /// The model folder (absolute when it could be resolved).
    pub path: PathBuf,
    /// SHA-256 over the files that determine the embeddings, in hex.
    pub sha256: String,
}
