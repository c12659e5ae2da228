//! `stackflow-local`: the whole `stackflow` command line plus two block kinds compiled in.
//! `local.soft_clip` (y = limit · tanh(x / limit)) implements the same traits as the
//! built-ins (`stackflow_core::kind`) and computes with the same op table.
//! `tutorial.gated_conv` is the plugin of `examples/custom-block-plugin`, written against
//! `stackflow-plugin-api` and linked in with `plugin::link`: the same code that builds
//! the `cdylib` for `--plugin`. Both are checked, shape-inferred and differentiated like
//! the built-ins.

use std::process::ExitCode;
use std::sync::Arc;

use stackflow_core::kind::{Attrs, Block, BlockKind, Inferred, Probe, Shape};
use stackflow_core::ops::{Ops, Tensor, Unary};
use stackflow_core::plugin;
use stackflow_core::registry::{Registry, Source};
use stackflow_core::Result;

/// The kind: reads its attributes into a configured block.
struct SoftClip;

impl BlockKind for SoftClip {
    fn name(&self) -> &str {
        "local.soft_clip"
    }
    fn doc(&self) -> &str {
        "limit · tanh(x / limit): a smooth clip to (−limit, limit), same shape"
    }
    fn configure(&self, attrs: &mut Attrs) -> Result<Arc<dyn Block>> {
        let limit = attrs.float_or("limit", 1.0)?;
        if !(limit.is_finite() && limit > 0.0) {
            return Err(attrs.error(format!("`limit` must be a positive number, not {limit}")));
        }
        Ok(Arc::new(SoftClipBlock { limit: limit as f32 }))
    }
    fn probes(&self) -> Vec<Probe> {
        vec![Probe::new("()", &[&[4]]), Probe::new("(limit: 0.5)", &[&[2, 3]])]
    }
}

/// A configured node.
#[derive(Debug)]
struct SoftClipBlock {
    limit: f32,
}

impl Block for SoftClipBlock {
    fn infer(&self, inputs: &[Shape]) -> std::result::Result<Inferred, String> {
        match inputs {
            [x] => Ok(Inferred { outputs: vec![x.clone()], ..Default::default() }),
            _ => Err(format!("takes one input, got {}", inputs.len())),
        }
    }

    fn forward(&self, ops: &mut dyn Ops, inputs: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let scaled = ops.unary(Unary::Scale(1.0 / self.limit), inputs[0])?;
        let squashed = ops.unary(Unary::Tanh, scaled)?;
        Ok(vec![ops.unary(Unary::Scale(self.limit), squashed)?])
    }
}

/// The built-in kinds plus this crate's and the tutorial plugin's.
fn kinds() -> Registry {
    let mut kinds = Registry::with_builtins();
    kinds.add_block(Arc::new(SoftClip), Source::BuiltIn).expect("`local.soft_clip` is a new name");
    plugin::link(&mut kinds, "tutorial", "0.1.0", |r| r.block::<custom_block_plugin::GatedConv>())
        .expect("the tutorial plugin's kinds register");
    kinds
}

fn main() -> ExitCode {
    stackflow_cli::main(kinds())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/graph.ron");

    #[test]
    fn the_graph_checks_with_the_compiled_in_kind() {
        assert_eq!(stackflow_cli::run(&kinds(), ["stackflow-local", "check", GRAPH]), 0);
    }

    #[test]
    fn without_it_the_kind_is_unknown() {
        assert_eq!(stackflow_cli::run(&Registry::with_builtins(), ["stackflow", "check", GRAPH]), 1);
    }

    #[test]
    fn it_trains() {
        let out = std::env::temp_dir().join(format!("stackflow-static-kinds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let out_s = out.to_string_lossy().to_string();
        let args = ["stackflow-local", "run", GRAPH, "--out", &out_s, "--max-steps", "2", "--quiet"];
        assert_eq!(stackflow_cli::run(&kinds(), args), 0);
        assert!(out.join("checkpoints").read_dir().is_ok_and(|mut d| d.next().is_some()));
        let _ = std::fs::remove_dir_all(&out);
    }
}
