//! Built-in node kinds, one file each. They use the same [`crate::registry`] API as
//! plugin kinds: adding a kind is one file plus one line in [`register_builtins`].

mod activation;
mod attention;
mod batch_norm;
mod concat;
mod cond_aug;
mod conv2d;
mod detach;
mod elementwise;
mod embedding;
mod glu;
mod group_norm;
mod layer_norm;
mod linear;
mod pool;
mod reduce;
mod replicate;
mod reshape;
mod select;
mod split;
mod upsample;

use std::sync::Arc;

use crate::error::Result;
use crate::kind::Shape;
use crate::registry::{Registry, Source};

/// Register every built-in kind.
pub fn register_builtins(r: &mut Registry) -> Result<()> {
    for kind in [
        activation::kinds(),
        elementwise::kinds(),
        vec![
            Arc::new(linear::Linear) as Arc<dyn crate::kind::BlockKind>,
            Arc::new(conv2d::Conv2d),
            Arc::new(batch_norm::BatchNorm),
            Arc::new(glu::Glu),
            Arc::new(upsample::UpsampleNearest),
            Arc::new(upsample::ResizeBilinear),
            Arc::new(pool::Pool2d::MAX),
            Arc::new(pool::Pool2d::AVG),
            Arc::new(concat::Concat),
            Arc::new(replicate::Replicate),
            Arc::new(reshape::Reshape),
            Arc::new(reshape::Flatten),
            Arc::new(pool::GlobalAvgPool),
            Arc::new(split::Split),
            Arc::new(cond_aug::CondAug),
            Arc::new(detach::Detach),
            Arc::new(layer_norm::LayerNorm),
            Arc::new(embedding::Embedding),
            Arc::new(attention::Attention),
            Arc::new(group_norm::GroupNorm),
            Arc::new(reduce::ReduceKind),
            Arc::new(select::CompareKind),
            Arc::new(select::Where),
        ],
    ]
    .into_iter()
    .flatten()
    {
        r.add_block(kind, Source::BuiltIn)?;
    }
    Ok(())
}

/// Require exactly `n` inputs.
pub(crate) fn arity(inputs: &[Shape], n: usize) -> std::result::Result<(), String> {
    if inputs.len() == n {
        Ok(())
    } else {
        Err(format!("takes {n} input(s), got {}", inputs.len()))
    }
}

/// Require exactly one input of rank `rank` and return its dims.
pub(crate) fn one_of_rank(inputs: &[Shape], rank: usize, what: &str) -> std::result::Result<Vec<usize>, String> {
    arity(inputs, 1)?;
    if inputs[0].rank() != rank {
        return Err(format!("expects {what}, got {}", inputs[0]));
    }
    Ok(inputs[0].0.clone())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers to configure a kind from RON attribute text in unit tests.
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::error::SourceFile;
    use crate::kind::attrs::{Attr, Attrs};
    use crate::kind::Block;
    use crate::registry::Registry;

    /// Configure `kind` with attributes written as RON, e.g. `(out: 4)`.
    pub fn configure(kind: &str, attrs: &str) -> crate::Result<Arc<dyn Block>> {
        let reg = Registry::with_builtins();
        let v: ron::Value = ron::from_str(attrs).expect("test attrs are RON");
        let items = crate::dsl::entries(&v)
            .expect("a map")
            .into_iter()
            .map(|(name, value)| Attr { name, value, span: (0, 0).into(), key_span: None })
            .collect();
        let vars = BTreeMap::from([("w".to_string(), 4)]);
        let src = SourceFile::new("test", attrs);
        let mut a = Attrs::new(items, &vars, &src, (0, 0).into(), kind);
        let b = reg.block(kind).expect("kind exists").configure(&mut a)?;
        a.finish()?;
        Ok(b)
    }
}
