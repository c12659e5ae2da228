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
//! Spectral normalisation (Miyato et al., "Spectral Normalization for Generative
//! Adversarial Networks", 2018): a convolution whose weight is divided by its largest
//! singular value σ, estimated by power iteration on the weight as a [out, C·k·k] matrix
//! with a persistent vector `u` (a buffer the block rewrites in train mode, as PyTorch's
//! `spectral_norm` does); gradients flow through σ = uᵀWv with u, v held constant. It
//! keeps D 1-Lipschitz per layer, the usual swap for a BatchNorm discriminator.
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

/// `example.sn_conv2d`.
#[derive(Debug)]
pub struct SnConv2d {
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
    iterations: usize,
}

/// Added to norms before dividing (PyTorch's `spectral_norm` eps).
const SN_EPS: f32 = 1e-12;

/// `t / ‖t‖₂`.
fn unit(t: Tensor<'_>) -> Tensor<'_> {
    let norm = (t * t).sum().sqrt() + SN_EPS;
    t / norm.broadcast_to(&t.shape())
}

impl Block for SnConv2d {
    const NAME: &'static str = "example.sn_conv2d";
    const DOC: &'static str =
        "spectrally normalised convolution [C, H, W] → [out, H', W']: the weight divided by its largest singular value (power iteration, buffer `u`)";
    const ATTRS: &'static [(&'static str, &'static str)] = &[
        ("out", "output channels (required; may be an expression)"),
        ("kernel", "square kernel size (default 3)"),
        ("stride", "default 1"),
        ("padding", "zero padding per side (default 0)"),
        ("bias", "default true"),
        ("iterations", "power iterations per training forward (default 1, as PyTorch)"),
    ];
    // Many iterations make u and v the singular vectors, so σ's derivative through them
    // vanishes and finite differences see the gradient that flows through σ alone.
    const PROBES: &'static [Probe] = &[
        ("(out: 3, kernel: 3, padding: 1, iterations: 40)", &[&[2, 4, 4]]),
        ("(out: 2, kernel: 4, stride: 2, padding: 1, bias: false, iterations: 40)", &[&[3, 4, 4]]),
    ];

    fn configure(attrs: &mut Attrs) -> Result<Self> {
        let block = Self {
            out: attrs.dim("out")?,
            kernel: attrs.dim_or("kernel", 3)?,
            stride: attrs.dim_or("stride", 1)?,
            padding: attrs.dim_or("padding", 0)?,
            bias: attrs.bool_or("bias", true)?,
            iterations: attrs.dim_or("iterations", 1)?,
        };
        if block.out == 0 || block.kernel == 0 || block.stride == 0 {
            return Err(Error::new("`out`, `kernel` and `stride` must be at least 1"));
        }
        Ok(block)
    }

    fn infer(&self, inputs: &[Vec<usize>]) -> std::result::Result<Inferred, String> {
        let [x] = inputs else {
            return Err(format!("takes 1 input, got {}", inputs.len()));
        };
        let &[c, h, w] = x.as_slice() else {
            return Err(format!("expects a feature map [C, H, W], got {x:?}"));
        };
        let (k, p, s) = (self.kernel, self.padding, self.stride);
        if h + 2 * p < k || w + 2 * p < k {
            return Err(format!("a {k}×{k} kernel does not fit a {h}×{w} map padded by {p}"));
        }
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let mut params =
            vec![ParamSpec::trainable("weight", [self.out, c, k, k], Init::Normal { mean: 0.0, std: 0.02 })];
        if self.bias {
            params.push(ParamSpec::trainable("bias", [self.out], Init::Zeros));
        }
        params.push(ParamSpec::buffer("u", [self.out], Init::Normal { mean: 0.0, std: 1.0 }));
        let flops = 2 * (self.out * c * k * k * oh * ow) as u64;
        Ok(Inferred { outputs: vec![vec![self.out, oh, ow]], params, flops })
    }

    fn forward<'a>(&self, ops: &'a Ops, inputs: &[Tensor<'a>], params: &[Tensor<'a>]) -> Result<Vec<Tensor<'a>>> {
        let (weight, bias, u_buf) = match (self.bias, params) {
            (true, &[w, b, u]) => (w, Some(b), u),
            (false, &[w, u]) => (w, None, u),
            _ => return Err(Error::new("missing parameters")),
        };
        let wshape = weight.shape();
        let k: usize = wshape[1..].iter().product();
        let wm = weight.reshape(&[1, self.out, k]);
        // Power iteration on constants: u and v carry no gradient.
        let wc = wm.detach();
        let mut u = unit(u_buf.reshape(&[1, 1, self.out]));
        let mut v = None;
        let iterations = if ops.training() { self.iterations } else { 0 };
        for _ in 0..iterations {
            let vi = unit(u.matmul(wc)); // [1, 1, K]
            u = unit(vi.matmul(wc.t())); // [1, 1, out]
            v = Some(vi);
        }
        // In eval mode v comes from the stored u.
        let v = v.unwrap_or_else(|| unit(u.matmul(wc)));
        if ops.training() {
            u_buf.assign(u.reshape(&[self.out]));
        }
        let sigma = (u.matmul(wm) * v).sum(); // uᵀWv, differentiable in W
        let normalised = weight / sigma.broadcast_to(&wshape);
        let x = inputs[0];
        Ok(vec![x.conv2d(normalised, bias, self.stride, self.padding)])
    }
}

export_plugin!(
    name: "example",
    blocks: [SelfAttention, MinibatchStddev, SnConv2d],
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
