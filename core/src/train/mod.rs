//! Training: the StackGAN game between a generator and a discriminator net, its
//! built-in losses and samplers, and Adam over named tensors.

pub mod adam;
pub mod augment;
pub mod bench;
pub mod board;
pub mod checkpoint;
pub mod ema;
pub mod game;
pub mod infer;
pub mod loss;
pub mod plot;
pub mod run;
pub mod rundir;
pub mod sampler;

use std::sync::Arc;

use crate::error::Result;
use crate::registry::{Registry, Source};

/// Register the built-in losses and samplers.
pub fn register_builtins(r: &mut Registry) -> Result<()> {
    r.add_loss(Arc::new(loss::MatchingAwareBce), Source::BuiltIn)?;
    r.add_sampler(Arc::new(sampler::Normal), Source::BuiltIn)?;
    r.add_sampler(Arc::new(sampler::BatchShift), Source::BuiltIn)?;
    r.add_sampler(Arc::new(sampler::KeepBackground), Source::BuiltIn)?;
    Ok(())
}
