//! 2-d convolution with zero padding (PyTorch `F.conv2d` semantics, no dilation or groups).
//!
//! CPU: the output columns (`batch × out_h × out_w`) are cut into tiles; each tile is
//! unfolded (im2col) into a pooled buffer and multiplied by the weight matrix with one
//! multithreaded `gemm` call that writes straight into the NCHW output. Backward re-unfolds
//! each tile, accumulates `dW += dY·colsᵀ`, computes `dcols = Wᵀ·dY` into the same buffer and
//! folds it back (col2im) into `dX`; its cost is that of the columns, so it does not grow
//! with the stride. A stride-1 layer with no more output than input channels instead gets
//! `dX` as a convolution of `dY` with the flipped, transposed weights (smaller columns, no
//! col2im).

use dfdx::prelude::*;
use rayon::prelude::*;

use super::cpu::{self, add_grad, put_grad, take_grad, MatMut, MatRef, Scratch};
use super::{KernelError, T1, T4};

const OP: &str = "conv2d";

/// Target size of one tile's column buffer, in floats (2 MiB): about a core's L2, so the
/// columns im2col writes are still cached when the GEMM packs them. (Measured on Zen 4 at
/// Stage-I shapes: 16 MiB tiles ran the 32×32 and 64×64 layers at half the speed.)
const COL_BUDGET: usize = 1 << 19;
/// Fewest output columns per tile, so the GEMM is never skinny and the weights are
/// re-packed rarely.
const MIN_TILE_COLS: usize = 256;
/// Weights of at least this many floats (4 MiB) are large for [`Plan::new`].
const LARGE_WEIGHTS: usize = 1 << 20;

/// The shape arithmetic of one convolution, checked once by [`Conv2dGeom::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeom {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding `(rows, columns)`, on both sides of each axis.
    pub padding: (usize, usize),
    /// Output height.
    pub h_out: usize,
    /// Output width.
    pub w_out: usize,
}

impl Conv2dGeom {
    /// Checks that `x [B,Cin,H,W]`, `w [Cout,Cin,kh,kw]` and a bias of length `bias` fit
    /// together, and computes the output size.
    pub fn new(
        x: (usize, usize, usize, usize),
        w: (usize, usize, usize, usize),
        bias: Option<usize>,
        stride: usize,
        padding: (usize, usize),
    ) -> Result<Self, KernelError> {
        let (batch, c_in, h, wd) = x;
        let (c_out, w_cin, kh, kw) = w;
        if stride == 0 {
            return Err(KernelError::arg(OP, "stride must be at least 1"));
        }
        if [batch, c_in, h, wd].contains(&0) {
            return Err(KernelError::shape(OP, format!("input {x:?} has an empty dimension")));
        }
        if [c_out, kh, kw].contains(&0) {
            return Err(KernelError::shape(OP, format!("weight {w:?} has an empty dimension")));
        }
        if w_cin != c_in {
            return Err(KernelError::shape(
                OP,
                format!("input {x:?} has {c_in} channels but weight {w:?} expects {w_cin}"),
            ));
        }
        if let Some(b) = bias {
            if b != c_out {
                return Err(KernelError::shape(
                    OP,
                    format!("bias has {b} elements but weight {w:?} has {c_out} output channels"),
                ));
            }
        }
        let (hp, wp) = (h + 2 * padding.0, wd + 2 * padding.1);
        if kh > hp || kw > wp {
            return Err(KernelError::shape(
                OP,
                format!(
                    "kernel {kh}x{kw} is larger than the padded input {hp}x{wp} \
                     (input {x:?}, padding {padding:?})"
                ),
            ));
        }
        Ok(Self {
            batch,
            c_in,
            h,
            w: wd,
            c_out,
            kh,
            kw,
            stride,
            padding,
            h_out: (hp - kh) / stride + 1,
            w_out: (wp - kw) / stride + 1,
        })
    }

    /// The output shape `[B, Cout, out_h, out_w]`.
    pub fn out_shape(&self) -> (usize, usize, usize, usize) {
        (self.batch, self.c_out, self.h_out, self.w_out)
    }

    /// Multiply-adds ×2 of the forward pass (backward costs twice this).
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.c_out * self.l()) as f64 * self.k() as f64
    }

    /// Rows of the column matrix: `Cin·kh·kw`.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Output pixels per image.
    fn l(&self) -> usize {
        self.h_out * self.w_out
    }

    fn x_len(&self) -> usize {
        self.batch * self.c_in * self.h * self.w
    }

    fn w_len(&self) -> usize {
        self.c_out * self.k()
    }

    fn out_len(&self) -> usize {
        self.batch * self.c_out * self.l()
    }

    /// When `dL/dx` is best computed as a convolution of `dL/dy`: stride 1, a kernel
    /// larger than the padding on each axis, and no more output than input channels.
    /// That convolution maps `Cout` channels at the output size back to `Cin` channels at
    /// the input size, with padding `k − 1 − p` on each axis.
    fn data_grad_geom(&self) -> Option<Conv2dGeom> {
        let (ph, pw) = self.padding;
        let fits = self.stride == 1 && ph < self.kh && pw < self.kw && self.c_out <= self.c_in;
        fits.then(|| Conv2dGeom {
            batch: self.batch,
            c_in: self.c_out,
            h: self.h_out,
            w: self.w_out,
            c_out: self.c_in,
            kh: self.kh,
            kw: self.kw,
            stride: 1,
            padding: (self.kh - 1 - ph, self.kw - 1 - pw),
            h_out: self.h,
            w_out: self.w,
        })
    }

    /// The weights of [`Conv2dGeom::data_grad_geom`]: `w'[ci][co][ky][kx] = w[co][ci][kh−1−ky][kw−1−kx]`.
    fn flipped_transposed(&self, ws: &[f32]) -> Vec<f32> {
        let (kh, kw) = (self.kh, self.kw);
        let mut out = vec![0.0; ws.len()];
        for co in 0..self.c_out {
            for ci in 0..self.c_in {
                for ky in 0..kh {
                    for kx in 0..kw {
                        out[((ci * self.c_out + co) * kh + ky) * kw + kx] =
                            ws[((co * self.c_in + ci) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)];
                    }
                }
            }
        }
        out
    }
}

/// Which gradients a convolution's backward computes. A gradient nobody reads (of a
/// constant image, or of weights the step does not train) is skipped, with its GEMM and
/// im2col or col2im; its slot is left untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGrads {
    /// `dL/dx`.
    pub input: bool,
    /// `dL/dw` and `dL/dbias`.
    pub weights: bool,
}

impl ConvGrads {
    /// Every gradient.
    pub const ALL: Self = Self { input: true, weights: true };
}

/// A device that can run [`conv2d`].
pub trait Conv2dKernel: Device<f32> {
    /// Runs a convolution whose shapes `geom` has already checked; backward computes the
    /// gradients `need` asks for (a device may compute more).
    fn conv2d<T: Tape<f32, Self>>(
        x: T4<Self, T>,
        w: T4<Self, T>,
        bias: Option<T1<Self, T>>,
        geom: Conv2dGeom,
        need: ConvGrads,
    ) -> Result<T4<Self, T>, KernelError>;
}

/// `y = conv2d(x, w) + bias`: `x [B,Cin,H,W]`, `w [Cout,Cin,kh,kw]`, `bias [Cout]`, zero
/// padding `padding` on every side, the same `stride` on both axes. Returns
/// `[B, Cout, (H+2p-kh)/s+1, (W+2p-kw)/s+1]`; gradients flow to `x`, `w` and `bias`.
pub fn conv2d<D: Conv2dKernel, T: Tape<f32, D>>(
    x: T4<D, T>,
    w: T4<D, T>,
    bias: Option<T1<D, T>>,
    stride: usize,
    padding: usize,
) -> Result<T4<D, T>, KernelError> {
    conv2d_for(x, w, bias, (stride, (padding, padding)), ConvGrads::ALL)
}

/// [`conv2d`] with its own zero padding `(rows, columns)` per axis, whose backward
/// computes only the gradients `need` asks for.
pub fn conv2d_for<D: Conv2dKernel, T: Tape<f32, D>>(
    x: T4<D, T>,
    w: T4<D, T>,
    bias: Option<T1<D, T>>,
    (stride, padding): (usize, (usize, usize)),
    need: ConvGrads,
) -> Result<T4<D, T>, KernelError> {
    let geom = Conv2dGeom::new(*x.shape(), *w.shape(), bias.as_ref().map(|b| b.shape().0), stride, padding)?;
    D::conv2d(x, w, bias, geom, need)
}

impl Conv2dKernel for Cpu {
    fn conv2d<T: Tape<f32, Self>>(
        x: T4<Self, T>,
        w: T4<Self, T>,
        bias: Option<T1<Self, T>>,
        g: Conv2dGeom,
        need: ConvGrads,
    ) -> Result<T4<Self, T>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let (x, tape_x) = x.try_contiguous().map_err(dev_err)?.split_tape();
        let (w, tape_w) = w.try_contiguous().map_err(dev_err)?.split_tape();
        let mut tape = tape_x.merge(tape_w);
        let bias = match bias {
            Some(b) => {
                let (b, tape_b) = b.try_contiguous().map_err(dev_err)?.split_tape();
                tape = tape.merge(tape_b);
                Some(b)
            }
            None => None,
        };

        let plan = Plan::new(&g, COL_BUDGET, MIN_TILE_COLS);
        let mut out = cpu::alloc(x.device(), g.out_len()).map_err(dev_err)?;
        // The input copy the forward reads is what backward keeps (not the tensor), so the
        // input's own buffer can be freed as soon as nothing else reads it.
        let xs = cpu::read(&x).map_err(dev_err)?;
        {
            let ws = cpu::read(&w).map_err(dev_err)?;
            let bs = bias.as_ref().map(|b| b.as_vec());
            forward(&g, &plan, &xs, &ws, bs.as_deref(), &mut out, false);
        }
        let out = x.device().try_tensor_from_vec(out, g.out_shape()).map_err(dev_err)?;

        if T::OWNS_TAPE {
            let out_ghost = out.ghost();
            let x_ghost = x.ghost();
            let w_ghost = w.ghost();
            let b_ghost = bias.as_ref().map(|b| b.ghost());
            drop(x);
            tape.add_backward_op(move |grads| {
                let gy = take_grad!(grads, &out_ghost, g.out_len());
                let ws = cpu::read(&w)?;
                let mut gw = need.weights.then(|| Scratch::zeroed(g.w_len()));
                let mut gx = if need.input { Some(take_grad!(grads, &x_ghost, g.x_len())) } else { None };
                backward(&g, &plan, (&xs, &ws, &gy), gx.as_deref_mut(), gw.as_deref_mut());
                if let Some(gx) = gx {
                    put_grad!(grads, &x_ghost, gx);
                }
                if let Some(gw) = &gw {
                    add_grad!(grads, &w_ghost, gw);
                    if let Some(b_ghost) = &b_ghost {
                        let gb = bias_grad(&g, &gy);
                        add_grad!(grads, b_ghost, &gb);
                    }
                }
                put_grad!(grads, &out_ghost, gy);
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}

#[cfg(feature = "cuda")]
impl Conv2dKernel for Cuda {
    fn conv2d<T: Tape<f32, Self>>(
        x: T4<Self, T>,
        w: T4<Self, T>,
        bias: Option<T1<Self, T>>,
        geom: Conv2dGeom,
        _need: ConvGrads,
    ) -> Result<T4<Self, T>, KernelError> {
        composite(x, w, bias, geom).map_err(|e| KernelError::device(OP, e))
    }
}

/// The same convolution as a composite of dfdx ops (one gather builds the columns, one
/// matmul applies the weights): the CUDA implementation, and a cross-check for the CPU
/// kernel. Memory: the column matrix `B·out_h·out_w × Cin·kh·kw` is materialised.
pub fn composite<D: Device<f32>, T: Tape<f32, D>>(
    x: T4<D, T>,
    w: T4<D, T>,
    bias: Option<T1<D, T>>,
    g: Conv2dGeom,
) -> Result<T4<D, T>, D::Err> {
    let dev = x.device().clone();
    let (taps, l) = (g.kh * g.kw, g.l());
    let pixels = g.batch * g.h * g.w;
    // Input pixels as rows [B·H·W, Cin], plus one zero row that padding taps point at.
    let rows = x.try_permute::<_, Axes4<0, 2, 3, 1>>()?.try_reshape_like(&(pixels, g.c_in))?;
    let zero: Tensor<(usize, usize), f32, D> = dev.try_zeros_like(&(1, g.c_in))?;
    let rows = (rows, zero).try_concat_along(Axis::<0>)?;

    let mut idx = Vec::with_capacity(g.batch * l * taps);
    for b in 0..g.batch {
        for oy in 0..g.h_out {
            for ox in 0..g.w_out {
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let iy = input_row(&g, oy, ky);
                        let ix = input_col(&g, ox, kx);
                        idx.push(match (iy, ix) {
                            (Some(iy), Some(ix)) => (b * g.h + iy) * g.w + ix,
                            _ => pixels,
                        });
                    }
                }
            }
        }
    }
    let n_idx = idx.len();
    let idx: Tensor<(usize,), usize, D> = dev.try_tensor_from_vec(idx, (n_idx,))?;
    // Columns [B·L, (ky, kx, ci)].
    let cols: Tensor<(usize, usize), f32, D, T> = rows.try_gather(idx)?;
    let cols = cols.try_reshape_like(&(g.batch * l, taps * g.c_in))?;
    // Weights in the same (ky, kx, ci) order, transposed to [K, Cout].
    let w_t = w
        .try_permute::<_, Axes4<0, 2, 3, 1>>()?
        .try_reshape_like(&(g.c_out, taps * g.c_in))?
        .try_permute::<_, Axes2<1, 0>>()?;
    let y = cols
        .try_matmul(w_t)?
        .try_reshape_like(&(g.batch, l, g.c_out))?
        .try_permute::<_, Axes3<0, 2, 1>>()?
        .try_reshape_like(&g.out_shape())?;
    match bias {
        Some(bias) => y.try_add(bias.try_broadcast_like::<_, Axes3<0, 2, 3>>(&g.out_shape())?),
        None => Ok(y),
    }
}

/// A block of output columns: images `b0..b0+nb`, pixels `l0..l0+nl` of each. Either one
/// image (`nb == 1`, any pixel range) or whole images (`l0 == 0`, `nl == L`).
#[derive(Debug, Clone, Copy)]
struct Tile {
    b0: usize,
    nb: usize,
    l0: usize,
    nl: usize,
}

impl Tile {
    fn cols(&self) -> usize {
        self.nb * self.nl
    }
}

/// Splits the `images·L` output columns of `images` images into tiles of about
/// `budget / K` columns, at least `min_cols`.
fn tiles(g: &Conv2dGeom, images: usize, budget: usize, min_cols: usize) -> Vec<Tile> {
    let (k, l) = (g.k(), g.l());
    let target = (budget / k).max(min_cols).max(1);
    if l >= target {
        let n = l.div_ceil(target);
        let nl = l.div_ceil(n);
        (0..images)
            .flat_map(|b| (0..l).step_by(nl).map(move |l0| Tile { b0: b, nb: 1, l0, nl: nl.min(l - l0) }))
            .collect()
    } else {
        let per = (target / l).clamp(1, images);
        let n = images.div_ceil(per);
        let nb = images.div_ceil(n);
        (0..images).step_by(nb).map(|b0| Tile { b0, nb: nb.min(images - b0), l0: 0, nl: l }).collect()
    }
}

/// How the work is spread over threads. With a large enough batch the images are cut into
/// one contiguous part per thread and each part runs its tiles alone (single-threaded
/// im2col, GEMM and col2im on thread-private buffers: no synchronisation, caches stay
/// private). Otherwise there is one part and the work inside each tile is parallel.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Images per part (the last part may have fewer).
    part_images: usize,
    /// Parallelism inside a tile, for a single part.
    inner_par: bool,
    /// Column-buffer budget per tile, in floats.
    budget: usize,
    /// Fewest columns per tile.
    min_cols: usize,
}

impl Plan {
    fn new(g: &Conv2dGeom, budget: usize, min_cols: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let b = g.batch;
        let mut outer = threads > 1 && (b.checked_rem(threads) == Some(0) || b >= 4 * threads);
        // Parts of few columns with large weights (Stage-II D's 4×4 layers at batch 4):
        // each part would multiply skinny matrices and fill its own dW accumulator the
        // size of the weights, to be summed after. One part with parallel GEMMs instead.
        // (D2 at batch 4: e6–e8 backward 10–35% faster, 0.2 GB less peak heap.)
        let part_cols = b.div_ceil(threads) * g.l();
        outer &= part_cols >= min_cols || g.w_len() < LARGE_WEIGHTS;
        Self { part_images: if outer { b.div_ceil(threads) } else { b }, inner_par: !outer, budget, min_cols }
    }

    fn tiles(&self, g: &Conv2dGeom, images: usize) -> Vec<Tile> {
        tiles(g, images, self.budget, self.min_cols)
    }
}

/// For kernel column `kx`: the output columns `lo..hi` whose input column
/// `ox·s + kx − p` lies inside `0..w`.
fn valid_cols(g: &Conv2dGeom, kx: usize) -> (usize, usize) {
    let (s, p) = (g.stride, g.padding.1);
    let lo = if kx >= p { 0 } else { (p - kx).div_ceil(s) };
    let hi = if g.w + p > kx { (g.w - 1 + p - kx) / s + 1 } else { 0 };
    (lo.min(g.w_out), hi.min(g.w_out).max(lo.min(g.w_out)))
}

/// Walks the output pixels `l0..l0+nl` of one image row by row, calling
/// `f(pos, oy, ox_start, ox_end)` where `pos` is the offset of `ox_start` in the segment.
#[inline]
fn for_each_run(g: &Conv2dGeom, l0: usize, nl: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    let (mut l, end, mut pos) = (l0, l0 + nl, 0);
    while l < end {
        let oy = l / g.w_out;
        let ox0 = l % g.w_out;
        let ox1 = g.w_out.min(ox0 + (end - l));
        f(pos, oy, ox0, ox1);
        pos += ox1 - ox0;
        l += ox1 - ox0;
    }
}

/// Input row `oy·s + ky − p`, or `None` in the padding.
#[inline]
fn input_row(g: &Conv2dGeom, oy: usize, ky: usize) -> Option<usize> {
    (oy * g.stride + ky).checked_sub(g.padding.0).filter(|&iy| iy < g.h)
}

/// Input column `ox·s + kx − p`, or `None` in the padding.
#[inline]
fn input_col(g: &Conv2dGeom, ox: usize, kx: usize) -> Option<usize> {
    (ox * g.stride + kx).checked_sub(g.padding.1).filter(|&ix| ix < g.w)
}

/// Output rows at most this wide are unfolded through a [`tap_table`]: their runs are too
/// short for per-run copies (a 4×4 map is 4-element runs, each with its own bounds, fills
/// and `memcpy` call; profiled at 20% of a quickstart iteration before the table).
const TABLE_MAX_W_OUT: usize = 16;

/// For each kernel tap `(ky, kx)` and each output pixel `l0..l0+nl` of one image: the
/// input pixel `iy·W + ix` it reads, or `u32::MAX` where it reads the zero padding.
fn tap_table(g: &Conv2dGeom, l0: usize, nl: usize) -> Vec<u32> {
    let mut table = vec![u32::MAX; g.kh * g.kw * nl];
    for (tap, row) in table.chunks_mut(nl).enumerate() {
        let (ky, kx) = (tap / g.kw, tap % g.kw);
        for (i, d) in row.iter_mut().enumerate() {
            let (oy, ox) = ((l0 + i) / g.w_out, (l0 + i) % g.w_out);
            if let (Some(iy), Some(ix)) = (input_row(g, oy, ky), input_col(g, ox, kx)) {
                *d = (iy * g.w + ix) as u32;
            }
        }
    }
    table
}

/// Runs `f(i, chunk)` over the `len`-sized chunks of `data`, in parallel or not.
fn for_chunks<T: Send>(data: &mut [T], len: usize, par: bool, f: impl Fn((usize, &mut [T])) + Send + Sync) {
    if par {
        data.par_chunks_mut(len).enumerate().for_each(f);
    } else {
        data.chunks_mut(len).enumerate().for_each(f);
    }
}

/// The row stride of a tile's column buffer: its width, or a little more when the width is
/// a multiple of 128 floats. Rows 512 B apart and more map onto the same cache sets, and
/// GEMM packing, which reads down the rows, then misses on every read (the quickstart's
/// 32×32 and 64×64 layers: the weight-gradient GEMM spent half its time packing).
fn col_stride(n: usize) -> usize {
    if n.is_multiple_of(128) {
        n + 16
    } else {
        n
    }
}

/// Unfolds the tile's receptive fields: `cols[r·ld + j]`, `r = (ci, ky, kx)`, `j` over the
/// tile, rows [`col_stride`] apart. `xs` holds the images the tile's `b0` counts from.
fn im2col(g: &Conv2dGeom, xs: &[f32], t: Tile, cols: &mut [f32], par: bool) {
    let n = t.cols();
    let ld = col_stride(n);
    let hw = g.h * g.w;
    let (s, p) = (g.stride, g.padding.1);
    if g.w_out <= TABLE_MAX_W_OUT {
        let (table, taps) = (tap_table(g, t.l0, t.nl), g.kh * g.kw);
        for_chunks(&mut cols[..g.k() * ld], ld, par, |(r, row)| {
            let row = &mut row[..n];
            let idx = &table[(r % taps) * t.nl..][..t.nl];
            for (j, seg) in row.chunks_mut(t.nl).enumerate() {
                let plane = &xs[((t.b0 + j) * g.c_in + r / taps) * hw..][..hw];
                for (d, &i) in seg.iter_mut().zip(idx) {
                    *d = plane.get(i as usize).copied().unwrap_or(0.0);
                }
            }
        });
        return;
    }
    for_chunks(&mut cols[..g.k() * ld], ld, par, |(r, row)| {
        let row = &mut row[..n];
        let ci = r / (g.kh * g.kw);
        let (ky, kx) = ((r / g.kw) % g.kh, r % g.kw);
        let (lo, hi) = valid_cols(g, kx);
        for j in 0..t.nb {
            let plane = &xs[((t.b0 + j) * g.c_in + ci) * hw..][..hw];
            let seg = &mut row[j * t.nl..][..t.nl];
            for_each_run(g, t.l0, t.nl, |pos, oy, ox0, ox1| {
                let dst = &mut seg[pos..pos + (ox1 - ox0)];
                let Some(iy) = input_row(g, oy, ky) else {
                    dst.fill(0.0);
                    return;
                };
                let src = &plane[iy * g.w..][..g.w];
                let a = lo.clamp(ox0, ox1);
                let b = hi.clamp(a, ox1);
                // The padding is a pixel or two at the row ends: no `memset` call per run.
                if a > ox0 {
                    dst[..a - ox0].iter_mut().for_each(|d| *d = 0.0);
                }
                if ox1 > b {
                    dst[b - ox0..].iter_mut().for_each(|d| *d = 0.0);
                }
                let mid = &mut dst[a - ox0..b - ox0];
                if s == 1 {
                    mid.copy_from_slice(&src[a + kx - p..b + kx - p]);
                } else if a < b {
                    let taps = src[a * s + kx - p..].iter().step_by(s);
                    mid.iter_mut().zip(taps).for_each(|(d, v)| *d = *v);
                }
            });
        }
    });
}

/// Folds column gradients back onto the input gradient: the adjoint of [`im2col`], added
/// into `gx` (the images `t.b0` counts from). Parallel over `(image, channel)` planes,
/// which no two threads share.
fn col2im_add(g: &Conv2dGeom, dcols: &[f32], t: Tile, gx: &mut [f32], par: bool) {
    let n = t.cols();
    let hw = g.h * g.w;
    let (s, p) = (g.stride, g.padding.1);
    let planes = &mut gx[t.b0 * g.c_in * hw..(t.b0 + t.nb) * g.c_in * hw];
    if g.w_out <= TABLE_MAX_W_OUT {
        let (table, taps) = (tap_table(g, t.l0, t.nl), g.kh * g.kw);
        for_chunks(planes, hw, par, |(q, plane)| {
            let (j, ci) = (q / g.c_in, q % g.c_in);
            for (tap, idx) in table.chunks(t.nl).enumerate() {
                let seg = &dcols[(ci * taps + tap) * n + j * t.nl..][..t.nl];
                for (&i, &v) in idx.iter().zip(seg) {
                    if let Some(d) = plane.get_mut(i as usize) {
                        *d += v;
                    }
                }
            }
        });
        return;
    }
    for_chunks(planes, hw, par, |(q, plane)| {
        let (j, ci) = (q / g.c_in, q % g.c_in);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let r = (ci * g.kh + ky) * g.kw + kx;
                let seg = &dcols[r * n + j * t.nl..][..t.nl];
                let (lo, hi) = valid_cols(g, kx);
                for_each_run(g, t.l0, t.nl, |pos, oy, ox0, ox1| {
                    let Some(iy) = input_row(g, oy, ky) else {
                        return;
                    };
                    let a = lo.clamp(ox0, ox1);
                    let b = hi.clamp(a, ox1);
                    let src = &seg[pos + (a - ox0)..pos + (b - ox0)];
                    let dst = &mut plane[iy * g.w..][..g.w];
                    if s == 1 {
                        for (d, v) in dst[a + kx - p..b + kx - p].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (ox, v) in (a..b).zip(src) {
                            dst[ox * s + kx - p] += v;
                        }
                    }
                });
            }
        }
    });
}

/// The tile's slice of the NCHW tensor `y [images, Cout, L]` as a `Cout × cols` matrix,
/// or `None` when the tile spans several images (then it is not one strided matrix).
fn out_view(g: &Conv2dGeom, t: Tile) -> Option<(usize, usize)> {
    (t.nb == 1).then(|| (t.b0 * g.c_out * g.l() + t.l0, g.l()))
}

/// Runs `f(part_start_image, x_part, chunk_of_data)` over the plan's parts, where `data`
/// is laid out per image with `per_image` elements.
fn for_parts<T: Send>(plan: &Plan, data: &mut [T], per_image: usize, f: impl Fn(usize, &mut [T]) + Send + Sync) {
    for_chunks(data, plan.part_images * per_image, !plan.inner_par, |(p, part)| f(p * plan.part_images, part));
}

/// `out = W · im2col(x) (+ bias)`, or `out += W · im2col(x)` when `accumulate`.
fn forward(
    g: &Conv2dGeom,
    plan: &Plan,
    xs: &[f32],
    ws: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    accumulate: bool,
) {
    let (k, l, co) = (g.k(), g.l(), g.c_out);
    let x_img = g.c_in * g.h * g.w;
    let par = plan.inner_par;
    let w_mat = MatRef { data: ws, off: 0, rs: k, cs: 1 };
    for_parts(plan, out, co * l, |b0, out| {
        let images = out.len() / (co * l);
        let xs = &xs[b0 * x_img..(b0 + images) * x_img];
        for t in plan.tiles(g, images) {
            let n = t.cols();
            let mut cols = Scratch::new(k * col_stride(n));
            im2col(g, xs, t, &mut cols, par);
            let cols_mat = MatRef { data: &cols, off: 0, rs: col_stride(n), cs: 1 };
            if let Some((off, rs)) = out_view(g, t) {
                let dst = MatMut { data: &mut *out, off, rs, cs: 1 };
                cpu::gemm((co, n, k), dst, accumulate, w_mat, cols_mat, par);
            } else {
                let mut tmp = Scratch::new(co * n);
                let dst = MatMut { data: &mut tmp, off: 0, rs: n, cs: 1 };
                cpu::gemm((co, n, k), dst, false, w_mat, cols_mat, par);
                // tmp is [Cout][nb][L]; the output block is [nb][Cout][L].
                let block = &mut out[t.b0 * co * l..(t.b0 + t.nb) * co * l];
                for_chunks(block, l, par, |(q, row)| {
                    let (j, c) = (q / co, q % co);
                    let src = &tmp[c * n + j * l..][..l];
                    if accumulate {
                        row.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                    } else {
                        row.copy_from_slice(src);
                    }
                });
            }
        }
    });
    if let Some(bias) = bias {
        out.par_chunks_mut(l).enumerate().for_each(|(q, row)| {
            let b = bias[q % co];
            row.iter_mut().for_each(|v| *v += b);
        });
    }
}

/// Adds `dL/dx` into `gx` and `dL/dw` into `gw`, given `gy = dL/dy`.
///
/// For a stride-1 convolution with no more output than input channels, `dL/dx` is itself
/// a convolution of `dL/dy` (flipped, transposed weights): its columns have `Cout·kh·kw`
/// rows instead of `Cin·kh·kw` and it writes `gx` directly, with no col2im scatter.
/// (Stage-I b64 backward: G's 3×3 layers 7–16% faster, its 64 → 3 layer 218 → 165 ms.)
/// Either gradient is skipped when not given.
fn backward(
    g: &Conv2dGeom,
    plan: &Plan,
    (xs, ws, gy): (&[f32], &[f32], &[f32]),
    gx: Option<&mut [f32]>,
    gw: Option<&mut [f32]>,
) {
    match (g.data_grad_geom(), gx) {
        (Some(gt), Some(gx)) => {
            if let Some(gw) = gw {
                backward_parts(g, plan, (xs, ws, gy), None, Some(gw));
            }
            let wt = g.flipped_transposed(ws);
            let plan_t = Plan::new(&gt, plan.budget, plan.min_cols);
            forward(&gt, &plan_t, gy, &wt, None, gx, true);
        }
        (_, gx) if gx.is_some() || gw.is_some() => backward_parts(g, plan, (xs, ws, gy), gx, gw),
        _ => {}
    }
}

/// Adds `dL/dw` into `gw` and `dL/dx` into `gx` (through col2im), each when given.
fn backward_parts(
    g: &Conv2dGeom,
    plan: &Plan,
    (xs, ws, gy): (&[f32], &[f32], &[f32]),
    gx: Option<&mut [f32]>,
    gw: Option<&mut [f32]>,
) {
    let x_img = g.c_in * g.h * g.w;
    let y_img = g.c_out * g.l();
    if plan.inner_par {
        backward_part(g, plan, (xs, ws, gy), gx, gw);
        return;
    }
    let parts = g.batch.div_ceil(plan.part_images);
    let gx_parts: Vec<Option<&mut [f32]>> = match gx {
        Some(gx) => gx.chunks_mut(plan.part_images * x_img).map(Some).collect(),
        None => (0..parts).map(|_| None).collect(),
    };
    // One dW accumulator per part, summed at the end.
    let want_w = gw.is_some();
    let partials: Vec<Option<Scratch>> = gx_parts
        .into_par_iter()
        .enumerate()
        .map(|(p, gx)| {
            let b0 = p * plan.part_images;
            let images = plan.part_images.min(g.batch - b0);
            let mut acc = want_w.then(|| Scratch::zeroed(g.w_len()));
            let (xs, gy) = (&xs[b0 * x_img..(b0 + images) * x_img], &gy[b0 * y_img..(b0 + images) * y_img]);
            backward_part(g, plan, (xs, ws, gy), gx, acc.as_deref_mut());
            acc
        })
        .collect();
    if let Some(gw) = gw {
        gw.par_chunks_mut(1 << 14).enumerate().for_each(|(i, chunk)| {
            for part in partials.iter().flatten() {
                for (d, s) in chunk.iter_mut().zip(&part[i << 14..]) {
                    *d += s;
                }
            }
        });
    }
}

/// [`backward`] for the images of one part (`xs`, `gy`, `gx` start at its first image).
fn backward_part(
    g: &Conv2dGeom,
    plan: &Plan,
    (xs, ws, gy): (&[f32], &[f32], &[f32]),
    mut gx: Option<&mut [f32]>,
    mut gw: Option<&mut [f32]>,
) {
    let (k, l, co) = (g.k(), g.l(), g.c_out);
    let par = plan.inner_par;
    let images = gy.len() / (co * l);
    // Wᵀ: element (r, c) is w[c][r].
    let wt_mat = MatRef { data: ws, off: 0, rs: 1, cs: k };
    for t in plan.tiles(g, images) {
        let n = t.cols();
        let mut cols = Scratch::new(k * col_stride(n));
        if gw.is_some() {
            im2col(g, xs, t, &mut cols, par);
        }

        let mut tmp = None;
        let gy_mat = match out_view(g, t) {
            Some((off, rs)) => MatRef { data: gy, off, rs, cs: 1 },
            None => {
                // Gather the tile's dY into [Cout][nb][L].
                let mut buf = Scratch::new(co * n);
                for_chunks(&mut buf, n, par, |(c, row)| {
                    for j in 0..t.nb {
                        let src = &gy[((t.b0 + j) * co + c) * l..][..l];
                        row[j * l..][..l].copy_from_slice(src);
                    }
                });
                let buf: &Scratch = tmp.insert(buf);
                MatRef { data: buf, off: 0, rs: n, cs: 1 }
            }
        };

        // dW += dY · colsᵀ, where colsᵀ has element (j, r) = cols[r][j].
        if let Some(gw) = gw.as_deref_mut() {
            let cols_t = MatRef { data: &cols, off: 0, rs: 1, cs: col_stride(n) };
            let gw_mat = MatMut { data: gw, off: 0, rs: k, cs: 1 };
            cpu::gemm((co, k, n), gw_mat, true, gy_mat, cols_t, par);
        }

        // dcols = Wᵀ · dY, reusing the column buffer.
        if let Some(gx) = gx.as_deref_mut() {
            let dcols = MatMut { data: &mut cols, off: 0, rs: n, cs: 1 };
            cpu::gemm((k, n, co), dcols, false, wt_mat, gy_mat, par);
            col2im_add(g, &cols, t, gx, par);
        }
    }
}

/// `dL/dbias[c] = Σ_{b,pixel} gy[b][c][pixel]`.
fn bias_grad(g: &Conv2dGeom, gy: &[f32]) -> Vec<f32> {
    let (l, co) = (g.l(), g.c_out);
    (0..co)
        .into_par_iter()
        .map(|c| (0..g.batch).map(|b| cpu::sum(&gy[(b * co + c) * l..][..l]) as f64).sum::<f64>() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::*;

    /// Direct six-loop convolution in f64.
    fn naive(g: &Conv2dGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f64> {
        let mut out = vec![0.0f64; g.out_len()];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for oy in 0..g.h_out {
                    for ox in 0..g.w_out {
                        let mut acc = bias.map_or(0.0, |bs| bs[co] as f64);
                        for ci in 0..g.c_in {
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.stride + ky) as isize - g.padding.0 as isize;
                                    let ix = (ox * g.stride + kx) as isize - g.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xv = x[((b * g.c_in + ci) * g.h + iy as usize) * g.w + ix as usize];
                                    let wv = w[((co * g.c_in + ci) * g.kh + ky) * g.kw + kx];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((b * g.c_out + co) * g.h_out + oy) * g.w_out + ox] = acc;
                    }
                }
            }
        }
        out
    }

    /// (x shape, w shape, stride, padding (rows, columns), bias)
    type Case = ((usize, usize, usize, usize), (usize, usize, usize, usize), usize, (usize, usize), bool);

    const CASES: &[Case] = &[
        ((2, 3, 5, 5), (4, 3, 3, 3), 1, (1, 1), false),
        ((2, 3, 8, 8), (4, 3, 4, 4), 2, (1, 1), false),
        ((2, 2, 8, 8), (3, 2, 4, 4), 4, (0, 0), true),
        ((1, 2, 5, 7), (3, 2, 2, 3), 2, (1, 1), true),
        ((2, 3, 6, 4), (2, 3, 1, 1), 1, (0, 0), true),
        ((1, 1, 3, 3), (2, 1, 5, 5), 3, (2, 2), false),
        ((3, 2, 7, 5), (2, 2, 3, 2), 3, (2, 2), true),
        // Stride 1 with no more output than input channels: dL/dx as a convolution.
        ((2, 4, 5, 6), (2, 4, 3, 3), 1, (1, 1), true),
        ((2, 3, 5, 5), (3, 3, 3, 3), 1, (0, 0), false),
        ((1, 3, 6, 5), (1, 3, 5, 5), 1, (2, 2), false),
        // Output rows wider than TABLE_MAX_W_OUT: unfolded run by run, not by a tap table.
        ((1, 2, 4, 40), (3, 2, 3, 3), 1, (1, 1), true),
        ((2, 2, 5, 70), (2, 2, 4, 4), 2, (1, 1), false),
        ((1, 3, 3, 38), (2, 3, 3, 3), 1, (0, 0), false),
        // Non-square kernels with their own padding per axis (Inception's 1×7 and 7×1).
        ((2, 3, 7, 7), (4, 3, 1, 7), 1, (0, 3), false),
        ((2, 3, 7, 6), (4, 3, 7, 1), 1, (3, 0), true),
        ((1, 4, 6, 5), (2, 4, 3, 1), 1, (1, 0), true),
        ((1, 2, 9, 20), (3, 2, 1, 3), 2, (0, 1), false),
        // Tiles a multiple of 128 columns wide: column rows padded (`col_stride`), through the
        // tap table and run by run.
        ((2, 2, 16, 8), (2, 2, 3, 3), 1, (1, 1), true),
        ((1, 2, 4, 32), (3, 2, 3, 3), 1, (1, 1), false),
    ];

    #[test]
    fn forward_matches_naive_loops() {
        let dev = Cpu::default();
        for (i, &(xs, ws, s, p, with_bias)) in CASES.iter().enumerate() {
            let x = rand_t4(&dev, xs, 10 + i as u64);
            let w = rand_t4(&dev, ws, 20 + i as u64);
            let b = with_bias.then(|| rand_t1(&dev, ws.0, 30 + i as u64));
            let g = Conv2dGeom::new(xs, ws, with_bias.then_some(ws.0), s, p).unwrap();
            let want = naive(&g, &x.as_vec(), &w.as_vec(), b.as_ref().map(|b| b.as_vec()).as_deref());
            let got = conv2d_for(x.clone(), w.clone(), b.clone(), (s, p), ConvGrads::ALL).unwrap();
            assert_eq!(*got.shape(), g.out_shape(), "case {i}");
            assert_close(&got.as_vec(), &want, 1e-5, &format!("case {i}"));
            let comp = composite(x, w, b, g).unwrap();
            assert_close(&comp.as_vec(), &want, 1e-5, &format!("composite case {i}"));
        }
    }

    #[test]
    fn tiles_cover_every_column_once() {
        for (xs, ws, budget) in [
            ((64, 1024, 8, 8), (512, 1024, 3, 3), COL_BUDGET),
            ((64, 64, 64, 64), (128, 64, 4, 4), COL_BUDGET),
            ((5, 8, 40, 40), (4, 8, 3, 3), COL_BUDGET),
            ((64, 512, 4, 4), (1, 512, 4, 4), COL_BUDGET),
            ((3, 2, 40, 40), (3, 2, 3, 3), 18 * 300),
            ((7, 2, 5, 5), (3, 2, 3, 3), 18 * 60),
        ] {
            let g = Conv2dGeom::new(xs, ws, None, 1, (1, 1)).unwrap();
            let mut seen = vec![0u8; g.batch * g.l()];
            for t in tiles(&g, g.batch, budget, 1) {
                assert!(t.nb == 1 || (t.l0 == 0 && t.nl == g.l()));
                for b in t.b0..t.b0 + t.nb {
                    for l in t.l0..t.l0 + t.nl {
                        seen[b * g.l() + l] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{xs:?}");
        }
    }

    /// Shapes and tile budgets that give several tiles of each kind.
    const TILED: &[Case] = &[
        ((3, 2, 20, 20), (3, 2, 3, 3), 1, (1, 1), true),
        ((7, 2, 5, 5), (3, 2, 3, 3), 1, (1, 1), false),
        ((5, 3, 12, 12), (4, 3, 4, 4), 2, (1, 1), false),
        ((3, 4, 20, 20), (2, 4, 3, 3), 1, (1, 1), false),
        ((7, 3, 5, 5), (3, 3, 3, 3), 1, (1, 1), true),
    ];

    /// Small tiles; one part with parallel tiles, or parts of two images.
    fn small_plans(g: &Conv2dGeom) -> [Plan; 2] {
        let inner = Plan { part_images: g.batch, inner_par: true, budget: g.k() * 70, min_cols: 1 };
        let outer = Plan { part_images: 2, inner_par: false, ..inner };
        [inner, outer]
    }

    #[test]
    fn large_weights_over_few_columns_run_as_one_part() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let plan = |x, w| {
            let g = Conv2dGeom::new(x, w, None, 2, (1, 1)).unwrap();
            pool.install(|| Plan::new(&g, COL_BUDGET, MIN_TILE_COLS)).inner_par
        };
        // Stage-II D at batch 4: 2 images × 16 pixels per part, 32 Mi weights.
        assert!(plan((4, 1024, 8, 8), (2048, 1024, 4, 4)));
        // Stage-I D at batch 64: 32 × 16 columns per part.
        assert!(!plan((64, 256, 8, 8), (512, 256, 4, 4)));
        // Small weights stay in parts however few their columns.
        assert!(!plan((4, 16, 8, 8), (32, 16, 4, 4)));
    }

    #[test]
    fn tiled_forward_matches_naive() {
        for &(xs, ws, s, p, with_bias) in TILED {
            let g = Conv2dGeom::new(xs, ws, with_bias.then_some(ws.0), s, p).unwrap();
            let x = rand_vec(g.x_len(), 1);
            let w = rand_vec(g.w_len(), 2);
            let b = with_bias.then(|| rand_vec(g.c_out, 3));
            let want = naive(&g, &x, &w, b.as_deref());
            for plan in small_plans(&g) {
                assert!(plan.tiles(&g, g.batch).len() > 2, "{xs:?} should be tiled");
                let mut out = vec![f32::NAN; g.out_len()];
                forward(&g, &plan, &x, &w, b.as_deref(), &mut out, false);
                assert_close(&out, &want, 1e-5, &format!("{xs:?} {plan:?}"));
            }
        }
    }

    #[test]
    fn tiled_backward_matches_one_tile() {
        for &(xs, ws, s, p, _) in TILED {
            let g = Conv2dGeom::new(xs, ws, None, s, p).unwrap();
            let one = Plan { part_images: g.batch, inner_par: true, budget: usize::MAX, min_cols: usize::MAX };
            let x = rand_vec(g.x_len(), 4);
            let w = rand_vec(g.w_len(), 5);
            let gy = rand_vec(g.out_len(), 6);
            let run = |plan: &Plan, need: ConvGrads| {
                // Non-zero starting gradients: backward must add, not overwrite.
                let mut gx = vec![1.0; g.x_len()];
                let mut gw = vec![-1.0; g.w_len()];
                let (dx, dw) = (need.input.then_some(&mut gx[..]), need.weights.then_some(&mut gw[..]));
                backward(&g, plan, (&x, &w, &gy), dx, dw);
                (gx, gw)
            };
            let (gx1, gw1) = run(&one, ConvGrads::ALL);
            let to64 = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<_>>();
            for plan in small_plans(&g) {
                let (gx, gw) = run(&plan, ConvGrads::ALL);
                assert_close(&gx, &to64(&gx1), 1e-5, &format!("dx {xs:?} {plan:?}"));
                assert_close(&gw, &to64(&gw1), 1e-5, &format!("dw {xs:?} {plan:?}"));
                // One gradient alone is the same, and the other slot is left as it was.
                let (gx, gw) = run(&plan, ConvGrads { input: true, weights: false });
                assert_close(&gx, &to64(&gx1), 1e-5, &format!("dx alone {xs:?} {plan:?}"));
                assert!(gw.iter().all(|&v| v == -1.0), "dw untouched {xs:?} {plan:?}");
                let (gx, gw) = run(&plan, ConvGrads { input: false, weights: true });
                assert_close(&gw, &to64(&gw1), 1e-5, &format!("dw alone {xs:?} {plan:?}"));
                assert!(gx.iter().all(|&v| v == 1.0), "dx untouched {xs:?} {plan:?}");
            }
        }
    }

    #[test]
    fn data_gradient_as_convolution_equals_col2im() {
        let mut checked = 0;
        for &(xs, ws, s, p, _) in CASES.iter().chain(TILED) {
            let g = Conv2dGeom::new(xs, ws, None, s, p).unwrap();
            let Some(gt) = g.data_grad_geom() else { continue };
            checked += 1;
            let plan = Plan::new(&g, COL_BUDGET, MIN_TILE_COLS);
            let (x, w, gy) = (rand_vec(g.x_len(), 7), rand_vec(g.w_len(), 8), rand_vec(g.out_len(), 9));
            let mut via_col2im = vec![0.5; g.x_len()];
            backward_parts(&g, &plan, (&x, &w, &gy), Some(&mut via_col2im), Some(&mut vec![0.0; g.w_len()]));
            let mut via_conv = vec![0.5; g.x_len()];
            forward(
                &gt,
                &Plan::new(&gt, COL_BUDGET, MIN_TILE_COLS),
                &gy,
                &g.flipped_transposed(&w),
                None,
                &mut via_conv,
                true,
            );
            let want: Vec<f64> = via_col2im.iter().map(|&v| v as f64).collect();
            assert_close(&via_conv, &want, 1e-5, &format!("{xs:?} {ws:?} s{s} p{p:?}"));
        }
        assert_eq!(checked, 9, "the cases that take the convolution path");
    }

    fn grad_check_case(case: Case, use_composite: bool) {
        let dev = Cpu::default();
        let (xs, ws, s, p, with_bias) = case;
        let x = rand_t4(&dev, xs, 1);
        let w = rand_t4(&dev, ws, 2);
        let b = with_bias.then(|| rand_t1(&dev, ws.0, 3));
        let g = Conv2dGeom::new(xs, ws, with_bias.then_some(ws.0), s, p).unwrap();
        let r = rand_vec(g.out_len(), 4);
        let run = |x: T4<Cpu>, w: T4<Cpu>, b: Option<T1<Cpu>>| -> Vec<f32> {
            if use_composite {
                composite(x, w, b, g).unwrap().as_vec()
            } else {
                conv2d_for(x, w, b, (s, p), ConvGrads::ALL).unwrap().as_vec()
            }
        };

        // Analytic gradients of L = Σ r ⊙ y.
        let tx = x.leaky_trace();
        let tw = w.retaped::<OwnedTape<f32, Cpu>>();
        let tb = b.as_ref().map(|b| b.retaped::<OwnedTape<f32, Cpu>>());
        let y = if use_composite {
            composite(tx, tw, tb, g).unwrap()
        } else {
            conv2d_for(tx, tw, tb, (s, p), ConvGrads::ALL).unwrap()
        };
        let grads = weighted_sum_backward(y, &r);

        let name = format!("{case:?} composite={use_composite}");
        check_fd(&format!("dx {name}"), &grads.get(&x).as_vec(), &x.as_vec(), |v| {
            dot(&run(from_vec(&dev, v, xs), w.clone(), b.clone()), &r)
        });
        check_fd(&format!("dw {name}"), &grads.get(&w).as_vec(), &w.as_vec(), |v| {
            dot(&run(x.clone(), from_vec(&dev, v, ws), b.clone()), &r)
        });
        if let Some(b) = &b {
            check_fd(&format!("db {name}"), &grads.get(b).as_vec(), &b.as_vec(), |v| {
                dot(&run(x.clone(), w.clone(), Some(dev.tensor_from_vec(v.to_vec(), (v.len(),)))), &r)
            });
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for &case in CASES {
            grad_check_case(case, false);
        }
    }

    #[test]
    fn composite_gradients_match_finite_differences() {
        for &case in &CASES[..4] {
            grad_check_case(case, true);
        }
    }

    #[test]
    fn fan_out_gradients_add() {
        // x feeds two convolutions; dL/dx must be the sum of both contributions.
        let dev = Cpu::default();
        let x = rand_t4(&dev, (2, 2, 5, 5), 1);
        let w1 = rand_t4(&dev, (3, 2, 3, 3), 2);
        let w2 = rand_t4(&dev, (3, 2, 3, 3), 3);
        let r = rand_vec(2 * 3 * 5 * 5, 4);

        let tx = x.leaky_trace();
        let y1 = conv2d(tx.with_empty_tape(), w1.retaped(), None, 1, 1).unwrap();
        let y2 = conv2d(tx, w2.retaped(), None, 1, 1).unwrap();
        let both = weighted_sum_backward(y1.try_add(y2).unwrap(), &r);

        let g1 = weighted_sum_backward(conv2d(x.leaky_trace(), w1.retaped(), None, 1, 1).unwrap(), &r);
        let g2 = weighted_sum_backward(conv2d(x.leaky_trace(), w2.retaped(), None, 1, 1).unwrap(), &r);
        let want: Vec<f64> =
            g1.get(&x).as_vec().iter().zip(g2.get(&x).as_vec()).map(|(a, b)| (*a + b) as f64).collect();
        assert_close(&both.get(&x).as_vec(), &want, 1e-6, "fan-out dx");
    }

    #[test]
    fn shape_errors_are_reported() {
        let dev = Cpu::default();
        let x = rand_t4(&dev, (1, 3, 5, 5), 1);
        let bad = |w: (usize, usize, usize, usize), b: Option<usize>, s: usize| {
            conv2d(x.clone(), rand_t4(&dev, w, 2), b.map(|n| rand_t1(&dev, n, 3)), s, 0).unwrap_err()
        };
        assert!(matches!(bad((4, 2, 3, 3), None, 1), KernelError::Shape { .. }));
        assert!(matches!(bad((4, 3, 6, 3), None, 1), KernelError::Shape { .. }));
        assert!(matches!(bad((4, 3, 3, 3), Some(5), 1), KernelError::Shape { .. }));
        assert!(matches!(bad((4, 3, 3, 3), None, 0), KernelError::Argument { .. }));
    }

    #[test]
    fn non_contiguous_input_is_accepted() {
        // A broadcast weight (stride 0 on the batch-like axis) goes through try_contiguous.
        let dev = Cpu::default();
        let x = rand_t4(&dev, (1, 2, 4, 4), 1);
        let w1: Tensor<(usize, usize, usize), f32, Cpu> = dev.tensor_from_vec(rand_vec(2 * 3 * 3, 2), (2, 3, 3));
        let w = w1.clone().broadcast_like::<_, Axis<0>>(&(3, 2, 3, 3));
        let dense = from_vec(&dev, &w.as_vec(), (3, 2, 3, 3));
        let a = conv2d(x.clone(), w, None, 1, 1).unwrap().as_vec();
        let b = conv2d(x, dense, None, 1, 1).unwrap().as_vec();
        assert_eq!(a, b);
    }
}
