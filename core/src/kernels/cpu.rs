//! CPU plumbing shared by the kernels: reusable scratch buffers, reading tensor data, a safe
//! wrapper over the `gemm` crate, and vectorisable reductions.
//!
//! dfdx 0.13 has no public zero-copy view of a CPU tensor's data (`Tensor::data` is
//! crate-private), so inputs are read with `copy_into` (one memcpy) into a scratch buffer or
//! straight into the output buffer. Gradient buffers *are* reachable without copying:
//! `Gradients::get_or_alloc_mut` hands out `&mut CachableVec<f32>`, which derefs to `Vec<f32>`;
//! the kernels `std::mem::take` the output gradient out of its slot while they write the input
//! gradients, then put it back (see `take_grad!`).

use std::sync::Mutex;

use dfdx::prelude::{Cpu, CpuError, HasShape, Shape, Storage, Tape, Tensor};

/// Most buffers the pool keeps for reuse.
const POOL_MAX: usize = 64;
/// Most bytes the pool keeps.
const POOL_MAX_BYTES: usize = 128 << 20;

/// Buffers returned by dropped [`Scratch`]es, shared by all threads (a part computed on a
/// rayon worker may be dropped on the caller's thread).
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// Locks the pool, shrugging off poisoning (it only holds plain buffers).
fn pool() -> std::sync::MutexGuard<'static, Vec<Vec<f32>>> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An `f32` buffer borrowed from a process-wide pool and returned to it on drop, so the
/// column buffers and per-thread partial sums of the kernels are allocated once, not every
/// step. Its contents on creation are unspecified (left over from a previous use): callers
/// overwrite what they read.
///
/// A copy made by [`read`] is freed on drop instead: those are activation-sized (kept for
/// backward), and the memory is better reused by the allocator for tensors and gradients.
pub(crate) struct Scratch(Vec<f32>, Pooled);

/// Whether a [`Scratch`] goes back to the pool when dropped.
#[derive(Clone, Copy, PartialEq)]
enum Pooled {
    Yes,
    No,
}

impl Scratch {
    /// A buffer of exactly `len` elements.
    pub(crate) fn new(len: usize) -> Self {
        let reuse = {
            let mut pool = pool();
            // Best fit: the smallest pooled buffer that is big enough, and not so big that
            // lending it here would leave a later large request without one.
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len && v.capacity() <= 4 * len + 4096)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            best.map(|i| pool.swap_remove(i))
        };
        let mut v = reuse.unwrap_or_default();
        if v.len() < len {
            v.resize(len, 0.0);
        } else {
            v.truncate(len);
        }
        Scratch(v, Pooled::Yes)
    }

    /// A buffer of `len` zeros.
    pub(crate) fn zeroed(len: usize) -> Self {
        let mut s = Self::new(len);
        s.0.fill(0.0);
        s
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 {
            return;
        }
        if self.1 == Pooled::No {
            return;
        }
        let mut pool = pool();
        pool.push(v);
        let bytes = |p: &Vec<Vec<f32>>| p.iter().map(|v| v.capacity() * 4).sum::<usize>();
        while pool.len() > POOL_MAX || bytes(&pool) > POOL_MAX_BYTES {
            // Drop the oldest: what was returned long ago is the least likely to be asked for.
            pool.remove(0);
        }
    }
}

/// Copies a contiguous CPU tensor's data into a new (unpooled) buffer.
pub(crate) fn read<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Result<Scratch, CpuError> {
    Ok(Scratch(read_vec(t)?, Pooled::No))
}

/// A zeroed buffer for an op's output, which will become a tensor's storage.
///
/// It comes from dfdx's allocator (and its cache, if a caller enabled one), like every
/// other tensor buffer.
pub(crate) fn alloc(dev: &Cpu, len: usize) -> Result<Vec<f32>, CpuError> {
    let mut cached = Storage::<f32>::try_alloc_len(dev, len)?;
    let v = std::mem::take(&mut *cached);
    // Dropping the emptied wrapper would file a zero-length allocation in the cache; forget
    // it instead (this only leaks one reference count on the cache).
    std::mem::forget(cached);
    Ok(v)
}

/// Copies a contiguous CPU tensor's data into a new output buffer (see [`alloc`]).
pub(crate) fn read_vec<S: Shape, T>(t: &Tensor<S, f32, Cpu, T>) -> Result<Vec<f32>, CpuError> {
    let mut buf = alloc(t.device(), t.shape().num_elements())?;
    t.copy_into(&mut buf);
    Ok(buf)
}

/// Takes a gradient buffer out of `grads` (allocating zeros if absent), leaving an empty
/// `Vec` in its slot; `put_grad!` puts it back. Errors if its length is not `$len`.
macro_rules! take_grad {
    ($grads:expr, $t:expr, $len:expr) => {{
        let slot: &mut Vec<f32> = &mut *$grads.get_or_alloc_mut($t)?;
        let v = std::mem::take(slot);
        if v.len() != $len {
            *slot = v;
            return Err(dfdx::prelude::CpuError::WrongNumElements);
        }
        v
    }};
}

/// Puts a buffer taken with `take_grad!` back into its slot.
macro_rules! put_grad {
    ($grads:expr, $t:expr, $v:expr) => {{
        let slot: &mut Vec<f32> = &mut *$grads.get_or_alloc_mut($t)?;
        *slot = $v;
    }};
}

/// Adds `src` into the gradient slot of `$t`, which must have `src.len()` elements.
macro_rules! add_grad {
    ($grads:expr, $t:expr, $src:expr) => {{
        let src: &[f32] = $src;
        let slot: &mut Vec<f32> = &mut *$grads.get_or_alloc_mut($t)?;
        if slot.len() != src.len() {
            return Err(dfdx::prelude::CpuError::WrongNumElements);
        }
        for (g, s) in slot.iter_mut().zip(src) {
            *g += *s;
        }
    }};
}

pub(crate) use {add_grad, put_grad, take_grad};

/// Records on `tape` the backward of a one-input op `x → out` computed on the CPU:
/// `f(gx, gout)` adds `dL/dx` into `gx`, given `gout = dL/dout`. Backward keeps only the
/// two tensors' ids; `x` is dropped here, so its memory can go before backward runs.
pub(crate) fn record_backward<S: Shape, R: Shape, T: Tape<f32, Cpu>>(
    tape: &mut T,
    x: Tensor<S, f32, Cpu>,
    out: &Tensor<R, f32, Cpu>,
    f: impl FnOnce(&mut [f32], &[f32]) + 'static,
) {
    let (nx, ny) = (x.shape().num_elements(), out.shape().num_elements());
    let (x_ghost, out_ghost) = (x.ghost(), out.ghost());
    drop(x);
    tape.add_backward_op(move |grads| {
        let gy = take_grad!(grads, &out_ghost, ny);
        let mut gx = take_grad!(grads, &x_ghost, nx);
        f(&mut gx, &gy);
        put_grad!(grads, &x_ghost, gx);
        put_grad!(grads, &out_ghost, gy);
        Ok(())
    });
}

/// A read-only strided matrix view: element `(i, j)` is `data[off + i*rs + j*cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

/// A writable strided matrix view, see [`MatRef`].
pub(crate) struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

/// Whether an `r × c` view at `off` with strides `(rs, cs)` stays inside `len` elements.
fn fits(len: usize, off: usize, rs: usize, cs: usize, r: usize, c: usize) -> bool {
    r == 0 || c == 0 || off + (r - 1) * rs + (c - 1) * cs < len
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`, multithreaded with rayon when `par`.
///
/// Panics if a view reaches past its slice: the views are computed by the kernels, never
/// taken from the user, so that is a bug here and must not become memory unsafety.
pub(crate) fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: MatMut<'_>,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[dst.off + i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    assert!(fits(dst.data.len(), dst.off, dst.rs, dst.cs, m, n));
    assert!(fits(lhs.data.len(), lhs.off, lhs.rs, lhs.cs, m, k));
    assert!(fits(rhs.data.len(), rhs.off, rhs.rs, rhs.cs, k, n));
    // SAFETY: the three asserts above keep every element the views address inside their
    // slices; `dst` is a unique borrow, so it cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr().add(dst.off),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.off),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.off),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            if par { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None },
        );
    }
}

/// Number of independent accumulators in the reductions: enough for the compiler to keep
/// several SIMD registers busy without reassociating a single float sum.
const LANES: usize = 16;

/// `Σ xs`, in `LANES` f32 partial sums.
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `Σ (x - c)²`.
pub(crate) fn sum_sq_dev(xs: &[f32], c: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for ch in chunks {
        for i in 0..LANES {
            let d = ch[i] - c;
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|x| (x - c) * (x - c)).sum::<f32>()
}

/// `(Σ ys, Σ ys·(x - c))`.
pub(crate) fn sum_and_dot_dev(ys: &[f32], xs: &[f32], c: f32) -> (f32, f32) {
    let mut s = [0.0f32; LANES];
    let mut d = [0.0f32; LANES];
    let n = ys.len().min(xs.len());
    let (ys, xs) = (&ys[..n], &xs[..n]);
    let yc = ys.chunks_exact(LANES);
    let xc = xs.chunks_exact(LANES);
    let (yr, xr) = (yc.remainder(), xc.remainder());
    for (y, x) in yc.zip(xc) {
        for i in 0..LANES {
            s[i] += y[i];
            d[i] += y[i] * (x[i] - c);
        }
    }
    let mut s_tot = s.iter().sum::<f32>();
    let mut d_tot = d.iter().sum::<f32>();
    for (y, x) in yr.iter().zip(xr) {
        s_tot += y;
        d_tot += y * (x - c);
    }
    (s_tot, d_tot)
}
