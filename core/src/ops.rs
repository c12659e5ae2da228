//! The tensor operations a block's forward may call, on opaque handles. The executor
//! implements it on a dfdx device and tape; the plugin ABI forwards to it. Shapes here
//! include the batch dimension. Every method checks its shapes and returns an error
//! rather than panic, because plugins call it too.

use crate::error::Result;
pub use crate::kernels::pool2d::PoolKind;

/// Opaque handle to a tensor living in an executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tensor(pub u32);

/// Element-wise unary operations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// max(x, 0)
    Relu,
    /// x if x > 0 else slope·x
    LeakyRelu(f32),
    /// tanh
    Tanh,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// e^x
    Exp,
    /// ln x
    Ln,
    /// −x
    Neg,
    /// x²
    Square,
    /// √x
    Sqrt,
    /// |x|
    Abs,
    /// a·x
    Scale(f32),
    /// x + a
    AddScalar(f32),
    /// min(max(x, lo), hi)
    Clamp(f32, f32),
    /// x·Φ(x) with the exact normal CDF (PyTorch's default GELU)
    Gelu,
}

/// Element-wise binary operations on equal shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
}

/// Reductions along one axis ([`Ops::reduce_axis`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Σ
    Sum,
    /// Σ / n
    Mean,
    /// max (the gradient goes to every position holding the maximum)
    Max,
}

/// Element-wise comparisons ([`Ops::compare`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// a > b
    Gt,
    /// a ≥ b
    Ge,
    /// a < b
    Lt,
    /// a ≤ b
    Le,
    /// a = b
    Eq,
    /// a ≠ b
    Ne,
}

/// Distribution of sampled noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Noise {
    /// N(0, 1).
    Normal,
    /// N(0, 1) re-drawn until |x| < bound.
    TruncatedNormal(f32),
}

/// The running statistics of a BatchNorm node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnStats {
    /// Running mean [C].
    pub mean: Tensor,
    /// Running variance [C].
    pub var: Tensor,
    /// Number of train-mode calls [1].
    pub count: Tensor,
}

/// Tensor operations available to block forwards.
pub trait Ops {
    /// Full shape (batch first).
    fn shape(&self, t: Tensor) -> Result<Vec<usize>>;
    /// Whether BatchNorm-like blocks should use batch statistics now.
    fn training(&self) -> bool;
    /// y = x·wᵀ + b for x [B, in], w [out, in], b [out].
    fn linear(&mut self, x: Tensor, w: Tensor, b: Option<Tensor>) -> Result<Tensor>;
    /// Batched matrix product [B, M, K] × [B, K, N] → [B, M, N].
    fn matmul(&mut self, a: Tensor, b: Tensor) -> Result<Tensor>;
    /// 2-d convolution of x [B, C, H, W] with w [O, C, kh, kw], zero padding
    /// `(rows, columns)` on both sides of each axis.
    fn conv2d(
        &mut self,
        x: Tensor,
        w: Tensor,
        b: Option<Tensor>,
        stride: usize,
        padding: (usize, usize),
    ) -> Result<Tensor>;
    /// BatchNorm over all dims but 1. In train mode it normalises with batch statistics
    /// and updates `stats` (running mean, unbiased running variance, call counter).
    fn batch_norm(
        &mut self,
        x: Tensor,
        gamma: Tensor,
        beta: Tensor,
        stats: BnStats,
        momentum: f32,
        eps: f32,
    ) -> Result<Tensor>;
    /// Element-wise unary op.
    fn unary(&mut self, op: Unary, x: Tensor) -> Result<Tensor>;
    /// Element-wise binary op on equal shapes.
    fn binary(&mut self, op: Binary, a: Tensor, b: Tensor) -> Result<Tensor>;
    /// Nearest-neighbour upsampling of [B, C, H, W] by an integer factor.
    fn upsample_nearest(&mut self, x: Tensor, scale: usize) -> Result<Tensor>;
    /// Pooling of [B, C, H, W] over `kernel×kernel` windows moved by `stride`, `padding`
    /// on every side (at most half the window).
    fn pool2d(&mut self, x: Tensor, kind: PoolKind, kernel: usize, stride: usize, padding: usize) -> Result<Tensor>;
    /// Bilinear resizing of [B, C, H, W] to `size` (PyTorch, `align_corners=False`).
    fn resize_bilinear(&mut self, x: Tensor, size: (usize, usize)) -> Result<Tensor>;
    /// Concatenate along `axis` (0 is the batch).
    fn concat(&mut self, xs: &[Tensor], axis: usize) -> Result<Tensor>;
    /// Rows of the batch axis, in the given order (repeats allowed).
    fn select_rows(&mut self, x: Tensor, rows: &[usize]) -> Result<Tensor>;
    /// Elements `start..end` along `axis`.
    fn slice(&mut self, x: Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor>;
    /// Same elements, new shape.
    fn reshape(&mut self, x: Tensor, shape: &[usize]) -> Result<Tensor>;
    /// [B, C] → [B, C, H, W] by repetition.
    fn replicate(&mut self, x: Tensor, h: usize, w: usize) -> Result<Tensor>;
    /// Swap axes `a` and `b` (ranks 2–4, batch axis included); the result is contiguous.
    fn transpose(&mut self, x: Tensor, a: usize, b: usize) -> Result<Tensor>;
    /// Layer normalisation over the last axis (ranks 2–3): `(x − mean) / √(var + eps)`,
    /// times `weight` plus `bias` (both [D]).
    fn layer_norm(&mut self, x: Tensor, weight: Tensor, bias: Tensor, eps: f32) -> Result<Tensor>;
    /// Softmax along the last axis.
    fn softmax(&mut self, x: Tensor) -> Result<Tensor>;
    /// Group normalisation of [B, C, …] (ranks 3–4): each sample's channels in `groups`
    /// groups of C/groups, normalised over the group's channels and every axis after
    /// them, `(x − mean) / √(var + eps)`, times `weight` plus `bias` (both [C]).
    /// `groups` = C is instance normalisation, 1 layer normalisation over (C, …).
    fn group_norm(&mut self, x: Tensor, groups: usize, weight: Tensor, bias: Tensor, eps: f32) -> Result<Tensor>;
    /// Reduction along `axis` (0 is the batch), kept with length 1.
    fn reduce_axis(&mut self, x: Tensor, op: Reduce, axis: usize) -> Result<Tensor>;
    /// 1 where `op(a, b)` holds, else 0, on equal shapes; no gradient flows back.
    fn compare(&mut self, op: Compare, a: Tensor, b: Tensor) -> Result<Tensor>;
    /// `a` where `cond` ≠ 0, else `b` (equal shapes); gradients flow to `a` and `b`.
    fn select(&mut self, cond: Tensor, a: Tensor, b: Tensor) -> Result<Tensor>;
    /// Sum of all elements → shape [1].
    fn sum(&mut self, x: Tensor) -> Result<Tensor>;
    /// Mean of all elements → shape [1].
    fn mean(&mut self, x: Tensor) -> Result<Tensor>;
    /// Same values, no gradient flows back.
    fn detach(&mut self, x: Tensor) -> Result<Tensor>;
    /// Overwrite a buffer parameter of the net being run (a running statistic, spectral
    /// norm's `u`, a moving average) with `value`'s values, as a constant: it is saved to
    /// the parameter store when the net's run ends and read by later runs. Blocks decide
    /// when to write (usually only in train mode); returns the buffer's handle.
    fn assign(&mut self, buffer: Tensor, value: Tensor) -> Result<Tensor>;
    /// Noise for the node at `name` (a test or the trainer may supply it).
    fn noise(&mut self, name: &str, shape: &[usize], dist: Noise) -> Result<Tensor>;
    /// A constant from host data.
    fn constant(&mut self, data: &[f32], shape: &[usize]) -> Result<Tensor>;
    /// Copy values to the host.
    fn read(&mut self, t: Tensor) -> Result<Vec<f32>>;
    /// Path of the node being run (for noise names and messages).
    fn node_path(&self) -> &str;
}
