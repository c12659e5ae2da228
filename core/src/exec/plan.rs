//! What running a net for given feeds and wanted values involves, worked out before any
//! tensor is touched: the nodes to run, in order, and how many of them read each value,
//! so the runner can free a value after its last reader. A plan depends only on the net
//! and on which values are fed and wanted, never on the tensors.

use crate::error::{Error, Result};
use crate::ir::{Net, Producer, ValueId};

/// The schedule of one net run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetPlan {
    /// Indices of the nodes to run, in evaluation order.
    pub nodes: Vec<usize>,
    /// Per value: how many of the planned nodes read it.
    pub reads: Vec<usize>,
    /// The planned `core.upsample_nearest` nodes whose output one `core.conv2d` node reads
    /// and nothing else (nor the caller) does: that convolution may compute from the
    /// upsampling's input ([`crate::kernels::upsample2_conv3x3`]), so the upsampling
    /// records no backward of its own.
    pub upsamples_into_conv: Vec<usize>,
}

impl NetPlan {
    /// The nodes `wanted` depends on that the values in `fed` do not already give, with
    /// their read counts; an error names a net input that is needed but not fed.
    pub fn new(net: &Net, fed: &[ValueId], wanted: &[ValueId]) -> Result<Self> {
        let mut need = vec![false; net.nodes.len()];
        let mut stack: Vec<ValueId> = wanted.to_vec();
        let mut seen = vec![false; net.values.len()];
        while let Some(v) = stack.pop() {
            if seen[v] || fed.contains(&v) {
                continue;
            }
            seen[v] = true;
            match net.values[v].producer {
                Producer::Input(_) => {
                    return Err(Error::input(
                        "exec::missing_input",
                        format!("net `{}` needs input `{}`", net.name, net.values[v].name),
                    ));
                }
                Producer::Node { node, .. } => {
                    if !need[node] {
                        need[node] = true;
                        stack.extend(net.nodes[node].inputs.iter().copied());
                    }
                }
            }
        }
        let nodes: Vec<usize> = (0..net.nodes.len()).filter(|&i| need[i]).collect();
        let mut reads = vec![0usize; net.values.len()];
        for &i in &nodes {
            net.nodes[i].inputs.iter().for_each(|&v| reads[v] += 1);
        }
        let upsamples_into_conv = nodes
            .iter()
            .copied()
            .filter(|&u| {
                let node = &net.nodes[u];
                let [v] = node.outputs[..] else { return false };
                node.kind == "core.upsample_nearest"
                    && reads[v] == 1
                    && !wanted.contains(&v)
                    && nodes.iter().any(|&r| net.nodes[r].kind == "core.conv2d" && net.nodes[r].inputs == [v])
            })
            .collect();
        Ok(Self { nodes, reads, upsamples_into_conv })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::SourceFile;
    use crate::registry::Registry;

    fn tiny_d1() -> Net {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/graphs/tiny.ron")).unwrap();
        let parsed = crate::dsl::parse(SourceFile::new("tiny.ron", text)).unwrap();
        let flow = crate::ir::build(Arc::new(parsed), &Registry::with_builtins(), &crate::ir::BuildOptions::default())
            .unwrap();
        flow.net("d1").unwrap().clone()
    }

    #[test]
    fn a_plan_runs_only_what_the_wanted_values_need() {
        let d = tiny_d1();
        let (img, code, prob) = (d.input("img").unwrap(), d.output("code").unwrap(), d.output("cond_prob").unwrap());
        let paths = |p: &NetPlan| p.nodes.iter().map(|&i| d.nodes[i].path.clone()).collect::<Vec<_>>();
        let encoder = NetPlan::new(&d, &[img], &[code]).unwrap();
        assert_eq!(paths(&encoder), ["e1", "e1_act", "e2", "e2_bn", "e2_act"]);
        assert_eq!(encoder.reads[img], 1);
        assert_eq!(encoder.reads[code], 0, "nothing planned reads the wanted value");
        // Fed the code, only the head runs, and it needs the condition.
        let e = NetPlan::new(&d, &[code], &[prob]).unwrap_err();
        assert_eq!(e.code_str(), "exec::missing_input");
        let head = NetPlan::new(&d, &[code, d.input("cond").unwrap()], &[prob]).unwrap();
        assert_eq!(paths(&head), ["tile", "joint", "logit", "prob", "flat"]);
        assert_eq!(head.reads[code], 1);
    }
}
