//! `core.replicate`: tile a vector over a spatial grid, [C] → [C, H, W].

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Replicate;

impl BlockKind for Replicate {
    fn name(&self) -> &str {
        "core.replicate"
    }
    fn doc(&self) -> &str {
        "tile a vector [C] to [C, size, size] (attr `size`; or `height` and `width`)"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let size = attrs.uint_or("size", 0)?;
        let h = attrs.uint_or("height", size)?;
        let w = attrs.uint_or("width", size)?;
        if h == 0 || w == 0 {
            return Err(attrs.error("`core.replicate` needs a positive `size` (or `height` and `width`)"));
        }
        Ok(Arc::new(ReplicateBlock { h, w }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("(size: 3)", &[&[4]])]
    }
}

#[derive(Debug)]
struct ReplicateBlock {
    h: usize,
    w: usize,
}

impl Block for ReplicateBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let d = super::one_of_rank(inputs, 1, "a vector [C]")?;
        Ok(Inferred { outputs: vec![Shape::new([d[0], self.h, self.w])], ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.replicate(inputs[0], self.h, self.w)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn tiles_vectors() {
        let b = configure("core.replicate", "(size: 4)").unwrap();
        assert_eq!(b.infer(&[Shape::new([128])]).unwrap().outputs, vec![Shape::new([128, 4, 4])]);
        assert!(b.infer(&[Shape::new([128, 1])]).is_err());
        assert!(configure("core.replicate", "()").is_err());
        assert!(configure("core.replicate", "(size: 0)").is_err());
    }
}
