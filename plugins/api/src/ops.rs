//! Tensors as a plugin sees them: handles into the host's executor with operator
//! overloading. Every operation runs in the host (on its device, recorded on its tape).
//!
//! Errors are sticky so that arithmetic reads like arithmetic: an operation that fails
//! (a shape mismatch reported by the host) records the first error in [`Ops`] and yields a
//! poisoned tensor; later operations on poisoned tensors do nothing. The export wrapper
//! checks [`Ops`] after the plugin returns, so the first error always reaches the user.

use std::cell::RefCell;
use std::ffi::c_void;
use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::abi::{self, HostV1, SinkV1, Str, OK};
use crate::error::{Error, Result};

const POISON: u32 = abi::NO_TENSOR;

/// The most elements a tensor made in the plugin ([`Ops::full`]) may have: 2³¹ (8 GiB of f32).
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Noise distributions the host can draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Noise {
    /// N(0, 1).
    Normal,
    /// N(0, 1) re-drawn until |x| < bound.
    TruncatedNormal(f32),
}

/// The host's tensor operations for one call (a block forward or a loss).
pub struct Ops {
    host: &'static HostV1,
    ctx: *mut c_void,
    error: RefCell<Option<Error>>,
}

/// A tensor in the host, valid during the call that produced it. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Tensor<'a> {
    ops: &'a Ops,
    id: u32,
}

/// BatchNorm's running statistics: buffers the block declares and the host updates in
/// train mode.
#[derive(Clone, Copy, Debug)]
pub struct BnStats<'a> {
    /// Running mean, `[C]`.
    pub mean: Tensor<'a>,
    /// Running variance, `[C]`.
    pub var: Tensor<'a>,
    /// Batches seen, `[1]`.
    pub count: Tensor<'a>,
}

impl std::fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({})", self.id)
    }
}

pub(crate) unsafe extern "C" fn collect_str(ctx: *mut c_void, s: Str) {
    let out = &mut *(ctx as *mut Vec<String>);
    out.push(s.to_string_lossy());
}

impl Ops {
    /// Wrap the host's call context.
    ///
    /// # Safety
    /// `host` must be the host table and `ctx` the context the host passed to this call.
    pub unsafe fn from_raw(host: &'static HostV1, ctx: *mut c_void) -> Self {
        Self { host, ctx, error: RefCell::new(None) }
    }

    /// The first error of this call, if any; clears it.
    pub fn take_error(&self) -> Option<Error> {
        self.error.borrow_mut().take()
    }

    /// `Err` with the first failed operation's message, if one failed.
    pub fn check(&self) -> Result<()> {
        match &*self.error.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn failed(&self) -> bool {
        self.error.borrow().is_some()
    }

    fn fail(&self, e: Error) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn host_error(&self, op: &str) -> Error {
        let mut parts: Vec<String> = Vec::new();
        let sink = SinkV1 { ctx: &mut parts as *mut Vec<String> as *mut c_void, write: collect_str };
        // SAFETY: the host table and context are live for this call.
        unsafe { (self.host.last_error)(self.ctx, &sink) };
        let msg = parts.concat();
        Error::new(if msg.is_empty() { format!("{op} failed in the host") } else { msg })
    }

    /// Run one host function that produces a tensor.
    fn make<'a>(&'a self, op: &str, inputs: &[u32], f: impl FnOnce(*mut c_void, &mut u32) -> i32) -> Tensor<'a> {
        if self.failed() || inputs.contains(&POISON) {
            return Tensor { ops: self, id: POISON };
        }
        let mut out = POISON;
        let st = f(self.ctx, &mut out);
        if st != OK {
            self.fail(self.host_error(op));
            return Tensor { ops: self, id: POISON };
        }
        Tensor { ops: self, id: out }
    }

    /// A tensor wrapping a handle the host gave (inputs, parameters, D outputs).
    pub fn handle(&self, id: u32) -> Tensor<'_> {
        Tensor { ops: self, id }
    }

    /// Whether BatchNorm-like blocks should use batch statistics.
    pub fn training(&self) -> bool {
        // SAFETY: live table and context.
        unsafe { (self.host.training)(self.ctx) != 0 }
    }

    /// Path of the node being run (`d1.attn`); empty outside a block forward.
    pub fn node_path(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let sink = SinkV1 { ctx: &mut parts as *mut Vec<String> as *mut c_void, write: collect_str };
        // SAFETY: live table and context; the sink outlives the call.
        unsafe { (self.host.node_path)(self.ctx, &sink) };
        parts.concat()
    }

    /// A constant from host data (C order); `shape` includes the batch dimension.
    pub fn constant(&self, data: &[f32], shape: &[usize]) -> Tensor<'_> {
        // SAFETY: the pointers are valid for the call.
        self.make("constant", &[], |ctx, out| unsafe {
            (self.host.constant)(ctx, data.as_ptr(), data.len(), shape.as_ptr(), shape.len(), out)
        })
    }

    /// A constant filled with `value`; more than [`MAX_ELEMENTS`] elements is an error.
    pub fn full(&self, shape: &[usize], value: f32) -> Tensor<'_> {
        match shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).filter(|&n| n <= MAX_ELEMENTS) {
            Some(n) => self.constant(&vec![value; n], shape),
            None => {
                self.fail(Error::new(format!("full: shape {shape:?} has more than {MAX_ELEMENTS} elements")));
                Tensor { ops: self, id: POISON }
            }
        }
    }

    /// Noise for this node (a test or the trainer may supply it by the node's path).
    pub fn noise(&self, shape: &[usize], dist: Noise) -> Tensor<'_> {
        let name = self.node_path();
        self.noise_named(&name, shape, dist)
    }

    /// Noise under an explicit name.
    pub fn noise_named(&self, name: &str, shape: &[usize], dist: Noise) -> Tensor<'_> {
        let (d, p) = match dist {
            Noise::Normal => (abi::noise::NORMAL, 0.0),
            Noise::TruncatedNormal(b) => (abi::noise::TRUNCATED_NORMAL, b),
        };
        // SAFETY: the pointers are valid for the call.
        self.make("noise", &[], |ctx, out| unsafe {
            (self.host.noise)(ctx, Str::new(name), d, p, shape.as_ptr(), shape.len(), out)
        })
    }

    /// Concatenate along `axis` (0 is the batch).
    pub fn concat<'a>(&'a self, xs: &[Tensor<'a>], axis: usize) -> Tensor<'a> {
        let ids: Vec<u32> = xs.iter().map(|t| t.id).collect();
        // SAFETY: the pointers are valid for the call.
        self.make("concat", &ids, |ctx, out| unsafe { (self.host.concat)(ctx, ids.as_ptr(), ids.len(), axis, out) })
    }
}

impl<'a> Tensor<'a> {
    /// The host handle.
    pub fn id(self) -> u32 {
        self.id
    }

    /// The [`Ops`] this tensor belongs to.
    pub fn ops(self) -> &'a Ops {
        self.ops
    }

    fn host(self) -> &'static HostV1 {
        self.ops.host
    }

    fn un(self, op: u32, a: f32, b: f32) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("unary op", &[self.id], |ctx, out| unsafe { (h.unary)(ctx, op, a, b, self.id, out) })
    }

    fn bin(self, op: u32, other: Tensor<'a>) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops
            .make("binary op", &[self.id, other.id], |ctx, out| unsafe { (h.binary)(ctx, op, self.id, other.id, out) })
    }

    /// Full shape (batch first); empty if this tensor is poisoned or the host refuses.
    pub fn shape(self) -> Vec<usize> {
        self.try_shape().unwrap_or_else(|e| {
            self.ops.fail(e);
            Vec::new()
        })
    }

    /// Full shape, or the error.
    pub fn try_shape(self) -> Result<Vec<usize>> {
        self.ops.check()?;
        if self.id == POISON {
            return Err(Error::new("shape of a failed tensor"));
        }
        let mut dims = [0usize; 8];
        let mut rank = 0usize;
        // SAFETY: `dims` has capacity 8 and outlives the call.
        let st = unsafe { (self.host().shape)(self.ops.ctx, self.id, dims.as_mut_ptr(), dims.len(), &mut rank) };
        if st != OK {
            return Err(self.ops.host_error("shape"));
        }
        Ok(dims[..rank.min(8)].to_vec())
    }

    /// Copy the values to the plugin (C order).
    pub fn read(self) -> Result<Vec<f32>> {
        let n: usize = self.try_shape()?.iter().product();
        let mut data = vec![0f32; n];
        let mut len = 0usize;
        // SAFETY: `data` has capacity `n` and outlives the call.
        let st = unsafe { (self.host().read)(self.ops.ctx, self.id, data.as_mut_ptr(), n, &mut len) };
        if st != OK {
            return Err(self.ops.host_error("read"));
        }
        data.truncate(len.min(n));
        Ok(data)
    }

    /// max(x, 0)
    pub fn relu(self) -> Tensor<'a> {
        self.un(abi::unary::RELU, 0.0, 0.0)
    }
    /// x if x > 0 else slope·x
    pub fn leaky_relu(self, slope: f32) -> Tensor<'a> {
        self.un(abi::unary::LEAKY_RELU, slope, 0.0)
    }
    /// tanh x
    pub fn tanh(self) -> Tensor<'a> {
        self.un(abi::unary::TANH, 0.0, 0.0)
    }
    /// 1 / (1 + e^−x)
    pub fn sigmoid(self) -> Tensor<'a> {
        self.un(abi::unary::SIGMOID, 0.0, 0.0)
    }
    /// e^x
    pub fn exp(self) -> Tensor<'a> {
        self.un(abi::unary::EXP, 0.0, 0.0)
    }
    /// ln x
    pub fn ln(self) -> Tensor<'a> {
        self.un(abi::unary::LN, 0.0, 0.0)
    }
    /// x²
    pub fn square(self) -> Tensor<'a> {
        self.un(abi::unary::SQUARE, 0.0, 0.0)
    }
    /// √x
    pub fn sqrt(self) -> Tensor<'a> {
        self.un(abi::unary::SQRT, 0.0, 0.0)
    }
    /// |x|
    pub fn abs(self) -> Tensor<'a> {
        self.un(abi::unary::ABS, 0.0, 0.0)
    }
    /// min(max(x, lo), hi)
    pub fn clamp(self, lo: f32, hi: f32) -> Tensor<'a> {
        self.un(abi::unary::CLAMP, lo, hi)
    }

    /// y = x·wᵀ + b for x [B, in], w [out, in], b `[out]`.
    pub fn linear(self, w: Tensor<'a>, b: Option<Tensor<'a>>) -> Tensor<'a> {
        let (h, bid) = (self.host(), b.map_or(abi::NO_TENSOR, |t| t.id));
        let mut ins = vec![self.id, w.id];
        ins.extend(b.map(|t| t.id));
        // SAFETY: live table and context.
        self.ops.make("linear", &ins, |ctx, out| unsafe { (h.linear)(ctx, self.id, w.id, bid, out) })
    }

    /// Batched matrix product [B, M, K] × [B, K, N] → [B, M, N].
    pub fn matmul(self, b: Tensor<'a>) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("matmul", &[self.id, b.id], |ctx, out| unsafe { (h.matmul)(ctx, self.id, b.id, out) })
    }

    /// 2-d convolution of [B, C, H, W] with w [O, C, kh, kw] and zero padding.
    pub fn conv2d(self, w: Tensor<'a>, b: Option<Tensor<'a>>, stride: usize, padding: usize) -> Tensor<'a> {
        let (h, bid) = (self.host(), b.map_or(abi::NO_TENSOR, |t| t.id));
        let mut ins = vec![self.id, w.id];
        ins.extend(b.map(|t| t.id));
        // SAFETY: live table and context.
        self.ops.make("conv2d", &ins, |ctx, out| unsafe { (h.conv2d)(ctx, self.id, w.id, bid, stride, padding, out) })
    }

    /// BatchNorm over all dims but 1 with trainable `gamma`, `beta` and the running
    /// statistics `stats` (declare them as buffers); updates them in train mode.
    pub fn batch_norm(
        self,
        gamma: Tensor<'a>,
        beta: Tensor<'a>,
        stats: BnStats<'a>,
        momentum: f32,
        eps: f32,
    ) -> Tensor<'a> {
        let h = self.host();
        let BnStats { mean, var, count } = stats;
        let ins = [self.id, gamma.id, beta.id, mean.id, var.id, count.id];
        let args = abi::BatchNormV1 {
            x: self.id,
            gamma: gamma.id,
            beta: beta.id,
            mean: mean.id,
            var: var.id,
            count: count.id,
            momentum,
            eps,
        };
        // SAFETY: live table and context; `args` outlives the call.
        self.ops.make("batch_norm", &ins, |ctx, out| unsafe { (h.batch_norm)(ctx, &args, out) })
    }

    /// Nearest-neighbour upsampling of [B, C, H, W] by an integer factor.
    pub fn upsample_nearest(self, scale: usize) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops
            .make("upsample_nearest", &[self.id], |ctx, out| unsafe { (h.upsample_nearest)(ctx, self.id, scale, out) })
    }

    /// Max pooling of [B, C, H, W] over `kernel`² windows moved by `stride`, with
    /// `padding` (at most `kernel`/2) that never wins. Host API revision 2.
    pub fn max_pool2d(self, kernel: usize, stride: usize, padding: usize) -> Tensor<'a> {
        self.pool(abi::pool::MAX, kernel, stride, padding)
    }

    /// Average pooling of [B, C, H, W]; `count_padding` divides by the whole window (else
    /// by its input pixels: PyTorch's `count_include_pad=False`). Host API revision 2.
    pub fn avg_pool2d(self, kernel: usize, stride: usize, padding: usize, count_padding: bool) -> Tensor<'a> {
        let kind = if count_padding { abi::pool::AVG } else { abi::pool::AVG_EXCLUDE_PADDING };
        self.pool(kind, kernel, stride, padding)
    }

    fn pool(self, kind: u32, kernel: usize, stride: usize, padding: usize) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context; a plugin of API revision 2 loads only on hosts
        // that have this function.
        self.ops.make("pool2d", &[self.id], |ctx, out| unsafe {
            (h.pool2d)(ctx, self.id, kind, kernel, stride, padding, out)
        })
    }

    /// Bilinear resizing of [B, C, H, W] to `h`×`w` (PyTorch's `interpolate`,
    /// `align_corners=False`). Host API revision 2.
    pub fn resize_bilinear(self, h: usize, w: usize) -> Tensor<'a> {
        let host = self.host();
        // SAFETY: as for `pool`.
        self.ops
            .make("resize_bilinear", &[self.id], |ctx, out| unsafe { (host.resize_bilinear)(ctx, self.id, h, w, out) })
    }

    /// Sum along `axis` (0 is the batch), kept with length 1. Host API revision 3.
    pub fn sum_axis(self, axis: usize) -> Tensor<'a> {
        self.reduce_axis(abi::reduce::SUM, axis)
    }

    /// Mean along `axis`, kept with length 1. Host API revision 3.
    pub fn mean_axis(self, axis: usize) -> Tensor<'a> {
        self.reduce_axis(abi::reduce::MEAN, axis)
    }

    /// Maximum along `axis`, kept with length 1; the gradient goes to every position
    /// holding it. Host API revision 3.
    pub fn max_axis(self, axis: usize) -> Tensor<'a> {
        self.reduce_axis(abi::reduce::MAX, axis)
    }

    fn reduce_axis(self, op: u32, axis: usize) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context; a plugin of API revision 3 loads only on hosts
        // that have this function (as for every revision-3 function below).
        self.ops.make("reduce_axis", &[self.id], |ctx, out| unsafe { (h.reduce_axis)(ctx, op, self.id, axis, out) })
    }

    /// 1 where `self > other`, else 0 (equal shapes; no gradient). Host API revision 3.
    pub fn gt(self, other: Tensor<'a>) -> Tensor<'a> {
        self.compare(abi::compare::GT, other)
    }

    /// 1 where `self < other`, else 0. Host API revision 3.
    pub fn lt(self, other: Tensor<'a>) -> Tensor<'a> {
        self.compare(abi::compare::LT, other)
    }

    /// 1 where the comparison `op` (from [`abi::compare`]) holds, else 0. Host API revision 3.
    pub fn compare(self, op: u32, other: Tensor<'a>) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: as for `reduce_axis`.
        self.ops
            .make("compare", &[self.id, other.id], |ctx, out| unsafe { (h.compare)(ctx, op, self.id, other.id, out) })
    }

    /// `a` where `self` ≠ 0, else `b` (equal shapes); gradients flow to `a` and `b`. Host
    /// API revision 3.
    pub fn select(self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: as for `reduce_axis`.
        self.ops.make("select", &[self.id, a.id, b.id], |ctx, out| unsafe { (h.select)(ctx, self.id, a.id, b.id, out) })
    }

    /// Group normalisation of [B, C, …] (ranks 3–4) in `groups` groups of channels, times
    /// `weight` plus `bias` (both `[C]`; `groups` = C is instance normalisation). Host API
    /// revision 3.
    pub fn group_norm(self, groups: usize, weight: Tensor<'a>, bias: Tensor<'a>, eps: f32) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: as for `reduce_axis`.
        self.ops.make("group_norm", &[self.id, weight.id, bias.id], |ctx, out| unsafe {
            (h.group_norm)(ctx, self.id, groups, weight.id, bias.id, eps, out)
        })
    }

    /// Layer normalisation over the last axis (ranks 2–3), times `weight` plus `bias`
    /// (`[D]`). Host API revision 3.
    pub fn layer_norm(self, weight: Tensor<'a>, bias: Tensor<'a>, eps: f32) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: as for `reduce_axis`.
        self.ops.make("layer_norm", &[self.id, weight.id, bias.id], |ctx, out| unsafe {
            (h.layer_norm)(ctx, self.id, weight.id, bias.id, eps, out)
        })
    }

    /// Swap axes `a` and `b` (ranks 2–4, the batch axis included). Host API revision 3.
    pub fn transpose(self, a: usize, b: usize) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: as for `reduce_axis`.
        self.ops.make("transpose", &[self.id], |ctx, out| unsafe { (h.transpose)(ctx, self.id, a, b, out) })
    }

    /// Rows of the batch axis, in the given order (repeats allowed).
    pub fn select_rows(self, rows: &[usize]) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: `rows` is valid for the call.
        self.ops.make("select_rows", &[self.id], |ctx, out| unsafe {
            (h.select_rows)(ctx, self.id, rows.as_ptr(), rows.len(), out)
        })
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(self, axis: usize, start: usize, end: usize) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("slice", &[self.id], |ctx, out| unsafe { (h.slice)(ctx, self.id, axis, start, end, out) })
    }

    /// Same elements, new full shape (batch included).
    pub fn reshape(self, shape: &[usize]) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: `shape` is valid for the call.
        self.ops.make("reshape", &[self.id], |ctx, out| unsafe {
            (h.reshape)(ctx, self.id, shape.as_ptr(), shape.len(), out)
        })
    }

    /// Reorder axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(self, perm: &[usize]) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: `perm` is valid for the call.
        self.ops.make("permute", &[self.id], |ctx, out| unsafe {
            (h.permute)(ctx, self.id, perm.as_ptr(), perm.len(), out)
        })
    }

    /// Swap the last two axes (a batch of matrices transposed).
    pub fn t(self) -> Tensor<'a> {
        let rank = self.shape().len();
        if rank < 2 {
            self.ops.fail(Error::new(format!("t() needs rank >= 2, got rank {rank}")));
            return Tensor { ops: self.ops, id: POISON };
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(rank - 1, rank - 2);
        self.permute(&perm)
    }

    /// Broadcast to a full shape (numpy rules: dims aligned from the last, 1s repeat).
    pub fn broadcast_to(self, shape: &[usize]) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: `shape` is valid for the call.
        self.ops.make("broadcast", &[self.id], |ctx, out| unsafe {
            (h.broadcast)(ctx, self.id, shape.as_ptr(), shape.len(), out)
        })
    }

    /// [B, C] → [B, C, H, W] by repetition.
    pub fn replicate(self, hgt: usize, wid: usize) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("replicate", &[self.id], |ctx, out| unsafe { (h.replicate)(ctx, self.id, hgt, wid, out) })
    }

    /// Softmax along the last axis.
    pub fn softmax(self) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("softmax", &[self.id], |ctx, out| unsafe { (h.softmax)(ctx, self.id, out) })
    }

    /// Sum of all elements → `[1]`.
    pub fn sum(self) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("sum", &[self.id], |ctx, out| unsafe { (h.reduce)(ctx, abi::reduce::SUM, self.id, out) })
    }

    /// Mean of all elements → `[1]`.
    pub fn mean(self) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("mean", &[self.id], |ctx, out| unsafe { (h.reduce)(ctx, abi::reduce::MEAN, self.id, out) })
    }

    /// Overwrite this buffer (a parameter declared with [`crate::ParamSpec::buffer`]) with
    /// `value`'s values, same shape, as a constant: the host saves it when the net's run
    /// ends, so the next forward reads it (spectral norm's `u`, a moving average). Write
    /// only in train mode ([`Ops::training`]) unless the block means otherwise. Since API
    /// revision 4.
    pub fn assign(self, value: Tensor<'a>) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("assign", &[self.id, value.id], |ctx, out| unsafe { (h.assign)(ctx, self.id, value.id, out) })
    }

    /// Same values, no gradient flows back.
    pub fn detach(self) -> Tensor<'a> {
        let h = self.host();
        // SAFETY: live table and context.
        self.ops.make("detach", &[self.id], |ctx, out| unsafe { (h.detach)(ctx, self.id, out) })
    }
}

macro_rules! bin_op {
    ($tr:ident, $m:ident, $code:expr) => {
        impl<'a> $tr for Tensor<'a> {
            type Output = Tensor<'a>;
            fn $m(self, rhs: Tensor<'a>) -> Tensor<'a> {
                self.bin($code, rhs)
            }
        }
    };
}
bin_op!(Add, add, abi::binary::ADD);
bin_op!(Sub, sub, abi::binary::SUB);
bin_op!(Mul, mul, abi::binary::MUL);
bin_op!(Div, div, abi::binary::DIV);

impl<'a> Add<f32> for Tensor<'a> {
    type Output = Tensor<'a>;
    fn add(self, a: f32) -> Tensor<'a> {
        self.un(abi::unary::ADD_SCALAR, a, 0.0)
    }
}

impl<'a> Sub<f32> for Tensor<'a> {
    type Output = Tensor<'a>;
    fn sub(self, a: f32) -> Tensor<'a> {
        self.un(abi::unary::ADD_SCALAR, -a, 0.0)
    }
}

impl<'a> Mul<f32> for Tensor<'a> {
    type Output = Tensor<'a>;
    fn mul(self, a: f32) -> Tensor<'a> {
        self.un(abi::unary::SCALE, a, 0.0)
    }
}

impl<'a> Div<f32> for Tensor<'a> {
    type Output = Tensor<'a>;
    fn div(self, a: f32) -> Tensor<'a> {
        self.un(abi::unary::SCALE, 1.0 / a, 0.0)
    }
}

impl<'a> Neg for Tensor<'a> {
    type Output = Tensor<'a>;
    fn neg(self) -> Tensor<'a> {
        self.un(abi::unary::NEG, 0.0, 0.0)
    }
}

impl<'a> Add<Tensor<'a>> for f32 {
    type Output = Tensor<'a>;
    fn add(self, t: Tensor<'a>) -> Tensor<'a> {
        t + self
    }
}

impl<'a> Sub<Tensor<'a>> for f32 {
    type Output = Tensor<'a>;
    fn sub(self, t: Tensor<'a>) -> Tensor<'a> {
        -t + self
    }
}

impl<'a> Mul<Tensor<'a>> for f32 {
    type Output = Tensor<'a>;
    fn mul(self, t: Tensor<'a>) -> Tensor<'a> {
        t * self
    }
}
