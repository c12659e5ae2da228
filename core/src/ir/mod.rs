//! The checked graph: every net flattened into nodes in evaluation order, with every
//! value's shape inferred and every parameter laid out. Built from a [`crate::dsl::Doc`]
//! by [`build`]; after this stage no tensor operation can fail on a shape.

pub mod build;
pub mod estimate;
pub mod recipe;
pub mod set;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use build::{build, BuildOptions};
pub use recipe::{DiscriminatorPorts, GeneratorPorts, Stage};

use crate::dsl::Parsed;
use crate::error::Span;
use crate::kind::{Block, ParamSpec, Role, Shape};

/// BatchNorm behaviour of a node: follow the net's mode or force one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModeOverride {
    /// Use the mode the net runs in.
    #[default]
    Follow,
    /// Always train mode (batch statistics), as StackGAN-pytorch's frozen Stage-I.
    Train,
    /// Always eval mode (running statistics).
    Eval,
}

/// Index of a value in [`Net::values`].
pub type ValueId = usize;

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Producer {
    /// A net input, by position.
    Input(usize),
    /// Output port `port` of node `node`.
    Node {
        /// Node index.
        node: usize,
        /// Port index.
        port: usize,
    },
}

/// A value flowing along edges.
#[derive(Clone, Debug)]
pub struct Value {
    /// Per-sample shape.
    pub shape: Shape,
    /// Producer.
    pub producer: Producer,
    /// Readable name (`up1.conv`, `ca.mu`).
    pub name: String,
}

/// A parameter of the flow, shared by every net that uses it.
#[derive(Clone, Debug)]
pub struct Param {
    /// Dotted path (`g1.up1.conv.weight`).
    pub path: String,
    /// The spec from the block.
    pub spec: ParamSpec,
}

/// One node, wired and shape-checked.
#[derive(Clone)]
pub struct Node {
    /// Dotted path inside the net (`up1.conv`); embedded nets keep their own paths.
    pub path: String,
    /// Registry kind (`core.conv2d`).
    pub kind: String,
    /// The configured block.
    pub block: Arc<dyn Block>,
    /// Input values.
    pub inputs: Vec<ValueId>,
    /// Output values, in port order.
    pub outputs: Vec<ValueId>,
    /// Indices into [`Net::params`], in the block's spec order.
    pub params: Vec<usize>,
    /// Span of the node in the graph file.
    pub span: Span,
    /// Parameters of this node are not trained by this net.
    pub frozen: bool,
    /// BatchNorm mode override.
    pub mode: ModeOverride,
    /// Forward FLOPs per sample.
    pub flops: u64,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// A checked net: nodes in a valid evaluation order.
#[derive(Clone, Debug)]
pub struct Net {
    /// Net name (`g1`).
    pub name: String,
    /// Input names and values, in declaration order.
    pub inputs: Vec<(String, ValueId)>,
    /// Output names and values.
    pub outputs: Vec<(String, ValueId)>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Every value.
    pub values: Vec<Value>,
    /// Parameters used by this net (own and embedded), in first-use order.
    pub params: Vec<Param>,
    /// Span of the net definition.
    pub span: Span,
}

impl Net {
    /// The value id of a named output.
    pub fn output(&self, name: &str) -> Option<ValueId> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The value id of a named input.
    pub fn input(&self, name: &str) -> Option<ValueId> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Indices of params the net trains (trainable, used by a non-frozen node).
    pub fn trainable_params(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .nodes
            .iter()
            .filter(|n| !n.frozen)
            .flat_map(|n| n.params.iter().copied())
            .filter(|&p| self.params[p].spec.role == Role::Trainable)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Indices of trainable params of frozen nodes.
    pub fn frozen_params(&self) -> Vec<usize> {
        let trained = self.trainable_params();
        (0..self.params.len())
            .filter(|p| self.params[*p].spec.role == Role::Trainable && !trained.contains(p))
            .collect()
    }
}

/// A checked flow: every net, the vars after overrides, and the parsed file.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The parsed file (for spans in later errors).
    pub parsed: Arc<Parsed>,
    /// Final variable values.
    pub vars: BTreeMap<String, i64>,
    /// Nets by name, in file order.
    pub nets: Vec<Net>,
    /// The recipe's stages on these nets, in recipe order.
    pub stages: Vec<Stage>,
}

impl Flow {
    /// A net by name.
    pub fn net(&self, name: &str) -> Option<&Net> {
        self.nets.iter().find(|n| n.name == name)
    }
}
