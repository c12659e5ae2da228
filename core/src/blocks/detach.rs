//! `core.detach`: pass values through without letting gradients flow back.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Detach;

impl BlockKind for Detach {
    fn name(&self) -> &str {
        "core.detach"
    }
    fn doc(&self) -> &str {
        "identity in the forward pass; stops gradients (a frozen embedded net's outputs pass through it)"
    }
    fn configure(&self, _: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(DetachBlock))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[3]])]
    }
}

#[derive(Debug)]
struct DetachBlock;

impl Block for DetachBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        Ok(Inferred { outputs: vec![inputs[0].clone()], ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.detach(inputs[0])?])
    }
}
