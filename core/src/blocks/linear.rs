//! `core.linear`: y = x·Wᵀ + b on vectors, or on each row of a sequence [T, in].

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Init, ParamSpec, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Linear;

impl BlockKind for Linear {
    fn name(&self) -> &str {
        "core.linear"
    }
    fn doc(&self) -> &str {
        "fully connected layer [in] → [out], or [T, in] → [T, out] row by row (attrs `out`, `bias` = true, `init` = \"normal\" (W ~ N(0, 0.02)), \
         \"zeros\" or \"ones\" (W = 1: a plain sum, e.g. the inner product of a projection head)); b = 0"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let init = match attrs.choice("init", &["normal", "zeros", "ones"])? {
            "zeros" => Init::Zeros,
            "ones" => Init::Ones,
            _ => Init::Normal { mean: 0.0, std: 0.02 },
        };
        Ok(Arc::new(LinearBlock { out: attrs.dim("out")?, bias: attrs.bool_or("bias", true)?, init }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![
            Probe::new("(out: 3)", &[&[4]]),
            Probe::new("(out: 2, bias: false)", &[&[3]]),
            Probe::new("(out: 2)", &[&[3, 4]]),
        ]
    }
}

#[derive(Debug)]
struct LinearBlock {
    out: usize,
    bias: bool,
    init: Init,
}

impl Block for LinearBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        let (n, rows) = match *inputs[0].dims() {
            [n] => (n, 1),
            [t, n] => (n, t),
            _ => return Err(format!("expects a vector [in] or a sequence [T, in], got {}", inputs[0])),
        };
        let mut params = vec![ParamSpec::trainable("weight", [self.out, n], self.init)];
        if self.bias {
            params.push(ParamSpec::trainable("bias", [self.out], Init::Zeros));
        }
        let mut out = inputs[0].clone();
        if let Some(last) = out.0.last_mut() {
            *last = self.out;
        }
        Ok(Inferred { outputs: vec![out], params, flops: 2 * (rows * n * self.out) as u64 })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let (w, b) = (params[0], params.get(1).copied());
        match ops.shape(inputs[0])?[..] {
            [bsz, t, n] => {
                let x = ops.reshape(inputs[0], &[bsz * t, n])?;
                let y = ops.linear(x, w, b)?;
                Ok(vec![ops.reshape(y, &[bsz, t, self.out])?])
            }
            _ => Ok(vec![ops.linear(inputs[0], w, b)?]),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn infers_out_and_params() {
        let b = configure("core.linear", "(out: \"w * 2\", bias: false)").unwrap();
        let i = b.infer(&[Shape::new([5])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([8])]);
        assert_eq!(i.params.len(), 1);
        assert_eq!(i.params[0].shape, vec![8, 5]);
        assert_eq!(i.flops, 80);
        let seq = b.infer(&[Shape::new([3, 5])]).unwrap();
        assert_eq!((seq.outputs[0].dims(), seq.flops), (&[3, 8][..], 240));
        assert!(b.infer(&[Shape::new([2, 5, 2])]).is_err());
        assert!(configure("core.linear", "()").is_err());
        assert!(configure("core.linear", "(out: 0)").is_err());
        let ones = configure("core.linear", "(out: 1, init: \"ones\")").unwrap();
        assert_eq!(ones.infer(&[Shape::new([3])]).unwrap().params[0].init, crate::kind::Init::Ones);
        assert!(configure("core.linear", "(out: 1, init: \"one\")").is_err());
    }
}
