//! `stackgan.cond_aug`: StackGAN's Conditioning Augmentation. FC → activation → split into
//! μ and the log-scale → c = μ + σ·ε. The activation, the meaning of the second half and
//! the distribution of ε are the parity switches between the reference implementations.

use std::sync::Arc;

use crate::error::Result;
use crate::kind::{Attrs, Block, BlockKind, Inferred, Init, ParamSpec, Probe, Shape};
use crate::ops::{Binary, Noise, Ops, Tensor, Unary};

pub(super) struct CondAug;

impl BlockKind for CondAug {
    fn name(&self) -> &str {
        "stackgan.cond_aug"
    }
    fn doc(&self) -> &str {
        "conditioning augmentation [embed] → c, mu, logvar [out] (attrs `out`; `act` relu|leaky_relu|glu; \
         `param` logvar|log_sigma; `eps` normal|truncated; `bias` = true)"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let out = attrs.dim("out")?;
        let act = match attrs.choice("act", &["relu", "leaky_relu", "glu"])? {
            "leaky_relu" => Act::LeakyRelu,
            "glu" => Act::Glu,
            _ => Act::Relu,
        };
        let log_sigma = attrs.choice("param", &["logvar", "log_sigma"])? == "log_sigma";
        let noise = match attrs.choice("eps", &["normal", "truncated"])? {
            "truncated" => Noise::TruncatedNormal(2.0),
            _ => Noise::Normal,
        };
        let bias = attrs.bool_or("bias", true)?;
        Ok(Arc::new(CondAugBlock { out, act, log_sigma, noise, bias }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![
            Probe::new("(out: 3)", &[&[5]]),
            Probe::new("(out: 2, act: \"leaky_relu\", param: \"log_sigma\")", &[&[4]]),
            Probe::new("(out: 2, act: \"glu\")", &[&[4]]),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Relu,
    LeakyRelu,
    Glu,
}

#[derive(Debug)]
struct CondAugBlock {
    out: usize,
    act: Act,
    log_sigma: bool,
    noise: Noise,
    bias: bool,
}

impl Block for CondAugBlock {
    fn ports(&self) -> Vec<String> {
        vec!["c".into(), "mu".into(), "logvar".into()]
    }

    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        let n = super::one_of_rank(inputs, 1, "a text embedding [embed_dim]")?[0];
        let fc_out = if self.act == Act::Glu { 4 * self.out } else { 2 * self.out };
        let mut params = vec![ParamSpec::trainable("fc.weight", [fc_out, n], Init::Normal { mean: 0.0, std: 0.02 })];
        if self.bias {
            params.push(ParamSpec::trainable("fc.bias", [fc_out], Init::Zeros));
        }
        let v = Shape::new([self.out]);
        Ok(Inferred { outputs: vec![v.clone(), v.clone(), v], params, flops: 2 * (n * fc_out) as u64 })
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let h = ops.linear(inputs[0], params[0], params.get(1).copied())?;
        let h = match self.act {
            Act::Relu => ops.unary(Unary::Relu, h)?,
            Act::LeakyRelu => ops.unary(Unary::LeakyRelu(0.2), h)?,
            Act::Glu => {
                let a = ops.slice(h, 1, 0, 2 * self.out)?;
                let b = ops.slice(h, 1, 2 * self.out, 4 * self.out)?;
                let g = ops.unary(Unary::Sigmoid, b)?;
                ops.binary(Binary::Mul, a, g)?
            }
        };
        let mu = ops.slice(h, 1, 0, self.out)?;
        let second = ops.slice(h, 1, self.out, 2 * self.out)?;
        // σ = exp(½·logvar), or exp(log σ) in the TensorFlow original; the `logvar` port
        // always carries log σ² so the KL term reads the same for both.
        let (std, logvar) = if self.log_sigma {
            (ops.unary(Unary::Exp, second)?, ops.unary(Unary::Scale(2.0), second)?)
        } else {
            let half = ops.unary(Unary::Scale(0.5), second)?;
            (ops.unary(Unary::Exp, half)?, second)
        };
        let batch = ops.shape(inputs[0])?[0];
        let path = ops.node_path().to_string();
        let eps = ops.noise(&path, &[batch, self.out], self.noise)?;
        let scaled = ops.binary(Binary::Mul, eps, std)?;
        let c = ops.binary(Binary::Add, scaled, mu)?;
        Ok(vec![c, mu, logvar])
    }
}

#[cfg(test)]
mod tests {
    use crate::blocks::testing::configure;
    use crate::kind::Shape;

    #[test]
    fn three_ports_and_fc_params() {
        let b = configure("stackgan.cond_aug", "(out: 8)").unwrap();
        assert_eq!(b.ports(), vec!["c", "mu", "logvar"]);
        let i = b.infer(&[Shape::new([64])]).unwrap();
        assert_eq!(i.outputs.len(), 3);
        assert_eq!(i.params[0].shape, vec![16, 64]);
        let g = configure("stackgan.cond_aug", "(out: 8, act: \"glu\")").unwrap();
        assert_eq!(g.infer(&[Shape::new([64])]).unwrap().params[0].shape, vec![32, 64]);
        let e = configure("stackgan.cond_aug", "(out: 8, act: \"rellu\")").unwrap_err();
        assert_eq!(e.help_text(), Some("did you mean `relu`?"));
    }
}
