//! `core.linear`: y = x·Wᵀ + b on vectors.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Init, ParamSpec, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Linear;

impl BlockKind for Linear {
    fn name(&self) -> &str {
        "core.linear"
    }
    fn doc(&self) -> &str {
        "fully connected layer [in] → [out] (attrs `out`, `bias` = true, `init` = \"normal\" (W ~ N(0, 0.02)), \
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
}

#[derive(Debug)]
struct LinearBlock {
    out: usize,
    bias: bool,
    init: Init,
}

impl Block for LinearBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let n = super::one_of_rank(inputs, 1, "a vector [in]")?[0];
        let mut params = vec![ParamSpec::trainable("weight", [self.out, n], self.init)];
        if self.bias {
            params.push(ParamSpec::trainable("bias", [self.out], Init::Zeros));
        }
        Ok(Inferred { outputs: vec![Shape::new([self.out])], params, flops: 2 * (n * self.out) as u64 })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.linear(inputs[0], params[0], params.get(1).copied())?])
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
        assert!(b.infer(&[Shape::new([5, 2])]).is_err());
        assert!(configure("core.linear", "()").is_err());
        assert!(configure("core.linear", "(out: 0)").is_err());
        let ones = configure("core.linear", "(out: 1, init: \"ones\")").unwrap();
        assert_eq!(ones.infer(&[Shape::new([3])]).unwrap().params[0].init, crate::kind::Init::Ones);
        assert!(configure("core.linear", "(out: 1, init: \"one\")").is_err());
    }
}
