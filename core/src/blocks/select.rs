//! `core.compare` and `core.where`: element-wise comparison into a 0/1 mask, and choosing
//! between two values by a mask (masking, hard clipping, piecewise functions).

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Compare, Ops, Tensor};

/// Inputs of one shape; the shape.
fn same_shapes(inputs: &[Shape], n: usize) -> std::result::Result<Shape, String> {
    super::arity(inputs, n)?;
    match inputs.iter().find(|s| **s != inputs[0]) {
        Some(other) => Err(format!("inputs must have one shape, got {} and {other}", inputs[0])),
        None => Ok(inputs[0].clone()),
    }
}

pub(super) struct CompareKind;

impl BlockKind for CompareKind {
    fn name(&self) -> &str {
        "core.compare"
    }
    fn doc(&self) -> &str {
        "1 where `a op b` holds, else 0 (`op`: \"gt\", \"ge\", \"lt\", \"le\", \"eq\", \"ne\"); two inputs of one \
         shape; no gradient flows back through a mask"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let op = match attrs.choice("op", &["gt", "ge", "lt", "le", "eq", "ne"])? {
            "gt" => Compare::Gt,
            "ge" => Compare::Ge,
            "lt" => Compare::Lt,
            "le" => Compare::Le,
            "eq" => Compare::Eq,
            _ => Compare::Ne,
        };
        Ok(Arc::new(CompareBlock(op)))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("(op: \"gt\")", &[&[3, 2], &[3, 2]]), Probe::new("(op: \"le\")", &[&[4], &[4]])]
    }
}

#[derive(Debug)]
struct CompareBlock(Compare);

impl Block for CompareBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let shape = same_shapes(inputs, 2)?;
        let flops = shape.numel() as u64;
        Ok(Inferred { outputs: vec![shape], params: vec![], flops })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.compare(self.0, inputs[0], inputs[1])?])
    }
}

pub(super) struct Where;

impl BlockKind for Where {
    fn name(&self) -> &str {
        "core.where"
    }
    fn doc(&self) -> &str {
        "inputs (mask, a, b) of one shape: a where the mask is not 0, else b; gradients flow to a and b"
    }
    fn configure(&self, _attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(WhereBlock))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[3, 2], &[3, 2], &[3, 2]])]
    }
}

#[derive(Debug)]
struct WhereBlock;

impl Block for WhereBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let shape = same_shapes(inputs, 3)?;
        let flops = shape.numel() as u64;
        Ok(Inferred { outputs: vec![shape], params: vec![], flops })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.select(inputs[0], inputs[1], inputs[2])?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn inputs_share_one_shape() {
        let w = configure("core.where", "()").unwrap();
        let s = Shape::new([2, 3]);
        assert_eq!(w.infer(&[s.clone(), s.clone(), s.clone()]).unwrap().outputs, vec![s.clone()]);
        assert!(w.infer(&[s.clone(), s.clone(), Shape::new([3, 2])]).unwrap_err().contains("one shape"));
        let c = configure("core.compare", "(op: \"ge\")").unwrap();
        assert!(c.infer(std::slice::from_ref(&s)).is_err());
        assert!(configure("core.compare", "(op: \"bigger\")").is_err());
    }
}
