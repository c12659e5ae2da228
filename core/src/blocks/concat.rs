//! `core.concat`: join values along a per-sample axis (image code first, then condition).

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Concat;

impl BlockKind for Concat {
    fn name(&self) -> &str {
        "core.concat"
    }
    fn doc(&self) -> &str {
        "concatenate two or more inputs along per-sample axis `axis` (default 0: features/channels), in input order"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(ConcatBlock { axis: attrs.uint_or("axis", 0)? }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[2, 2, 2], &[3, 2, 2]]), Probe::new("()", &[&[3], &[2]])]
    }
}

#[derive(Debug)]
struct ConcatBlock {
    axis: usize,
}

impl Block for ConcatBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        if inputs.len() < 2 {
            return Err(format!("needs at least 2 inputs, got {}", inputs.len()));
        }
        let first = &inputs[0];
        if self.axis >= first.rank() {
            return Err(format!("axis {} is out of range for {first}", self.axis));
        }
        let mut out = first.0.clone();
        out[self.axis] = 0;
        for s in inputs {
            let same_rest = s.rank() == first.rank()
                && s.0.iter().zip(&first.0).enumerate().all(|(i, (a, b))| i == self.axis || a == b);
            if !same_rest {
                let all: Vec<String> = inputs.iter().map(Shape::to_string).collect();
                return Err(format!("inputs {} differ outside axis {}", all.join(" and "), self.axis));
            }
            out[self.axis] += s.0[self.axis];
        }
        Ok(Inferred { outputs: vec![Shape(out)], ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.concat(inputs, self.axis + 1)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn sums_the_axis_and_checks_the_rest() {
        let b = configure("core.concat", "()").unwrap();
        let i = b.infer(&[Shape::new([512, 4, 4]), Shape::new([128, 4, 4])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([640, 4, 4])]);
        assert!(b.infer(&[Shape::new([512, 4, 4]), Shape::new([128, 8, 8])]).is_err());
        assert!(b.infer(&[Shape::new([512])]).is_err());
        let b = configure("core.concat", "(axis: 3)").unwrap();
        assert!(b.infer(&[Shape::new([1, 2, 3]), Shape::new([1, 2, 3])]).is_err());
    }
}
