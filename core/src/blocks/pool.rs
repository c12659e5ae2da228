//! Pooling: `core.max_pool2d` and `core.avg_pool2d` over square windows (PyTorch's
//! `MaxPool2d`, `AvgPool2d`), and `core.global_avg_pool`, the mean of each channel over
//! all positions, [C, H, W] → [C] (PyTorch's `AdaptiveAvgPool2d(1)` then flatten).

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, PoolKind, Tensor};

/// `core.max_pool2d` or `core.avg_pool2d`.
pub(super) struct Pool2d {
    max: bool,
}

impl Pool2d {
    pub(super) const MAX: Self = Self { max: true };
    pub(super) const AVG: Self = Self { max: false };
}

impl BlockKind for Pool2d {
    fn name(&self) -> &str {
        if self.max {
            "core.max_pool2d"
        } else {
            "core.avg_pool2d"
        }
    }
    fn doc(&self) -> &str {
        if self.max {
            "largest value per window [C, H, W] → [C, H', W'] (attrs `kernel`, `stride` = kernel, `padding` = 0)"
        } else {
            "mean per window [C, H, W] → [C, H', W'] (attrs `kernel`, `stride` = kernel, `padding` = 0, \
             `count_padding` = true: PyTorch's count_include_pad)"
        }
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let kernel = attrs.dim("kernel")?;
        let stride = attrs.dim_or("stride", kernel)?;
        let padding = attrs.uint_or("padding", 0)?;
        if 2 * padding > kernel {
            return Err(attrs.error(format!("`padding` {padding} must be at most half the window ({kernel})")));
        }
        let kind = if self.max {
            PoolKind::Max
        } else {
            PoolKind::Avg { count_padding: attrs.bool_or("count_padding", true)? }
        };
        Ok(Arc::new(WindowPool { kind, kernel, stride, padding }))
    }
    fn probes(&self) -> Vec<Probe> {
        if self.max {
            vec![
                Probe::new("(kernel: 3, stride: 2)", &[&[2, 5, 5]]),
                Probe::new("(kernel: 3, stride: 1, padding: 1)", &[&[2, 3, 3]]),
            ]
        } else {
            vec![
                Probe::new("(kernel: 3, stride: 1, padding: 1, count_padding: false)", &[&[2, 3, 3]]),
                Probe::new("(kernel: 2)", &[&[2, 4, 4]]),
            ]
        }
    }
}

#[derive(Debug)]
struct WindowPool {
    kind: PoolKind,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Block for WindowPool {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let d = super::one_of_rank(inputs, 3, "a feature map [C, H, W]")?;
        let out = |n: usize| (n + 2 * self.padding).checked_sub(self.kernel).map(|v| v / self.stride + 1);
        let (Some(ho), Some(wo)) = (out(d[1]), out(d[2])) else {
            return Err(format!(
                "window {k}×{k} with padding {p} does not fit a {}×{} input",
                d[1],
                d[2],
                k = self.kernel,
                p = self.padding
            ));
        };
        let flops = (d[0] * ho * wo * self.kernel * self.kernel) as u64;
        Ok(Inferred { outputs: vec![Shape::new([d[0], ho, wo])], params: Vec::new(), flops })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.pool2d(inputs[0], self.kind, self.kernel, self.stride, self.padding)?])
    }
}

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
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[3, 2, 2]])]
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
    fn window_sizes_match_pytorch() {
        let b = configure("core.max_pool2d", "(kernel: 3, stride: 2)").unwrap();
        assert_eq!(b.infer(&[Shape::new([64, 147, 147])]).unwrap().outputs, vec![Shape::new([64, 73, 73])]);
        let b = configure("core.avg_pool2d", "(kernel: 3, stride: 1, padding: 1, count_padding: false)").unwrap();
        assert_eq!(b.infer(&[Shape::new([8, 35, 35])]).unwrap().outputs, vec![Shape::new([8, 35, 35])]);
        let b = configure("core.avg_pool2d", "(kernel: 2)").unwrap();
        assert_eq!(b.infer(&[Shape::new([8, 5, 5])]).unwrap().outputs, vec![Shape::new([8, 2, 2])]);
        assert!(b.infer(&[Shape::new([8, 1, 1])]).is_err());
        assert!(configure("core.max_pool2d", "(kernel: 3, padding: 2)").is_err());
        assert!(configure("core.max_pool2d", "(stride: 2)").is_err());
    }

    #[test]
    fn pools_to_channels() {
        let b = configure("core.global_avg_pool", "()").unwrap();
        assert_eq!(b.infer(&[Shape::new([16, 4, 4])]).unwrap().outputs, vec![Shape::new([16])]);
        assert!(b.infer(&[Shape::new([16])]).is_err());
    }
}
