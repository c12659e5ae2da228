//! `core.upsample_nearest`: nearest-neighbour upsampling of feature maps.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct UpsampleNearest;

impl BlockKind for UpsampleNearest {
    fn name(&self) -> &str {
        "core.upsample_nearest"
    }
    fn doc(&self) -> &str {
        "nearest-neighbour upsampling [C, H, W] → [C, s·H, s·W] (attr `scale` = 2)"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(Upsample { scale: attrs.dim_or("scale", 2)? }))
    }
}

#[derive(Debug)]
struct Upsample {
    scale: usize,
}

impl Block for Upsample {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let d = super::one_of_rank(inputs, 3, "an image [C, H, W]")?;
        Ok(Inferred { outputs: vec![Shape::new([d[0], d[1] * self.scale, d[2] * self.scale])], ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.upsample_nearest(inputs[0], self.scale)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn scales_spatial_dims() {
        let b = configure("core.upsample_nearest", "(scale: 2)").unwrap();
        assert_eq!(b.infer(&[Shape::new([3, 4, 5])]).unwrap().outputs, vec![Shape::new([3, 8, 10])]);
        assert!(b.infer(&[Shape::new([3])]).is_err());
    }
}
