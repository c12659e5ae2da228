//! `core.embedding`: a lookup table from integer ids to vectors (token, position and
//! segment embeddings of a transformer).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kind::{Attrs, Block, BlockKind, Inferred, Init, ParamSpec, Probe, Shape};
use crate::ops::{Ops, Tensor};

pub(super) struct Embedding;

impl BlockKind for Embedding {
    fn name(&self) -> &str {
        "core.embedding"
    }
    fn doc(&self) -> &str {
        "ids [T] (whole numbers below `vocab`, as floats) → rows [T, dim] of a table [vocab, dim] \
         (attrs `vocab`, `dim`); table ~ N(0, 0.02); no gradient to the ids"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        Ok(Arc::new(EmbeddingBlock { vocab: attrs.dim("vocab")?, dim: attrs.dim("dim")? }))
    }
    fn probes(&self) -> Vec<Probe> {
        // The suite feeds ids below 5 to this kind.
        vec![Probe::new("(vocab: 5, dim: 3)", &[&[4]])]
    }
}

#[derive(Debug)]
struct EmbeddingBlock {
    vocab: usize,
    dim: usize,
}

impl Block for EmbeddingBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let t = super::one_of_rank(inputs, 1, "ids [T]")?[0];
        Ok(Inferred {
            outputs: vec![Shape::new([t, self.dim])],
            params: vec![ParamSpec::trainable("weight", [self.vocab, self.dim], Init::Normal { mean: 0.0, std: 0.02 })],
            flops: 0,
        })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shape = ops.shape(inputs[0])?;
        let mut rows = Vec::new();
        for v in ops.read(inputs[0])? {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < self.vocab) {
                return Err(Error::input(
                    "exec::bad_id",
                    format!("`{}`: id {v} is not a whole number below vocab = {}", ops.node_path(), self.vocab),
                ));
            }
            rows.push(v as usize);
        }
        let y = ops.select_rows(params[0], &rows)?;
        Ok(vec![ops.reshape(y, &[shape[0], shape[1], self.dim])?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn looks_up_rows() {
        let b = configure("core.embedding", "(vocab: 10, dim: 3)").unwrap();
        let i = b.infer(&[Shape::new([7])]).unwrap();
        assert_eq!(i.outputs, vec![Shape::new([7, 3])]);
        assert_eq!(i.params[0].shape, vec![10, 3]);
        assert!(b.infer(&[Shape::new([7, 2])]).is_err());
        assert!(configure("core.embedding", "(vocab: 10)").is_err());
    }
}
