//! `core.reshape` and `core.flatten`: same elements, new per-sample shape.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Reshape;
pub(super) struct Flatten;

impl BlockKind for Reshape {
    fn name(&self) -> &str {
        "core.reshape"
    }
    fn doc(&self) -> &str {
        "reshape to attr `shape` (per sample, e.g. [\"gf_dim * 8\", 4, 4]); element count must match"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        match attrs.dims("shape")? {
            Some(s) if !s.is_empty() => Ok(Arc::new(ReshapeBlock { to: Some(Shape(s)) })),
            _ => Err(attrs.error("`core.reshape` needs `shape`, a non-empty list of sizes")),
        }
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("(shape: [2, 2, 3])", &[&[12]])]
    }
}

impl BlockKind for Flatten {
    fn name(&self) -> &str {
        "core.flatten"
    }
    fn doc(&self) -> &str {
        "flatten every per-sample axis into one vector"
    }
    fn configure(&self, _: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(ReshapeBlock { to: None }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[2, 2, 3]])]
    }
}

#[derive(Debug)]
struct ReshapeBlock {
    /// Target shape; `None` flattens.
    to: Option<Shape>,
}

impl Block for ReshapeBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        let n = inputs[0].numel();
        let to = self.to.clone().unwrap_or_else(|| Shape::new([n]));
        if !to.is_sane() || to.numel() != n {
            return Err(format!("cannot reshape {} ({n} elements) to {to}", inputs[0]));
        }
        Ok(Inferred { outputs: vec![to], ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut shape = ops.shape(inputs[0])?;
        let batch = shape[0];
        let n: usize = shape[1..].iter().product();
        shape = vec![batch];
        match &self.to {
            Some(s) => shape.extend_from_slice(s.dims()),
            None => shape.push(n),
        }
        Ok(vec![ops.reshape(inputs[0], &shape)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn element_count_must_match() {
        let b = configure("core.reshape", "(shape: [\"w * 2\", 4, 4])").unwrap();
        assert_eq!(b.infer(&[Shape::new([128])]).unwrap().outputs, vec![Shape::new([8, 4, 4])]);
        assert!(b.infer(&[Shape::new([127])]).is_err());
        let f = configure("core.flatten", "()").unwrap();
        assert_eq!(f.infer(&[Shape::new([2, 3, 4])]).unwrap().outputs, vec![Shape::new([24])]);
        assert!(configure("core.reshape", "(shape: [])").is_err());
    }
}
