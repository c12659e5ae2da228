//! `stackflow.hashed`: the built-in encoder of [`crate::data::text`] (no weights, any
//! width) as a registry kind.

use crate::data::text::TextEncoder;
use crate::error::{Error, Result};
use crate::kind::{EncoderKind, EncoderOptions, Record, SentenceEncoder};

/// The name the built-in hashed encoder is registered and recorded under.
pub const NAME: &str = "stackflow.hashed";

/// The hashed encoder's kind.
pub struct Hashed;

impl EncoderKind for Hashed {
    fn name(&self) -> &str {
        NAME
    }
    fn doc(&self) -> &str {
        "hashed word, bigram and clause-role features, randomly projected to --dim values \
         (no weights; knows no meaning)"
    }
    fn open(&self, opts: &EncoderOptions) -> Result<Box<dyn SentenceEncoder>> {
        if opts.weights.is_some() {
            return Err(Error::input("encode::no_weights", format!("`{NAME}` has no weights; drop --weights")));
        }
        let dim = opts.dim.unwrap_or(64);
        if dim == 0 || dim > 65_536 {
            return Err(Error::input("cli::bad_count", "--dim must be 1 to 65536"));
        }
        Ok(Box::new(TextEncoder::new(dim)))
    }
}

impl SentenceEncoder for TextEncoder {
    fn dim(&self) -> usize {
        TextEncoder::dim(self)
    }
    fn encode(&mut self, captions: &[String], progress: &mut dyn FnMut(usize)) -> Result<Vec<f32>> {
        let out = captions.iter().flat_map(|c| TextEncoder::encode(self, c)).collect();
        progress(captions.len());
        Ok(out)
    }
    fn record(&self) -> Record {
        Record { encoder: NAME.into(), dim: TextEncoder::dim(self), weights: None }
    }
}
