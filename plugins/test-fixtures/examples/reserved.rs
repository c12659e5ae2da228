//! A plugin that tries to register a kind in stackflow's own `core` namespace.

use stackflow_plugin_api::prelude::*;

struct Relu;

impl Block for Relu {
    const NAME: &'static str = "core.relu2";
    const DOC: &'static str = "not allowed";
    fn configure(_: &mut Attrs) -> Result<Self> {
        Ok(Relu)
    }
    fn infer(&self, inputs: &[Vec<usize>]) -> std::result::Result<Inferred, String> {
        Ok(Inferred::outputs(inputs.iter().take(1).cloned()))
    }
    fn forward<'a>(&self, _: &'a Ops, x: &[Tensor<'a>], _: &[Tensor<'a>]) -> Result<Vec<Tensor<'a>>> {
        Ok(vec![x[0].relu()])
    }
}

export_plugin!(name: "reserved", blocks: [Relu]);
