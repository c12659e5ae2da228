//! Resizing feature maps: `core.upsample_nearest` by an integer factor, and
//! `core.resize_bilinear` to a given size (PyTorch's bilinear `interpolate`,
//! `align_corners=False`).

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
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
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("(scale: 2)", &[&[2, 2, 3]])]
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

/// `core.resize_bilinear`.
pub(super) struct ResizeBilinear;

impl BlockKind for ResizeBilinear {
    fn name(&self) -> &str {
        "core.resize_bilinear"
    }
    fn doc(&self) -> &str {
        "bilinear resizing [C, H, W] → [C, size] (attr `size`: one size or [rows, columns]; PyTorch's \
         interpolate with align_corners=False)"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        match attrs.pair_or("size", (0, 0), 1)? {
            (0, 0) => Err(attrs.error("`core.resize_bilinear` needs attribute `size`")),
            size => Ok(Arc::new(Resize { size })),
        }
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("(size: [5, 3])", &[&[2, 3, 4]])]
    }
}

#[derive(Debug)]
struct Resize {
    size: (usize, usize),
}

impl Block for Resize {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let d = super::one_of_rank(inputs, 3, "an image [C, H, W]")?;
        let (ho, wo) = self.size;
        let flops = 2 * (d[0] * (d[1] * d[2] * wo + d[1] * wo * ho)) as u64;
        Ok(Inferred { outputs: vec![Shape::new([d[0], ho, wo])], params: Vec::new(), flops })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.resize_bilinear(inputs[0], self.size)?])
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

    #[test]
    fn resizes_to_the_given_size() {
        let b = configure("core.resize_bilinear", "(size: 299)").unwrap();
        assert_eq!(b.infer(&[Shape::new([3, 64, 64])]).unwrap().outputs, vec![Shape::new([3, 299, 299])]);
        let b = configure("core.resize_bilinear", "(size: [5, 7])").unwrap();
        assert_eq!(b.infer(&[Shape::new([3, 64, 64])]).unwrap().outputs, vec![Shape::new([3, 5, 7])]);
        assert!(configure("core.resize_bilinear", "()").is_err());
        assert!(configure("core.resize_bilinear", "(size: 0)").is_err());
    }
}
