//! `core.reduce`: sum, mean or maximum along one per-sample axis, kept with length 1 so
//! the result broadcasts back against its input's shape (`core.replicate`, `core.mul`).

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, Reduce, Tensor};

pub(super) struct ReduceKind;

impl BlockKind for ReduceKind {
    fn name(&self) -> &str {
        "core.reduce"
    }
    fn doc(&self) -> &str {
        "`op` (\"sum\", \"mean\" or \"max\") along per-sample `axis` (default 0), which is kept with length 1; \
         max passes its gradient to every position that holds the maximum"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let op = match attrs.choice("op", &["sum", "mean", "max"])? {
            "sum" => Reduce::Sum,
            "mean" => Reduce::Mean,
            _ => Reduce::Max,
        };
        Ok(Arc::new(ReduceBlock { op, axis: attrs.uint_or("axis", 0)? }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![
            Probe::new("(op: \"sum\", axis: 1)", &[&[2, 3, 2]]),
            Probe::new("(op: \"mean\")", &[&[3, 2]]),
            Probe::new("(op: \"max\", axis: 2)", &[&[2, 2, 3]]),
            Probe::new("(op: \"max\")", &[&[4]]),
        ]
    }
}

#[derive(Debug)]
struct ReduceBlock {
    op: Reduce,
    axis: usize,
}

impl Block for ReduceBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        let mut dims = inputs[0].dims().to_vec();
        if self.axis >= dims.len() {
            return Err(format!("axis {} is not an axis of {}", self.axis, inputs[0]));
        }
        dims[self.axis] = 1;
        Ok(Inferred { outputs: vec![Shape::new(dims)], params: vec![], flops: inputs[0].numel() as u64 })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        // Per-sample axis k is axis k + 1 of the batch.
        Ok(vec![ops.reduce_axis(inputs[0], self.op, self.axis + 1)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn keeps_the_reduced_axis() {
        let b = configure("core.reduce", "(op: \"max\", axis: 1)").unwrap();
        assert_eq!(b.infer(&[Shape::new([3, 4, 5])]).unwrap().outputs, vec![Shape::new([3, 1, 5])]);
        assert!(b.infer(&[Shape::new([3])]).unwrap_err().contains("axis 1"));
        assert!(configure("core.reduce", "(op: \"min\")").is_err());
    }
}
