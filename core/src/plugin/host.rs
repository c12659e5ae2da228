//! The host function table a plugin calls: each entry forwards to the executor's
//! [`Ops`] through the call context, catches panics, and keeps the error for
//! `last_error`. `permute` and `broadcast` are composites (a gather on the flattened
//! tensor), so their gradients come from the executor's gather.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use stackflow_plugin_api::abi::{self, BatchNormV1, HostV1, SinkV1, Status, Str, ERR, OK};

use crate::error::{Error, Result};
use crate::ops::{Binary, BnStats, Compare, Noise, Ops, PoolKind, Reduce, Tensor, Unary};

/// The context of one plugin call that may run tensor ops.
pub(crate) struct Call<'a> {
    pub ops: &'a mut dyn Ops,
    pub error: Option<Error>,
}

impl<'a> Call<'a> {
    pub fn new(ops: &'a mut dyn Ops) -> Self {
        Self { ops, error: None }
    }

    pub fn as_ctx(&mut self) -> *mut c_void {
        self as *mut Call<'a> as *mut c_void
    }
}

/// What `log` knows about the plugin that calls it.
pub(crate) struct PluginTag {
    pub name: String,
}

/// A host table for one plugin; leaked, since plugins keep it for the life of the process.
pub(crate) fn table(tag: &'static PluginTag) -> &'static HostV1 {
    Box::leak(Box::new(HostV1 {
        abi_version: abi::ABI_VERSION,
        api_version: abi::API_VERSION,
        size: std::mem::size_of::<HostV1>(),
        plugin: tag as *const PluginTag as *const c_void,
        log: h_log,
        last_error: h_last_error,
        shape: h_shape,
        training: h_training,
        node_path: h_node_path,
        constant: h_constant,
        noise: h_noise,
        read: h_read,
        unary: h_unary,
        binary: h_binary,
        linear: h_linear,
        matmul: h_matmul,
        conv2d: h_conv2d,
        batch_norm: h_batch_norm,
        upsample_nearest: h_upsample,
        concat: h_concat,
        select_rows: h_select_rows,
        slice: h_slice,
        reshape: h_reshape,
        permute: h_permute,
        broadcast: h_broadcast,
        replicate: h_replicate,
        softmax: h_softmax,
        reduce: h_reduce,
        detach: h_detach,
        pool2d: h_pool2d,
        resize_bilinear: h_resize_bilinear,
        reduce_axis: h_reduce_axis,
        compare: h_compare,
        select: h_select,
        group_norm: h_group_norm,
        layer_norm: h_layer_norm,
        transpose: h_transpose,
        assign: h_assign,
    }))
}

fn bad(op: &str, msg: impl std::fmt::Display) -> Error {
    Error::input("plugin::bad_call", format!("{op}: {msg}"))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Run `f` on the call's ops; store the handle or the error. Never unwinds.
unsafe fn run(ctx: *mut c_void, out: *mut u32, f: impl FnOnce(&mut dyn Ops) -> Result<Tensor>) -> Status {
    let Some(call) = (ctx as *mut Call).as_mut() else {
        return ERR;
    };
    let r = catch_unwind(AssertUnwindSafe(|| f(&mut *call.ops)));
    match r {
        Ok(Ok(t)) => {
            if let Some(o) = out.as_mut() {
                *o = t.0;
            }
            OK
        }
        Ok(Err(e)) => {
            call.error = Some(e);
            ERR
        }
        Err(p) => {
            call.error = Some(Error::other("plugin::host_panic", format!("the host panicked: {}", panic_message(&*p))));
            ERR
        }
    }
}

/// A slice from the plugin, refusing absurd lengths.
unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || len > (1 << 36) {
        return Err(bad(what, format!("invalid buffer ({len} elements)")));
    }
    Ok(std::slice::from_raw_parts(ptr, len))
}

unsafe fn dims<'a>(ptr: *const usize, rank: usize, what: &str) -> Result<&'a [usize]> {
    if !(1..=4).contains(&rank) {
        return Err(bad(what, format!("shapes have rank 1–4, got rank {rank}")));
    }
    slice(ptr, rank, what)
}

fn opt(t: u32) -> Option<Tensor> {
    (t != abi::NO_TENSOR).then_some(Tensor(t))
}

unsafe extern "C" fn h_log(plugin: *const c_void, level: u32, msg: Str) {
    let _ = catch_unwind(|| {
        let name = (plugin as *const PluginTag).as_ref().map_or("?", |t| t.name.as_str());
        let msg = msg.to_string_lossy();
        match level {
            abi::level::DEBUG if std::env::var_os("STACKFLOW_PLUGIN_DEBUG").is_some_and(|v| v == "1") => {
                eprintln!("plugin {name}: {msg}")
            }
            abi::level::DEBUG => {}
            abi::level::WARN => eprintln!("warning: plugin {name}: {msg}"),
            _ => eprintln!("plugin {name}: {msg}"),
        }
    });
}

unsafe extern "C" fn h_last_error(ctx: *mut c_void, out: *const SinkV1) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if let (Some(call), Some(sink)) = ((ctx as *mut Call).as_ref(), out.as_ref()) {
            if let Some(e) = &call.error {
                let m = e.message().to_string();
                (sink.write)(sink.ctx, Str::new(&m));
            }
        }
    }));
}

unsafe extern "C" fn h_shape(ctx: *mut c_void, t: u32, out: *mut usize, cap: usize, rank: *mut usize) -> Status {
    run(ctx, std::ptr::null_mut(), |ops| {
        let d = ops.shape(Tensor(t))?;
        if !rank.is_null() {
            *rank = d.len();
        }
        if !out.is_null() {
            for (i, v) in d.iter().take(cap).enumerate() {
                *out.add(i) = *v;
            }
        }
        Ok(Tensor(t))
    })
}

unsafe extern "C" fn h_training(ctx: *mut c_void) -> u32 {
    catch_unwind(AssertUnwindSafe(|| (ctx as *mut Call).as_ref().map_or(0, |c| u32::from(c.ops.training()))))
        .unwrap_or(0)
}

unsafe extern "C" fn h_node_path(ctx: *mut c_void, out: *const SinkV1) -> Status {
    run(ctx, std::ptr::null_mut(), |ops| {
        if let Some(sink) = out.as_ref() {
            let p = ops.node_path().to_string();
            (sink.write)(sink.ctx, Str::new(&p));
        }
        Ok(Tensor(abi::NO_TENSOR))
    })
}

unsafe extern "C" fn h_constant(
    ctx: *mut c_void,
    data: *const f32,
    len: usize,
    d: *const usize,
    rank: usize,
    out: *mut u32,
) -> Status {
    run(ctx, out, |ops| {
        let d = dims(d, rank, "constant")?;
        let n = d.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).unwrap_or(usize::MAX);
        if n != len {
            return Err(bad("constant", format!("{len} values for shape {d:?}")));
        }
        ops.constant(slice(data, len, "constant")?, d)
    })
}

unsafe extern "C" fn h_noise(
    ctx: *mut c_void,
    name: Str,
    dist: u32,
    param: f32,
    d: *const usize,
    rank: usize,
    out: *mut u32,
) -> Status {
    run(ctx, out, |ops| {
        let d = dims(d, rank, "noise")?;
        let dist = match dist {
            abi::noise::NORMAL => Noise::Normal,
            abi::noise::TRUNCATED_NORMAL if param.is_finite() && param > 0.0 => Noise::TruncatedNormal(param),
            _ => return Err(bad("noise", format!("unknown distribution {dist} (parameter {param})"))),
        };
        ops.noise(&name.to_string_lossy(), d, dist)
    })
}

unsafe extern "C" fn h_read(ctx: *mut c_void, t: u32, out: *mut f32, cap: usize, len: *mut usize) -> Status {
    run(ctx, std::ptr::null_mut(), |ops| {
        let v = ops.read(Tensor(t))?;
        if !out.is_null() {
            std::ptr::copy_nonoverlapping(v.as_ptr(), out, v.len().min(cap));
        }
        if !len.is_null() {
            *len = v.len();
        }
        Ok(Tensor(t))
    })
}

unsafe extern "C" fn h_unary(ctx: *mut c_void, op: u32, a: f32, b: f32, x: u32, out: *mut u32) -> Status {
    use abi::unary::*;
    run(ctx, out, |ops| {
        let u = match op {
            RELU => Unary::Relu,
            LEAKY_RELU => Unary::LeakyRelu(a),
            TANH => Unary::Tanh,
            SIGMOID => Unary::Sigmoid,
            EXP => Unary::Exp,
            LN => Unary::Ln,
            NEG => Unary::Neg,
            SQUARE => Unary::Square,
            SQRT => Unary::Sqrt,
            ABS => Unary::Abs,
            SCALE => Unary::Scale(a),
            ADD_SCALAR => Unary::AddScalar(a),
            CLAMP => Unary::Clamp(a, b),
            _ => return Err(bad("unary", format!("unknown op {op}"))),
        };
        ops.unary(u, Tensor(x))
    })
}

unsafe extern "C" fn h_binary(ctx: *mut c_void, op: u32, a: u32, b: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| {
        let o = match op {
            abi::binary::ADD => Binary::Add,
            abi::binary::SUB => Binary::Sub,
            abi::binary::MUL => Binary::Mul,
            abi::binary::DIV => Binary::Div,
            _ => return Err(bad("binary", format!("unknown op {op}"))),
        };
        ops.binary(o, Tensor(a), Tensor(b))
    })
}

unsafe extern "C" fn h_linear(ctx: *mut c_void, x: u32, w: u32, b: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.linear(Tensor(x), Tensor(w), opt(b)))
}

unsafe extern "C" fn h_matmul(ctx: *mut c_void, a: u32, b: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.matmul(Tensor(a), Tensor(b)))
}

unsafe extern "C" fn h_conv2d(
    ctx: *mut c_void,
    x: u32,
    w: u32,
    b: u32,
    stride: usize,
    padding: usize,
    out: *mut u32,
) -> Status {
    run(ctx, out, |ops| {
        if stride == 0 {
            return Err(bad("conv2d", "stride must be at least 1"));
        }
        ops.conv2d(Tensor(x), Tensor(w), opt(b), stride, (padding, padding))
    })
}

unsafe extern "C" fn h_batch_norm(ctx: *mut c_void, args: *const BatchNormV1, out: *mut u32) -> Status {
    run(ctx, out, |ops| {
        // SAFETY: the plugin passes its arguments for the duration of the call.
        let a = unsafe { args.as_ref() }.ok_or_else(|| bad("batch_norm", "no arguments"))?;
        let stats = BnStats { mean: Tensor(a.mean), var: Tensor(a.var), count: Tensor(a.count) };
        ops.batch_norm(Tensor(a.x), Tensor(a.gamma), Tensor(a.beta), stats, a.momentum, a.eps)
    })
}

unsafe extern "C" fn h_upsample(ctx: *mut c_void, x: u32, scale: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| {
        if !(1..=64).contains(&scale) {
            return Err(bad("upsample_nearest", format!("scale {scale} is not within 1–64")));
        }
        ops.upsample_nearest(Tensor(x), scale)
    })
}

unsafe extern "C" fn h_pool2d(
    ctx: *mut c_void,
    x: u32,
    kind: u32,
    kernel: usize,
    stride: usize,
    padding: usize,
    out: *mut u32,
) -> Status {
    run(ctx, out, |ops| {
        let kind = match kind {
            abi::pool::MAX => PoolKind::Max,
            abi::pool::AVG => PoolKind::Avg { count_padding: true },
            abi::pool::AVG_EXCLUDE_PADDING => PoolKind::Avg { count_padding: false },
            k => return Err(bad("pool2d", format!("unknown pooling kind {k}"))),
        };
        ops.pool2d(Tensor(x), kind, kernel, stride, padding)
    })
}

unsafe extern "C" fn h_resize_bilinear(ctx: *mut c_void, x: u32, h: usize, w: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| {
        if !(1..=1 << 14).contains(&h) || !(1..=1 << 14).contains(&w) {
            return Err(bad("resize_bilinear", format!("size {h}×{w} is not within 1–16384")));
        }
        ops.resize_bilinear(Tensor(x), (h, w))
    })
}

unsafe extern "C" fn h_concat(ctx: *mut c_void, xs: *const u32, n: usize, axis: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| {
        let ts: Vec<Tensor> = slice(xs, n, "concat")?.iter().map(|&t| Tensor(t)).collect();
        ops.concat(&ts, axis)
    })
}

unsafe extern "C" fn h_select_rows(ctx: *mut c_void, x: u32, rows: *const usize, n: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.select_rows(Tensor(x), slice(rows, n, "select_rows")?))
}

unsafe extern "C" fn h_slice(ctx: *mut c_void, x: u32, axis: usize, start: usize, end: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.slice(Tensor(x), axis, start, end))
}

unsafe extern "C" fn h_reshape(ctx: *mut c_void, x: u32, d: *const usize, rank: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.reshape(Tensor(x), dims(d, rank, "reshape")?))
}

unsafe extern "C" fn h_permute(ctx: *mut c_void, x: u32, perm: *const usize, rank: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| permute(ops, Tensor(x), dims(perm, rank, "permute")?))
}

unsafe extern "C" fn h_broadcast(ctx: *mut c_void, x: u32, d: *const usize, rank: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| broadcast(ops, Tensor(x), dims(d, rank, "broadcast")?))
}

unsafe extern "C" fn h_replicate(ctx: *mut c_void, x: u32, h: usize, w: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| {
        if h == 0 || w == 0 || h.saturating_mul(w) > 1 << 24 {
            return Err(bad("replicate", format!("{h}×{w} is not a valid size")));
        }
        ops.replicate(Tensor(x), h, w)
    })
}

unsafe extern "C" fn h_softmax(ctx: *mut c_void, x: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.softmax(Tensor(x)))
}

unsafe extern "C" fn h_reduce(ctx: *mut c_void, op: u32, x: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| match op {
        abi::reduce::SUM => ops.sum(Tensor(x)),
        abi::reduce::MEAN => ops.mean(Tensor(x)),
        _ => Err(bad("reduce", format!("unknown reduction {op}"))),
    })
}

unsafe extern "C" fn h_reduce_axis(ctx: *mut c_void, op: u32, x: u32, axis: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| {
        let op = match op {
            abi::reduce::SUM => Reduce::Sum,
            abi::reduce::MEAN => Reduce::Mean,
            abi::reduce::MAX => Reduce::Max,
            _ => return Err(bad("reduce_axis", format!("unknown reduction {op}"))),
        };
        ops.reduce_axis(Tensor(x), op, axis)
    })
}

unsafe extern "C" fn h_compare(ctx: *mut c_void, op: u32, a: u32, b: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| {
        let op = match op {
            abi::compare::GT => Compare::Gt,
            abi::compare::GE => Compare::Ge,
            abi::compare::LT => Compare::Lt,
            abi::compare::LE => Compare::Le,
            abi::compare::EQ => Compare::Eq,
            abi::compare::NE => Compare::Ne,
            _ => return Err(bad("compare", format!("unknown comparison {op}"))),
        };
        ops.compare(op, Tensor(a), Tensor(b))
    })
}

unsafe extern "C" fn h_select(ctx: *mut c_void, cond: u32, a: u32, b: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.select(Tensor(cond), Tensor(a), Tensor(b)))
}

unsafe extern "C" fn h_group_norm(
    ctx: *mut c_void,
    x: u32,
    groups: usize,
    weight: u32,
    bias: u32,
    eps: f32,
    out: *mut u32,
) -> Status {
    run(ctx, out, |ops| ops.group_norm(Tensor(x), groups, Tensor(weight), Tensor(bias), eps))
}

unsafe extern "C" fn h_layer_norm(ctx: *mut c_void, x: u32, weight: u32, bias: u32, eps: f32, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.layer_norm(Tensor(x), Tensor(weight), Tensor(bias), eps))
}

unsafe extern "C" fn h_transpose(ctx: *mut c_void, x: u32, a: usize, b: usize, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.transpose(Tensor(x), a, b))
}

unsafe extern "C" fn h_assign(ctx: *mut c_void, buffer: u32, value: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.assign(Tensor(buffer), Tensor(value)))
}

unsafe extern "C" fn h_detach(ctx: *mut c_void, x: u32, out: *mut u32) -> Status {
    run(ctx, out, |ops| ops.detach(Tensor(x)))
}

/// Elements of `x` at flat positions `idx`, shaped `out_dims`: a gather on the flattened
/// tensor, so gradients flow back to every position read.
fn gather_flat(ops: &mut dyn Ops, x: Tensor, idx: &[usize], out_dims: &[usize]) -> Result<Tensor> {
    let n: usize = ops.shape(x)?.iter().product();
    let flat = ops.reshape(x, &[n, 1])?;
    let picked = ops.select_rows(flat, idx)?;
    ops.reshape(picked, out_dims)
}

fn strides(d: &[usize]) -> Vec<usize> {
    let mut s = vec![1; d.len()];
    for i in (0..d.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * d[i + 1];
    }
    s
}

/// Flat source index of every output element, given each output axis's source stride.
fn flat_index(out_dims: &[usize], src_stride: &[usize]) -> Vec<usize> {
    let n: usize = out_dims.iter().product();
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; out_dims.len()];
    for _ in 0..n {
        idx.push(pos.iter().zip(src_stride).map(|(p, s)| p * s).sum());
        for ax in (0..pos.len()).rev() {
            pos[ax] += 1;
            if pos[ax] < out_dims[ax] {
                break;
            }
            pos[ax] = 0;
        }
    }
    idx
}

/// Reorder axes: output axis `i` is input axis `perm[i]`.
pub(crate) fn permute(ops: &mut dyn Ops, x: Tensor, perm: &[usize]) -> Result<Tensor> {
    let d = ops.shape(x)?;
    let mut seen = vec![false; d.len()];
    if perm.len() != d.len() || perm.iter().any(|&p| p >= d.len() || std::mem::replace(&mut seen[p], true)) {
        return Err(bad("permute", format!("{perm:?} is not a permutation of the axes of {d:?}")));
    }
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x);
    }
    let s = strides(&d);
    let out: Vec<usize> = perm.iter().map(|&p| d[p]).collect();
    let src: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
    gather_flat(ops, x, &flat_index(&out, &src), &out)
}

/// Broadcast to `to` (numpy rules: aligned from the last axis; size-1 axes repeat).
pub(crate) fn broadcast(ops: &mut dyn Ops, x: Tensor, to: &[usize]) -> Result<Tensor> {
    let d = ops.shape(x)?;
    let fits = d.len() <= to.len() && d.iter().rev().zip(to.iter().rev()).all(|(a, b)| a == b || *a == 1);
    if !fits {
        return Err(bad("broadcast", format!("{d:?} does not broadcast to {to:?}")));
    }
    if d == to {
        return Ok(x);
    }
    let s = strides(&d);
    let lead = to.len() - d.len();
    let src: Vec<usize> = (0..to.len()).map(|i| if i < lead || d[i - lead] == 1 { 0 } else { s[i - lead] }).collect();
    match to.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) {
        Some(n) if n <= 1 << 32 => {}
        _ => return Err(bad("broadcast", format!("{to:?} is too large"))),
    }
    gather_flat(ops, x, &flat_index(to, &src), to)
}

#[cfg(test)]
mod tests {
    use dfdx::prelude::{Cpu, OwnedTape};

    use super::*;
    use crate::exec::{grad_of, NoiseSource, Runner, Val};

    #[test]
    fn pooling_and_resizing_through_the_table() {
        let dev = Cpu::default();
        let mut noise = NoiseSource::seeded(0);
        let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
        let xv = Val::from_host(&dev, (0..16).map(|i| i as f32).collect(), &[1, 1, 4, 4]).unwrap();
        let x = r.push(xv.clone());
        let tag: &'static PluginTag = Box::leak(Box::new(PluginTag { name: "test".into() }));
        let host = table(tag);
        let mut call = Call::new(&mut r);
        let ctx = call.as_ctx();
        let mut out = 0u32;
        // SAFETY: a live context and table, as a plugin would call them.
        unsafe {
            assert_eq!((host.pool2d)(ctx, x.0, abi::pool::MAX, 2, 2, 0, &mut out), OK);
            let max = Tensor(out);
            assert_eq!((host.pool2d)(ctx, x.0, abi::pool::AVG_EXCLUDE_PADDING, 3, 1, 1, &mut out), OK);
            let avg = Tensor(out);
            assert_eq!((host.resize_bilinear)(ctx, x.0, 2, 8, &mut out), OK);
            let big = Tensor(out);
            assert_eq!((host.pool2d)(ctx, x.0, 9, 2, 2, 0, &mut out), ERR);
            assert_eq!((host.resize_bilinear)(ctx, x.0, 0, 8, &mut out), ERR);
            assert_eq!((host.pool2d)(ctx, x.0, abi::pool::MAX, 3, 1, 2, &mut out), ERR);
            drop(call);
            assert_eq!(r.read(max).unwrap(), vec![5.0, 7.0, 13.0, 15.0]);
            assert_eq!(r.read(avg).unwrap()[0], (0.0 + 1.0 + 4.0 + 5.0) / 4.0);
            assert_eq!(r.shape(big).unwrap(), vec![1, 1, 2, 8]);
        }
    }

    #[test]
    fn batch_norm_through_the_table_normalises_and_updates_its_statistics() {
        let dev = Cpu::default();
        let mut noise = NoiseSource::seeded(0);
        let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
        let push = |r: &mut Runner<Cpu, OwnedTape<f32, Cpu>>, data: Vec<f32>, dims: &[usize]| {
            r.push(Val::from_host(&dev, data, dims).unwrap()).0
        };
        // Four samples of one feature: 1, 3, 5, 7 (mean 4, biased variance 5, unbiased 20/3).
        let x = push(&mut r, vec![1.0, 3.0, 5.0, 7.0], &[4, 1]);
        let (gamma, beta) = (push(&mut r, vec![2.0], &[1]), push(&mut r, vec![0.5], &[1]));
        let (mean, var, count) =
            (push(&mut r, vec![0.0], &[1]), push(&mut r, vec![1.0], &[1]), push(&mut r, vec![0.0], &[1]));
        let tag: &'static PluginTag = Box::leak(Box::new(PluginTag { name: "test".into() }));
        let host = table(tag);
        let mut call = Call::new(&mut r);
        let ctx = call.as_ctx();
        let mut out = 0u32;
        let args = BatchNormV1 { x, gamma, beta, mean, var, count, momentum: 0.1, eps: 0.0 };
        // SAFETY: a live context and table, as a plugin would call them.
        unsafe {
            assert_eq!((host.batch_norm)(ctx, &args, &mut out), OK);
            assert_eq!((host.batch_norm)(ctx, std::ptr::null(), &mut out), ERR);
        }
        drop(call);
        let y = r.read(Tensor(out)).unwrap();
        let want: Vec<f32> = [1.0f32, 3.0, 5.0, 7.0].iter().map(|v| 2.0 * (v - 4.0) / 5f32.sqrt() + 0.5).collect();
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
        }
        let mut running = |t: u32| r.read(Tensor(t)).unwrap()[0];
        assert!((running(mean) - 0.4).abs() < 1e-6);
        assert!((running(var) - (0.9 + 0.1 * 20.0 / 3.0)).abs() < 1e-5);
        assert_eq!(running(count), 1.0);
    }

    #[test]
    fn assign_writes_only_buffers_of_the_running_net() {
        let dev = Cpu::default();
        let mut noise = NoiseSource::seeded(0);
        let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
        let a = r.push(Val::from_host(&dev, vec![1.0, 2.0], &[2]).unwrap());
        let b = r.push(Val::from_host(&dev, vec![3.0, 4.0], &[2]).unwrap());
        let tag: &'static PluginTag = Box::leak(Box::new(PluginTag { name: "test".into() }));
        let host = table(tag);
        let mut call = Call::new(&mut r);
        let ctx = call.as_ctx();
        let mut out = 0u32;
        // SAFETY: a live context and table, as a plugin would call them.
        unsafe { assert_eq!((host.assign)(ctx, a.0, b.0, &mut out), ERR) };
        drop(call);
        assert_eq!(r.read(a).unwrap(), vec![1.0, 2.0], "a value that is no buffer is left alone");
    }

    #[test]
    fn permute_and_broadcast_values_and_gradients() {
        let dev = Cpu::default();
        let mut noise = NoiseSource::seeded(0);
        let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
        let xv = Val::from_host(&dev, (0..6).map(|i| i as f32).collect(), &[1, 2, 3]).unwrap();
        let x = r.push(xv.clone());
        let t = permute(&mut r, x, &[0, 2, 1]).unwrap();
        assert_eq!(r.shape(t).unwrap(), vec![1, 3, 2]);
        assert_eq!(r.read(t).unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let cv = Val::from_host(&dev, vec![1.0, 2.0], &[2]).unwrap();
        let c = r.push(cv.clone());
        let b = broadcast(&mut r, c, &[3, 2]).unwrap();
        assert_eq!(r.read(b).unwrap(), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        assert!(permute(&mut r, x, &[0, 0, 1]).is_err());
        assert!(broadcast(&mut r, c, &[3, 4]).is_err());
        // Every position read by the gather gets its gradient: Σ over both.
        let s1 = r.sum(t).unwrap();
        let s2 = r.sum(b).unwrap();
        let total = r.binary(Binary::Add, s1, s2).unwrap();
        let mut g = r.backward(total).unwrap();
        assert_eq!(grad_of(&mut g, &xv), vec![1.0; 6]);
        assert_eq!(grad_of(&mut g, &cv), vec![3.0, 3.0]);
    }

    #[test]
    fn flat_indices_of_a_transpose_and_a_broadcast() {
        // [2, 3] transposed: out [3, 2] reads (j, i) → i*3 + j.
        assert_eq!(flat_index(&[3, 2], &[1, 3]), vec![0, 3, 1, 4, 2, 5]);
        // [3] broadcast to [2, 3].
        assert_eq!(flat_index(&[2, 3], &[0, 1]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
