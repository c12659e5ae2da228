//! `core.glu`: gated linear unit along the first per-sample axis: a · σ(b).

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Binary, Ops, Tensor, Unary};

pub(super) struct Glu;

impl BlockKind for Glu {
    fn name(&self) -> &str {
        "core.glu"
    }
    fn doc(&self) -> &str {
        "gated linear unit: split the first axis into halves a, b → a·σ(b) (StackGAN-v2 CA)"
    }
    fn configure(&self, _: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(GluBlock))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[4, 3]])]
    }
}

#[derive(Debug)]
struct GluBlock;

impl Block for GluBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        let mut d = inputs[0].0.clone();
        if !d[0].is_multiple_of(2) {
            return Err(format!("needs an even first axis, got {}", inputs[0]));
        }
        d[0] /= 2;
        Ok(Inferred { outputs: vec![Shape(d)], ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        let half = ops.shape(inputs[0])?[1] / 2;
        let a = ops.slice(inputs[0], 1, 0, half)?;
        let b = ops.slice(inputs[0], 1, half, 2 * half)?;
        let g = ops.unary(Unary::Sigmoid, b)?;
        Ok(vec![ops.binary(Binary::Mul, a, g)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn halves_first_axis() {
        let b = configure("core.glu", "()").unwrap();
        assert_eq!(b.infer(&[Shape::new([8, 2])]).unwrap().outputs, vec![Shape::new([4, 2])]);
        assert!(b.infer(&[Shape::new([7])]).is_err());
    }
}
