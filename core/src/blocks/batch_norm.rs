//! `core.batch_norm`: BatchNorm over vectors (1d) or feature maps (2d), PyTorch semantics.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Init, ParamSpec, Probe, Shape};
use crate::ops::{BnStats, Ops, Tensor};

pub(super) struct BatchNorm;

impl BlockKind for BatchNorm {
    fn name(&self) -> &str {
        "core.batch_norm"
    }
    fn doc(&self) -> &str {
        "batch normalisation of [F] or [C, H, W] (attrs `eps` = 1e-5, `momentum` = 0.1); γ ~ N(1, 0.02), β = 0"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let eps = attrs.float_or("eps", 1e-5)?;
        let momentum = attrs.float_or("momentum", 0.1)?;
        if eps <= 0.0 || !(0.0..=1.0).contains(&momentum) {
            return Err(attrs.error("`eps` must be > 0 and `momentum` within [0, 1]"));
        }
        Ok(Arc::new(BatchNormBlock { eps: eps as f32, momentum: momentum as f32 }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[3, 2, 2]]), Probe::new("()", &[&[5]])]
    }
}

#[derive(Debug)]
struct BatchNormBlock {
    eps: f32,
    momentum: f32,
}

impl Block for BatchNormBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        let s = &inputs[0];
        if s.rank() != 1 && s.rank() != 3 {
            return Err(format!("expects [F] or [C, H, W], got {s}"));
        }
        let c = s.0[0];
        Ok(Inferred {
            outputs: vec![s.clone()],
            params: vec![
                ParamSpec::trainable("weight", [c], Init::Normal { mean: 1.0, std: 0.02 }),
                ParamSpec::trainable("bias", [c], Init::Zeros),
                ParamSpec::buffer("running_mean", [c], Init::Zeros),
                ParamSpec::buffer("running_var", [c], Init::Ones),
                ParamSpec::buffer("num_batches_tracked", [1], Init::Zeros),
            ],
            flops: 0,
        })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], p: &[Tensor]) -> Result<Vec<Tensor>> {
        let stats = BnStats { mean: p[2], var: p[3], count: p[4] };
        Ok(vec![ops.batch_norm(inputs[0], p[0], p[1], stats, self.momentum, self.eps)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn one_and_two_d() {
        let b = configure("core.batch_norm", "()").unwrap();
        assert_eq!(b.infer(&[Shape::new([16])]).unwrap().params[0].shape, vec![16]);
        assert_eq!(b.infer(&[Shape::new([4, 8, 8])]).unwrap().params.len(), 5);
        assert!(b.infer(&[Shape::new([4, 8])]).is_err());
        assert!(configure("core.batch_norm", "(momentum: 2.0)").is_err());
    }
}
