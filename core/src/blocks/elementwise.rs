//! Element-wise sums and products of equal-shaped inputs: `core.add` (residual
//! connections) and `core.mul` (gates, projection heads).

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Binary, Ops, Tensor};

struct ElementwiseKind {
    name: &'static str,
    doc: &'static str,
    op: Binary,
}

pub(super) fn kinds() -> Vec<Arc<dyn BlockKind>> {
    vec![
        Arc::new(ElementwiseKind {
            name: "core.add",
            doc: "element-wise sum of two or more inputs of the same shape",
            op: Binary::Add,
        }),
        Arc::new(ElementwiseKind {
            name: "core.mul",
            doc: "element-wise product of two or more inputs of the same shape",
            op: Binary::Mul,
        }),
    ]
}

impl BlockKind for ElementwiseKind {
    fn name(&self) -> &str {
        self.name
    }
    fn doc(&self) -> &str {
        self.doc
    }
    fn configure(&self, _: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(Elementwise { op: self.op }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[3, 2], &[3, 2]])]
    }
}

#[derive(Debug)]
struct Elementwise {
    op: Binary,
}

impl Block for Elementwise {
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
            acc = ops.binary(self.op, acc, x)?;
        }
        Ok(vec![acc])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn shapes_must_agree() {
        for kind in ["core.add", "core.mul"] {
            let b = configure(kind, "()").unwrap();
            assert_eq!(
                b.infer(&[Shape::new([4, 2, 2]), Shape::new([4, 2, 2])]).unwrap().outputs,
                vec![Shape::new([4, 2, 2])]
            );
            assert!(b.infer(&[Shape::new([4, 2, 2]), Shape::new([4, 2, 1])]).is_err());
            assert!(b.infer(&[Shape::new([4])]).is_err());
        }
    }
}
