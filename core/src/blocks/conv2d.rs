//! `core.conv2d`: 2-d convolution with zero padding, PyTorch semantics.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Init, ParamSpec, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Conv2d;

impl BlockKind for Conv2d {
    fn name(&self) -> &str {
        "core.conv2d"
    }
    fn doc(&self) -> &str {
        "2-d convolution [C, H, W] → [out, H', W'] (attrs `out`, `kernel` (a size or [rows, columns]), `stride` = 1, \
         `padding` = 0 (a size or [rows, columns]), `bias` = true, \
         `init` = \"normal\" (N(0, 0.02²)) or \"zeros\" (a residual branch that starts as the identity))"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(Conv2dBlock {
            out: attrs.dim("out")?,
            kernel: match attrs.pair_or("kernel", (0, 0), 1)? {
                (0, 0) => return Err(attrs.error("`core.conv2d` needs attribute `kernel`")),
                k => k,
            },
            stride: attrs.dim_or("stride", 1)?,
            padding: attrs.pair_or("padding", (0, 0), 0)?,
            bias: attrs.bool_or("bias", true)?,
            zero_init: attrs.choice("init", &["normal", "zeros"])? == "zeros",
        }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![
            Probe::new("(out: 3, kernel: 3, padding: 1, bias: false)", &[&[2, 4, 4]]),
            Probe::new("(out: 2, kernel: 4, stride: 2, padding: 1)", &[&[3, 6, 6]]),
            Probe::new("(out: 1, kernel: 4, stride: 4)", &[&[2, 4, 4]]),
            Probe::new("(out: 2, kernel: [1, 3], padding: [0, 1])", &[&[2, 3, 4]]),
        ]
    }
}

#[derive(Debug)]
struct Conv2dBlock {
    out: usize,
    kernel: (usize, usize),
    stride: usize,
    padding: (usize, usize),
    bias: bool,
    zero_init: bool,
}

impl Conv2dBlock {
    /// Output size along an axis of `n` with this kernel size and padding.
    fn out_size(&self, n: usize, kernel: usize, padding: usize) -> Option<usize> {
        (n + 2 * padding).checked_sub(kernel).map(|v| v / self.stride + 1)
    }
}

impl Block for Conv2dBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let d = super::one_of_rank(inputs, 3, "an image [C, H, W]")?;
        let (c, h, w) = (d[0], d[1], d[2]);
        let ((kh, kw), (ph, pw)) = (self.kernel, self.padding);
        let (Some(ho), Some(wo)) = (self.out_size(h, kh, ph), self.out_size(w, kw, pw)) else {
            return Err(format!("kernel {kh}×{kw} with padding {ph}×{pw} does not fit a {h}×{w} input"));
        };
        let fan_in = c * kh * kw;
        let mut params = vec![ParamSpec::trainable(
            "weight",
            [self.out, c, kh, kw],
            if self.zero_init { Init::Zeros } else { Init::Normal { mean: 0.0, std: 0.02 } },
        )];
        if self.bias {
            params.push(ParamSpec::trainable(
                "bias",
                [self.out],
                Init::Uniform { bound: 1.0 / (fan_in as f32).sqrt() },
            ));
        }
        let flops = 2u64.saturating_mul((self.out * ho * wo) as u64).saturating_mul(fan_in as u64);
        Ok(Inferred { outputs: vec![Shape::new([self.out, ho, wo])], params, flops })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.conv2d(inputs[0], params[0], params.get(1).copied(), self.stride, self.padding)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn output_sizes_match_pytorch() {
        let b = configure("core.conv2d", "(out: 8, kernel: 4, stride: 2, padding: 1, bias: false)").unwrap();
        let i = b.infer(&[Shape::new([3, 64, 64])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([8, 32, 32])]);
        assert_eq!(i.params[0].shape, vec![8, 3, 4, 4]);
        let b = configure("core.conv2d", "(out: 1, kernel: 4, stride: 4)").unwrap();
        let i = b.infer(&[Shape::new([512, 4, 4])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([1, 1, 1])]);
        assert_eq!(i.params.len(), 2);
        assert!(b.infer(&[Shape::new([512, 2, 2])]).is_err());
        assert!(b.infer(&[Shape::new([512])]).is_err());
        let b = configure("core.conv2d", "(out: 3, kernel: 3, padding: 1, init: \"zeros\")").unwrap();
        assert_eq!(b.infer(&[Shape::new([4, 8, 8])]).unwrap().params[0].init, crate::kind::Init::Zeros);
        assert!(configure("core.conv2d", "(out: 3, kernel: 3, init: \"ones\")").is_err());
        // Inception's 1×7 kernel with padding only along the columns.
        let b = configure("core.conv2d", "(out: 4, kernel: [1, 7], padding: [0, 3], bias: false)").unwrap();
        let i = b.infer(&[Shape::new([2, 17, 17])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([4, 17, 17])]);
        assert_eq!(i.params[0].shape, vec![4, 2, 1, 7]);
        assert!(configure("core.conv2d", "(out: 4, kernel: [1, 7, 3])").is_err());
        assert!(configure("core.conv2d", "(out: 4, kernel: [0, 7])").is_err());
        assert!(configure("core.conv2d", "(out: 4)").is_err());
    }
}
