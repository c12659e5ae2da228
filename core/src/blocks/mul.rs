//! `core.mul`: element-wise product of equal-shaped inputs (gates, projection heads).

use std::sync::Arc;

use crate::error::Result;
use crate::exec::ops::{Binary, Ops, Tensor};
use crate::ir::{Attrs, Inferred, Shape};
use crate::registry::{Block, BlockKind};

pub(super) struct Mul;

impl BlockKind for Mul {
    fn name(&self) -> &str {
        "core.mul"
    }
    fn doc(&self) -> &str {
        "element-wise product of two or more inputs of the same shape"
    }
    fn configure(&self, _: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(MulBlock))
    }
}

#[derive(Debug)]
struct MulBlock;

impl Block for MulBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        if inputs.len() < 2 {
            return Err(format!("needs at least 2 inputs, got {}", inputs.len()));
        }
        if inputs.iter().any(|s| s != &inputs[0]) {
            let all: Vec<String> = inputs.iter().map(Shape::to_string).collect();
            return Err(format!("inputs must have the same shape, got {}", all.join(" and ")));
        }
        Ok(Inferred { outputs: vec![inputs[0].clone()], ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut acc = inputs[0];
        for &x in &inputs[1..] {
            acc = ops.binary(Binary::Mul, acc, x)?;
        }
        Ok(vec![acc])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::ir::Shape;

    #[test]
    fn shapes_must_agree() {
        let b = configure("core.mul", "()").unwrap();
        assert_eq!(b.infer(&[Shape::new([8]), Shape::new([8])]).unwrap().outputs, vec![Shape::new([8])]);
        assert!(b.infer(&[Shape::new([8]), Shape::new([4])]).is_err());
        assert!(b.infer(&[Shape::new([8])]).is_err());
    }
}
