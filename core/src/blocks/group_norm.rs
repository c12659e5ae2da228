//! `core.group_norm`: normalisation over groups of channels with a learned per-channel
//! scale and shift (Wu & He, 2018); `groups` = C is instance normalisation, 1 is layer
//! normalisation over the whole sample. Unlike BatchNorm it keeps no running statistics
//! and behaves the same in train and eval mode.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Init, ParamSpec, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct GroupNorm;

impl BlockKind for GroupNorm {
    fn name(&self) -> &str {
        "core.group_norm"
    }
    fn doc(&self) -> &str {
        "per sample, (x − mean) / √(var + eps) over each of `groups` groups of channels of [C, L] or \
         [C, H, W] (attr `groups`, default 1; C for instance norm; `eps`, default 1e-5), \
         then · weight + bias per channel (1 and 0 at first)"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let groups = attrs.dim_or("groups", 1)?;
        Ok(Arc::new(GroupNormBlock { groups, eps: attrs.float_or("eps", 1e-5)? as f32 }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![
            Probe::new("(groups: 2)", &[&[4, 2, 3]]),
            Probe::new("(groups: 3)", &[&[3, 5]]),
            Probe::new("()", &[&[2, 2, 2]]),
        ]
    }
}

#[derive(Debug)]
struct GroupNormBlock {
    groups: usize,
    eps: f32,
}

impl Block for GroupNormBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        let dims = inputs[0].dims();
        if !(2..=3).contains(&dims.len()) {
            return Err(format!("expects [C, L] or [C, H, W], got {}", inputs[0]));
        }
        let c = dims[0];
        if !c.is_multiple_of(self.groups) {
            return Err(format!("{c} channels do not split into {} groups", self.groups));
        }
        Ok(Inferred {
            outputs: vec![inputs[0].clone()],
            params: vec![
                ParamSpec::trainable("weight", [c], Init::Ones),
                ParamSpec::trainable("bias", [c], Init::Zeros),
            ],
            flops: 8 * inputs[0].numel() as u64,
        })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.group_norm(inputs[0], self.groups, params[0], params[1], self.eps)?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn groups_must_divide_the_channels() {
        let b = configure("core.group_norm", "(groups: 2)").unwrap();
        let i = b.infer(&[Shape::new([4, 3, 3])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([4, 3, 3])]);
        assert_eq!(i.params[1].shape, vec![4]);
        assert!(b.infer(&[Shape::new([3, 3, 3])]).unwrap_err().contains("2 groups"));
        assert!(b.infer(&[Shape::new([4])]).is_err());
        assert!(configure("core.group_norm", "(groups: 0)").is_err());
    }
}
