//! `core.layer_norm`: normalisation over the last axis with a learned scale and shift
//! (Ba et al., 2016), as transformers use it.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Init, ParamSpec, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct LayerNorm;

impl BlockKind for LayerNorm {
    fn name(&self) -> &str {
        "core.layer_norm"
    }
    fn doc(&self) -> &str {
        "(x − mean) / √(var + eps) · weight + bias over the last axis of [D] or [T, D] \
         (attr `eps`, default 1e-5; BERT uses 1e-12); weight = 1, bias = 0"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(LayerNormBlock { eps: attrs.float_or("eps", 1e-5)? as f32 }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[3, 4]]), Probe::new("(eps: 1e-3)", &[&[5]])]
    }
}

#[derive(Debug)]
struct LayerNormBlock {
    eps: f32,
}

impl Block for LayerNormBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        let dims = inputs[0].dims();
        if !(1..=2).contains(&dims.len()) {
            return Err(format!("expects [D] or [T, D], got {}", inputs[0]));
        }
        let d = dims[dims.len() - 1];
        Ok(Inferred {
            outputs: vec![inputs[0].clone()],
            params: vec![
                ParamSpec::trainable("weight", [d], Init::Ones),
                ParamSpec::trainable("bias", [d], Init::Zeros),
            ],
            flops: 8 * inputs[0].numel() as u64,
        })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.layer_norm(inputs[0], params[0], params[1], self.eps)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn normalises_the_last_axis() {
        let b = configure("core.layer_norm", "(eps: 1e-12)").unwrap();
        let i = b.infer(&[Shape::new([5, 8])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([5, 8])]);
        assert_eq!(i.params[0].shape, vec![8]);
        assert!(b.infer(&[Shape::new([2, 5, 8])]).is_err());
    }
}
