//! `core.attention`: multi-head scaled dot-product attention over a sequence (Vaswani et
//! al., 2017), the core of a transformer layer; the projections around it are
//! `core.linear` nodes. No mask: sequences in a batch have the same length.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, Tensor, Unary};

pub(super) struct Attention;

impl BlockKind for Attention {
    fn name(&self) -> &str {
        "core.attention"
    }
    fn doc(&self) -> &str {
        "q, k, v [T, D] → softmax(q·kᵀ / √(D / heads))·v per head [T, D] (attr `heads`, dividing D)"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(AttentionBlock { heads: attrs.dim("heads")? }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("(heads: 2)", &[&[3, 4], &[3, 4], &[3, 4]])]
    }
}

#[derive(Debug)]
struct AttentionBlock {
    heads: usize,
}

impl Block for AttentionBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 3)?;
        let q = inputs[0].dims();
        if q.len() != 2 || inputs[1] != inputs[0] || inputs[2] != inputs[0] {
            return Err(format!(
                "expects q, k, v of one shape [T, D], got {}, {}, {}",
                inputs[0], inputs[1], inputs[2]
            ));
        }
        if !q[1].is_multiple_of(self.heads) {
            return Err(format!("{} heads do not divide D = {}", self.heads, q[1]));
        }
        let (t, d) = (q[0] as u64, q[1] as u64);
        Ok(Inferred { outputs: vec![inputs[0].clone()], flops: 4 * t * t * d, ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        let s = ops.shape(inputs[0])?;
        let (b, t, d, h) = (s[0], s[1], s[2], self.heads);
        let dh = d / h;
        // [B, T, D] → [B·H, T, dh]
        let split = |ops: &mut dyn Ops, x: Tensor| -> Result<Tensor> {
            let x = ops.reshape(x, &[b, t, h, dh])?;
            let x = ops.transpose(x, 1, 2)?;
            ops.reshape(x, &[b * h, t, dh])
        };
        let q = split(ops, inputs[0])?;
        let k = split(ops, inputs[1])?;
        let v = split(ops, inputs[2])?;
        let kt = ops.transpose(k, 1, 2)?;
        let scores = ops.matmul(q, kt)?;
        let scores = ops.unary(Unary::Scale(1.0 / (dh as f32).sqrt()), scores)?;
        let p = ops.softmax(scores)?;
        let o = ops.matmul(p, v)?;
        let o = ops.reshape(o, &[b, h, t, dh])?;
        let o = ops.transpose(o, 1, 2)?;
        Ok(vec![ops.reshape(o, &[b, t, d])?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn checks_heads_and_shapes() {
        let b = configure("core.attention", "(heads: 2)").unwrap();
        let s = Shape::new([5, 8]);
        assert_eq!(b.infer(&[s.clone(), s.clone(), s.clone()]).unwrap().outputs, vec![s.clone()]);
        assert!(b.infer(&[s.clone(), s.clone()]).is_err());
        assert!(b.infer(&[s.clone(), Shape::new([4, 8]), s.clone()]).is_err());
        let three = configure("core.attention", "(heads: 3)").unwrap();
        assert!(three.infer(&[s.clone(), s.clone(), s]).is_err());
    }
}
