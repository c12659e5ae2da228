//! Shapes and what a block's shape inference returns: output shapes, parameter specs
//! and FLOPs.

use std::fmt;

/// A per-sample tensor shape (the batch dimension is implicit).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Shape(pub Vec<usize>);

/// No per-sample value may hold more elements than this (2^36).
pub const MAX_ELEMENTS: u128 = 1 << 36;

impl Shape {
    /// A shape from dims.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }

    /// Number of dims (without batch).
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements per sample.
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// Dims as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Whether the shape stays under [`MAX_ELEMENTS`] (overflow-safe).
    pub fn is_sane(&self) -> bool {
        self.0.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128)).is_some_and(|n| n <= MAX_ELEMENTS)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// How a parameter is initialised: the plugin API's type, so built-in and plugin blocks
/// declare parameters alike.
pub use stackflow_plugin_api::Init;

/// Whether a tensor is trained or a statistic (BatchNorm running mean/var).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Updated by the optimiser.
    Trainable,
    /// Updated by the forward pass (running statistics); saved in checkpoints.
    Buffer,
}

/// A parameter a block asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Local name (`weight`, `running_mean`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initialiser.
    pub init: Init,
    /// Trainable or buffer.
    pub role: Role,
}

impl ParamSpec {
    /// A trainable parameter.
    pub fn trainable(name: &str, shape: impl Into<Vec<usize>>, init: Init) -> Self {
        Self { name: name.into(), shape: shape.into(), init, role: Role::Trainable }
    }

    /// A buffer (running statistic).
    pub fn buffer(name: &str, shape: impl Into<Vec<usize>>, init: Init) -> Self {
        Self { name: name.into(), shape: shape.into(), init, role: Role::Buffer }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What shape inference of one block returns.
#[derive(Clone, Debug, Default)]
pub struct Inferred {
    /// Shapes of the output ports, in port order.
    pub outputs: Vec<Shape>,
    /// Parameters (trainable first by convention, then buffers).
    pub params: Vec<ParamSpec>,
    /// Forward FLOPs per sample (2 per multiply-add; element-wise ops not counted).
    pub flops: u64,
}
