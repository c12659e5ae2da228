//! Blocks a user would write, as a stackflow plugin: SAGAN-style self-attention over a
//! feature map (Zhang et al., "Self-Attention Generative Adversarial Networks", 2019), and
//! the minibatch standard deviation feature of ProGAN's discriminator (Karras et al., 2018).
//!
//! Self-attention: for x [C, H, W] with N = H·W positions: query and key are 1×1 convolutions to
//! C' = C / `reduction` channels, value a 1×1 convolution to C channels;
//! `attention = softmax(qᵀk)` over the key positions ([N, N]); `o = v · attentionᵀ`;
//! `out = γ·o + x` with a learnable scalar γ initialised to 0, so the block starts as the
//! identity and learns how much non-local evidence to mix in.
//!
//! Minibatch standard deviation: for x [B, C, H, W], the standard deviation of each
//! feature across the batch, averaged over channels and positions, appended as one more
//! channel; D sees how varied a batch is, which penalises a collapsed G.
//!
//! Everything runs as host tensor ops, so both are differentiable and run on whichever
//! device the host uses.

use stackflow_plugin_api::prelude::*;

/// `example.self_attention`.
#[derive(Debug)]
pub struct SelfAttention {
    reduction: usize,
    bias: bool,
}

impl SelfAttention {
    fn inner(&self, c: usize) -> usize {
        (c / self.reduction).max(1)
    }
}

impl Block for SelfAttention {
    const NAME: &'static str = "example.self_attention";
    const DOC: &'static str =
        "SAGAN self-attention [C, H, W] → out [C, H, W] = γ·attention(x) + x (γ starts at 0), attention [H·W, H·W]";
    const ATTRS: &'static [(&'static str, &'static str)] = &[
        ("reduction", "query/key channels are C / reduction (default 8, at least 1)"),
        ("bias", "1×1 convolutions have biases (default true)"),
    ];
    const PROBES: &'static [Probe] =
        &[("(reduction: 2)", &[&[4, 3, 3]]), ("(reduction: 4, bias: false)", &[&[4, 2, 2]])];

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        Ok(Self { reduction: attrs.dim_or("reduction", 8)?, bias: attrs.bool_or("bias", true)? })
    }

    fn ports(&self) -> Vec<String> {
        vec!["out".into(), "attention".into()]
    }

    fn infer(&self, inputs: &[Vec<usize>]) -> std::result::Result<Inferred, String> {
        let [x] = inputs else {
            return Err(format!("takes 1 input, got {}", inputs.len()));
        };
        let &[c, h, w] = x.as_slice() else {
            return Err(format!("expects a feature map [C, H, W], got {x:?}"));
        };
        let (n, cq) = (h * w, self.inner(c));
        if n > 4096 {
            return Err(format!("attention over {h}×{w} = {n} positions would need an {n}×{n} map per sample; place the block at 64×64 or less"));
        }
        let conv = |name: &str, out: usize, params: &mut Vec<ParamSpec>| {
            params.push(ParamSpec::trainable(
                &format!("{name}.weight"),
                [out, c, 1, 1],
                Init::Normal { mean: 0.0, std: 0.02 },
            ));
            if self.bias {
                params.push(ParamSpec::trainable(&format!("{name}.bias"), [out], Init::Zeros));
            }
        };
        let mut params = Vec::new();
        conv("query", cq, &mut params);
        conv("key", cq, &mut params);
        conv("value", c, &mut params);
        params.push(ParamSpec::trainable("gamma", [1], Init::Zeros));
        let flops = 2 * (n * c * (2 * cq + c) + n * n * cq + n * n * c) as u64;
        Ok(Inferred { outputs: vec![x.clone(), vec![n, n]], params, flops })
    }

    fn forward<'a>(&self, _: &'a Ops, inputs: &[Tensor<'a>], params: &[Tensor<'a>]) -> Result<Vec<Tensor<'a>>> {
        let x = inputs[0];
        let &[b, c, h, w] = x.shape().as_slice() else {
            return Err(Error::new("expects [B, C, H, W]"));
        };
        let (n, cq) = (h * w, self.inner(c));
        let mut p = params.iter().copied();
        let mut conv = || {
            let weight = p.next();
            let bias = if self.bias { p.next() } else { None };
            weight.map(|wt| x.conv2d(wt, bias, 1, 0))
        };
        let (Some(q), Some(k), Some(v)) = (conv(), conv(), conv()) else {
            return Err(Error::new("missing parameters"));
        };
        let gamma = p.next().ok_or("missing parameter `gamma`")?;
        let q = q.reshape(&[b, cq, n]).t(); // [B, N, C']
        let k = k.reshape(&[b, cq, n]); // [B, C', N]
        let attention = q.matmul(k).softmax(); // [B, N, N]: row i attends over positions j
        let v = v.reshape(&[b, c, n]); // [B, C, N]
        let o = v.matmul(attention.t()).reshape(&[b, c, h, w]);
        let out = gamma.broadcast_to(&[b, c, h, w]) * o + x;
        Ok(vec![out, attention])
    }
}

/// `example.minibatch_stddev`.
#[derive(Debug)]
pub struct MinibatchStddev;

impl Block for MinibatchStddev {
    const NAME: &'static str = "example.minibatch_stddev";
    const DOC: &'static str =
        "ProGAN's minibatch standard deviation: [C, H, W] → [C + 1, H, W], the extra map holding \
         the mean over channels and positions of each feature's standard deviation across the batch \
         (a collapsed G gives a D that sees it)";
    const PROBES: &'static [Probe] = &[("()", &[&[2, 2, 3]])];

    fn configure(_attrs: &mut Attrs) -> Result<Self> {
        Ok(Self)
    }

    fn infer(&self, inputs: &[Vec<usize>]) -> std::result::Result<Inferred, String> {
        let [x] = inputs else {
            return Err(format!("takes 1 input, got {}", inputs.len()));
        };
        let &[c, h, w] = x.as_slice() else {
            return Err(format!("expects a feature map [C, H, W], got {x:?}"));
        };
        Ok(Inferred { outputs: vec![vec![c + 1, h, w]], params: vec![], flops: 6 * (c * h * w) as u64 })
    }

    fn forward<'a>(&self, ops: &'a Ops, inputs: &[Tensor<'a>], _params: &[Tensor<'a>]) -> Result<Vec<Tensor<'a>>> {
        let x = inputs[0];
        let &[b, _, h, w] = x.shape().as_slice() else {
            return Err(Error::new("expects [B, C, H, W]"));
        };
        let full = x.shape();
        let dev = x - x.mean_axis(0).broadcast_to(&full);
        let std = ((dev * dev).mean_axis(0) + 1e-8).sqrt(); // [1, C, H, W]
        let s = std.mean_axis(1).mean_axis(2).mean_axis(3); // [1, 1, 1, 1]
        Ok(vec![ops.concat(&[x, s.broadcast_to(&[b, 1, h, w])], 1)])
    }
}

export_plugin!(
    name: "example",
    blocks: [SelfAttention, MinibatchStddev],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_parameters() {
        let b = SelfAttention::configure(&mut Attrs::parse("(reduction: 4)", None).unwrap()).unwrap();
        let i = b.infer(&[vec![16, 8, 8]]).unwrap();
        assert_eq!(i.outputs, vec![vec![16, 8, 8], vec![64, 64]]);
        let names: Vec<&str> = i.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias", "gamma"]
        );
        assert_eq!(i.params[0].shape, vec![4, 16, 1, 1]);
        assert_eq!(i.params[6].init, Init::Zeros);
        assert!(b.infer(&[vec![16]]).unwrap_err().contains("[C, H, W]"));
        assert!(b.infer(&[vec![4, 128, 128]]).is_err());
    }
}
