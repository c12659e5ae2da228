//! `core.global_avg_pool`: the mean of each channel over all positions, [C, H, W] → [C]
//! (PyTorch's `AdaptiveAvgPool2d(1)` then flatten).

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct GlobalAvgPool;

impl BlockKind for GlobalAvgPool {
    fn name(&self) -> &str {
        "core.global_avg_pool"
    }
    fn doc(&self) -> &str {
        "mean of each channel over all positions [C, H, W] → [C]"
    }
    fn configure(&self, _: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(PoolBlock))
    }
}

#[derive(Debug)]
struct PoolBlock;

impl Block for PoolBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let d = super::one_of_rank(inputs, 3, "a feature map [C, H, W]")?;
        Ok(Inferred { outputs: vec![Shape::new([d[0]])], params: Vec::new(), flops: (d[0] * d[1] * d[2]) as u64 })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        let d = ops.shape(inputs[0])?;
        let (b, c, n) = (d[0], d[1], d[2] * d[3]);
        // [B, C, N] × [B, N, 1] of 1/N: a batched mean over positions with a plain gradient.
        let x = ops.reshape(inputs[0], &[b, c, n])?;
        let avg = ops.constant(&vec![1.0 / n as f32; b * n], &[b, n, 1])?;
        let m = ops.matmul(x, avg)?;
        Ok(vec![ops.reshape(m, &[b, c])?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn pools_to_channels() {
        let b = configure("core.global_avg_pool", "()").unwrap();
        assert_eq!(b.infer(&[Shape::new([16, 4, 4])]).unwrap().outputs, vec![Shape::new([16])]);
        assert!(b.infer(&[Shape::new([16])]).is_err());
    }
}
