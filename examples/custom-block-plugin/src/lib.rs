//! Tutorial: a gated convolution block as a stackflow plugin.
//!
//! `tutorial.gated_conv` computes `conv_a(x) · σ(conv_b(x))` — a convolution whose every
//! output is scaled by a learnt, input-dependent gate (the GLU of Dauphin et al., over
//! feature maps). It shows the four things a block does: read attributes, infer shapes
//! and declare parameters, and compute its forward pass with the host's tensor ops.
//! Walk-through: README.md beside this file.

use stackflow_plugin_api::prelude::*;

/// The configured block: one per node that uses `tutorial.gated_conv`.
pub struct GatedConv {
    out: usize,
    kernel: usize,
}

impl Block for GatedConv {
    // The kind name graphs use: `plugin_namespace.kind`, snake_case.
    const NAME: &'static str = "tutorial.gated_conv";
    // One line for `stackflow plugins list`.
    const DOC: &'static str = "gated convolution [C, H, W] → [out, H, W]: conv_a(x)·σ(conv_b(x)), same padding";
    const ATTRS: &'static [(&'static str, &'static str)] =
        &[("out", "output channels (required; may be an expression)"), ("kernel", "odd kernel size (default 3)")];
    // Configurations and input shapes stackflow's test suite checks the kind with: shapes
    // against `infer`, gradients against finite differences.
    const PROBES: &'static [Probe] = &[("(out: 2)", &[&[3, 4, 4]]), ("(out: 1, kernel: 1)", &[&[2, 3, 3]])];

    // 1. Attributes arrive as RON; `dim` also evaluates expressions such as "gf_dim * 2"
    //    (the host evaluates them over the graph's variables). Unread attributes are
    //    refused after this returns.
    fn configure(attrs: &mut Attrs) -> Result<Self> {
        let out = attrs.dim("out")?;
        let kernel = attrs.dim_or("kernel", 3)?;
        if kernel % 2 == 0 {
            return Err(Error::at("kernel", "`kernel` must be odd (same padding)"));
        }
        Ok(GatedConv { out, kernel })
    }

    // 2. Shapes are per sample. An `Err` here is shown by `stackflow check` with the node's
    //    span in the graph file, before anything runs. Parameters are declared here; the
    //    host creates, initialises, trains and checkpoints them.
    fn infer(&self, inputs: &[Vec<usize>]) -> std::result::Result<Inferred, String> {
        let [x] = inputs else {
            return Err(format!("takes 1 input, got {}", inputs.len()));
        };
        let &[c, h, w] = x.as_slice() else {
            return Err(format!("expects a feature map [C, H, W], got {x:?}"));
        };
        let k = self.kernel;
        let weight =
            |name: &str| ParamSpec::trainable(name, [self.out, c, k, k], Init::Normal { mean: 0.0, std: 0.02 });
        let bias = |name: &str| ParamSpec::trainable(name, [self.out], Init::Zeros);
        Ok(Inferred {
            outputs: vec![vec![self.out, h, w]],
            params: vec![weight("a.weight"), bias("a.bias"), weight("b.weight"), bias("b.bias")],
            flops: 2 * 2 * (self.out * h * w * c * k * k) as u64,
        })
    }

    // 3. Forward: tensors have the batch first; parameters come in declaration order.
    //    Every op runs in the host, on its device and autograd tape: nothing to derive.
    fn forward<'a>(&self, _ops: &'a Ops, inputs: &[Tensor<'a>], params: &[Tensor<'a>]) -> Result<Vec<Tensor<'a>>> {
        let [wa, ba, wb, bb] = params else {
            return Err(Error::new("expected 4 parameters"));
        };
        let x = inputs[0];
        let pad = self.kernel / 2;
        let a = x.conv2d(*wa, Some(*ba), 1, pad);
        let gate = x.conv2d(*wb, Some(*bb), 1, pad).sigmoid();
        Ok(vec![a * gate])
    }
}

// 4. Export the declaration the host looks for (ABI version first) and register the kinds.
stackflow_plugin_api::export_plugin!(name: "tutorial", blocks: [GatedConv]);
