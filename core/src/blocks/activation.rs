//! Element-wise activations: `core.relu`, `core.leaky_relu`, `core.tanh`, `core.sigmoid`,
//! `core.gelu`.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use crate::ops::{Ops, Tensor, Unary};

struct ActivationKind {
    name: &'static str,
    doc: &'static str,
    op: fn(f32) -> Unary,
    has_slope: bool,
}

pub(super) fn kinds() -> Vec<Arc<dyn BlockKind>> {
    vec![
        Arc::new(ActivationKind {
            name: "core.relu",
            doc: "max(x, 0), any shape",
            op: |_| Unary::Relu,
            has_slope: false,
        }),
        Arc::new(ActivationKind {
            name: "core.leaky_relu",
            doc: "x if x > 0 else slope·x (attr `slope`, default 0.2 as in StackGAN)",
            op: Unary::LeakyRelu,
            has_slope: true,
        }),
        Arc::new(ActivationKind {
            name: "core.tanh",
            doc: "tanh(x), any shape",
            op: |_| Unary::Tanh,
            has_slope: false,
        }),
        Arc::new(ActivationKind {
            name: "core.sigmoid",
            doc: "1 / (1 + e^-x), any shape",
            op: |_| Unary::Sigmoid,
            has_slope: false,
        }),
        Arc::new(ActivationKind {
            name: "core.gelu",
            doc: "x·Φ(x) with the exact normal CDF (BERT's, PyTorch's default GELU), any shape",
            op: |_| Unary::Gelu,
            has_slope: false,
        }),
    ]
}

impl BlockKind for ActivationKind {
    fn name(&self) -> &str {
        self.name
    }
    fn doc(&self) -> &str {
        self.doc
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let slope = if self.has_slope { attrs.float_or("slope", 0.2)? as f32 } else { 0.0 };
        Ok(Arc::new(Activation { op: (self.op)(slope) }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new(if self.has_slope { "(slope: 0.2)" } else { "()" }, &[&[3, 2, 2]])]
    }
}

#[derive(Debug)]
struct Activation {
    op: Unary,
}

impl Block for Activation {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        super::arity(inputs, 1)?;
        Ok(Inferred { outputs: vec![inputs[0].clone()], ..Default::default() })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![ops.unary(self.op, inputs[0])?])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn keeps_shape_and_checks_slope() {
        let b = configure("core.leaky_relu", "(slope: 0.1)").unwrap();
        let s = Shape::new([3, 4]);
        assert_eq!(b.infer(std::slice::from_ref(&s)).unwrap().outputs, vec![s.clone()]);
        assert!(b.infer(&[s.clone(), s]).is_err());
        assert!(configure("core.relu", "(slope: 0.1)").is_err());
        assert!(configure("core.leaky_relu", "(slope: \"x\")").is_err());
    }
}
