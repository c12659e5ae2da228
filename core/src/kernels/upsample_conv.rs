//! A 3×3 convolution (stride 1, padding 1) of a map upsampled ×2 by nearest neighbour,
//! computed from the map before upsampling: StackGAN's up-block, at 4/9 of the FLOPs.
//!
//! Each output pixel `(2i + a, 2j + e)` sees only four distinct input pixels, since the
//! upsampled map repeats each one in a 2×2 block: its 3×3 window covers input rows
//! `i − 1 + a` and `i + a` and columns `j − 1 + e` and `j + e`. So the output's four phases
//! `(a, e)` are four 2×2 convolutions of the small map, whose taps are sums of the 3×3
//! taps ([`phase_weights`]). One convolution with the four phases stacked as output
//! channels (padding 1, an `(H + 1) × (W + 1)` result) computes all of them, and
//! [`interleave_phases`] puts phase `(a, e)`'s pixel `(i + a, j + e)` at `(2i + a, 2j + e)`.
//! Rounding differs from the upsample-then-convolve order only in the last bits (the taps
//! are summed before they multiply).

use dfdx::prelude::*;
use rayon::prelude::*;

use super::conv2d::{conv2d_for, Conv2dKernel, ConvGrads};
use super::cpu;
use super::{KernelError, T1, T4};

const OP: &str = "upsample2_conv3x3";

/// Which 3×3 kernel rows (or columns) fall on the small map's row `i − 1 + a + k` for the
/// phase `a` and the 2×2 tap `k`, as `TAPS[a][k]`.
const TAPS: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];

/// The `9 × 16` matrix that maps a 3×3 kernel (row-major) to the four 2×2 phase kernels,
/// columns ordered `(2a + e, ky, kx)`.
fn phase_matrix() -> Vec<f32> {
    let mut t = vec![0.0; 9 * 16];
    for (a, e, ky, kx) in (0..16).map(|q| ((q >> 3) & 1, (q >> 2) & 1, (q >> 1) & 1, q & 1)) {
        for &r in TAPS[a][ky] {
            for &c in TAPS[e][kx] {
                t[(r * 3 + c) * 16 + (2 * a + e) * 4 + ky * 2 + kx] = 1.0;
            }
        }
    }
    t
}

/// `w [O, C, 3, 3]` → the phase kernels `[4·O, C, 2, 2]`, phase `2a + e` in the block of
/// output channels `(2a + e)·O ..`.
pub fn phase_weights<D: Device<f32>, T: Tape<f32, D>>(w: T4<D, T>) -> Result<T4<D, T>, D::Err> {
    let (o, c, _, _) = *w.shape();
    let t = w.device().try_tensor_from_vec(phase_matrix(), (9usize, 16usize))?;
    w.try_reshape_like(&(o * c, 9))?
        .try_matmul(t)?
        .try_reshape_like(&(o, c, 4, 4))?
        .try_permute::<_, Axes4<2, 0, 1, 3>>()?
        .try_reshape_like(&(4 * o, c, 2, 2))
}

/// A device that can run [`interleave_phases`].
pub trait PhaseKernel: Device<f32> {
    /// `[B, 4·O, H + 1, W + 1] → [B, O, 2H, 2W]` (see the module's documentation).
    fn interleave_phases<T: Tape<f32, Self>>(y: T4<Self, T>) -> Result<T4<Self, T>, KernelError>;
}

/// The four phases of a stacked phase convolution, interleaved into the upsampled map.
pub fn interleave_phases<D: PhaseKernel, T: Tape<f32, D>>(y: T4<D, T>) -> Result<T4<D, T>, KernelError> {
    let (_, c4, h1, w1) = *y.shape();
    if c4 == 0 || c4 % 4 != 0 || h1 < 2 || w1 < 2 {
        return Err(KernelError::shape(OP, format!("{:?} is not four stacked phases", y.shape())));
    }
    D::interleave_phases(y)
}

/// `upsample_nearest(x, 2)` convolved with the 3×3 kernel `w` (stride 1, padding 1) plus
/// `bias`, computed as a convolution of `x` itself; backward computes what `need` asks.
pub fn upsample2_conv3x3<D, T>(
    x: T4<D, T>,
    w: T4<D, T>,
    bias: Option<T1<D, T>>,
    need: ConvGrads,
) -> Result<T4<D, T>, KernelError>
where
    D: Conv2dKernel + PhaseKernel,
    T: Tape<f32, D>,
{
    let (o, c, kh, kw) = *w.shape();
    if (kh, kw) != (3, 3) || x.shape().1 != c {
        return Err(KernelError::shape(OP, format!("x {:?} with w {:?}", x.shape(), w.shape())));
    }
    let dev_err = |e| KernelError::device(OP, e);
    let w4 = phase_weights(w).map_err(dev_err)?;
    let b4 = match bias {
        Some(b) => Some(
            b.try_broadcast_like::<_, Axis<0>>(&(4, o))
                .map_err(dev_err)?
                .try_reshape_like(&(4 * o,))
                .map_err(dev_err)?,
        ),
        None => None,
    };
    interleave_phases(conv2d_for(x, w4, b4, (1, (1, 1)), need)?)
}

impl PhaseKernel for Cpu {
    fn interleave_phases<T: Tape<f32, Self>>(y: T4<Self, T>) -> Result<T4<Self, T>, KernelError> {
        let dev_err = |e| KernelError::device(OP, e);
        let (y, mut tape) = y.try_contiguous().map_err(dev_err)?.split_tape();
        let (b, c4, h1, w1) = *y.shape();
        let (o, h, w) = (c4 / 4, h1 - 1, w1 - 1);
        let (plane, out_plane) = (h1 * w1, 4 * h * w);
        let mut out = cpu::alloc(y.device(), b * o * out_plane).map_err(dev_err)?;
        {
            let ys = cpu::read(&y).map_err(dev_err)?;
            out.par_chunks_mut(out_plane).enumerate().for_each(|(q, dst)| {
                let (n, ch) = (q / o, q % o);
                for (row, dst_row) in dst.chunks_exact_mut(2 * w).enumerate() {
                    let (i, a) = (row / 2, row % 2);
                    for e in 0..2 {
                        let src = &ys[(n * c4 + (2 * a + e) * o + ch) * plane + (i + a) * w1 + e..][..w];
                        for (d, s) in dst_row[e..].iter_mut().step_by(2).zip(src) {
                            *d = *s;
                        }
                    }
                }
            });
        }
        let out = y.device().try_tensor_from_vec(out, (b, o, 2 * h, 2 * w)).map_err(dev_err)?;
        if T::OWNS_TAPE {
            cpu::record_backward(&mut tape, y, &out, move |gy, gout| {
                gy.par_chunks_mut(4 * o * plane).zip(gout.par_chunks(o * out_plane)).for_each(|(gy, gout)| {
                    for (ch, src) in gout.chunks_exact(out_plane).enumerate() {
                        for (row, src_row) in src.chunks_exact(2 * w).enumerate() {
                            let (i, a) = (row / 2, row % 2);
                            for e in 0..2 {
                                let dst = &mut gy[((2 * a + e) * o + ch) * plane + (i + a) * w1 + e..][..w];
                                for (d, s) in dst.iter_mut().zip(src_row[e..].iter().step_by(2)) {
                                    *d += *s;
                                }
                            }
                        }
                    }
                });
            });
        }
        Ok(out.put_tape(tape))
    }
}

#[cfg(feature = "cuda")]
impl PhaseKernel for Cuda {
    fn interleave_phases<T: Tape<f32, Self>>(y: T4<Self, T>) -> Result<T4<Self, T>, KernelError> {
        composite(y).map_err(|e| KernelError::device(OP, e))
    }
}

/// [`interleave_phases`] as a composite of dfdx ops: each phase sliced out, the four
/// stacked, permuted to `[B, O, H, a, W, e]` and reshaped. The CUDA implementation.
pub fn composite<D: Device<f32>, T: Tape<f32, D>>(y: T4<D, T>) -> Result<T4<D, T>, D::Err> {
    let (b, c4, h1, w1) = *y.shape();
    let (o, h, w) = (c4 / 4, h1 - 1, w1 - 1);
    let (y, tape) = y.split_tape();
    let mut tape = Some(tape);
    let mut phases = Vec::with_capacity(4);
    for p in 0..4 {
        let (a, e) = (p / 2, p % 2);
        let src = y.clone().put_tape(tape.take().unwrap_or_default());
        phases.push(src.try_slice((.., p * o..(p + 1) * o, a..a + h, e..e + w))?);
    }
    phases
        .try_stack()?
        .try_reshape_like(&(2, 2, b, o, h, w))?
        .try_permute::<_, Axes6<2, 3, 4, 0, 5, 1>>()?
        .try_reshape_like(&(b, o, 2 * h, 2 * w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::*;
    use crate::kernels::{conv2d, upsample_nearest};

    fn reference<T: Tape<f32, Cpu>>(x: T4<Cpu, T>, w: T4<Cpu, T>, b: Option<T1<Cpu, T>>) -> T4<Cpu, T> {
        conv2d(upsample_nearest(x, 2).unwrap(), w, b, 1, 1).unwrap()
    }

    #[test]
    fn forward_equals_upsample_then_convolve() {
        let dev = Cpu::default();
        for ((n, c, h, w), o, bias) in [((2, 3, 4, 5), 4, true), ((1, 5, 1, 1), 2, false), ((3, 2, 7, 3), 1, true)] {
            let x = rand_t4(&dev, (n, c, h, w), 1);
            let k = rand_t4(&dev, (o, c, 3, 3), 2);
            let b = bias.then(|| rand_t1(&dev, o, 3));
            let want: Vec<f64> =
                reference(x.clone(), k.clone(), b.clone()).as_vec().iter().map(|v| *v as f64).collect();
            let got = upsample2_conv3x3(x, k, b, ConvGrads::ALL).unwrap();
            assert_eq!(*got.shape(), (n, o, 2 * h, 2 * w));
            assert_close(&got.as_vec(), &want, 1e-5, "fused");
        }
    }

    #[test]
    fn gradients_equal_upsample_then_convolve() {
        for (shape, o) in
            [((2, 3, 4, 3), 5), ((2, 4, 128, 128), 2), ((2, 8, 32, 32), 4), ((2, 16, 64, 64), 8), ((2, 64, 16, 16), 32)]
        {
            grads_case(shape, o);
        }
    }

    fn grads_case(shape: (usize, usize, usize, usize), o: usize) {
        let dev = Cpu::default();
        let x = rand_t4(&dev, shape, 4);
        let k = rand_t4(&dev, (o, shape.1, 3, 3), 5);
        let b = rand_t1(&dev, o, 6);
        let r = rand_vec(shape.0 * o * 4 * shape.2 * shape.3, 7);
        let fused = upsample2_conv3x3(x.leaky_trace(), k.leaky_trace(), Some(b.leaky_trace()), ConvGrads::ALL).unwrap();
        let g1 = weighted_sum_backward(fused, &r);
        let g2 = weighted_sum_backward(reference(x.leaky_trace(), k.leaky_trace(), Some(b.leaky_trace())), &r);
        for (name, got, want) in [
            ("dx", g1.get(&x).as_vec(), g2.get(&x).as_vec()),
            ("dw", g1.get(&k).as_vec(), g2.get(&k).as_vec()),
            ("db", g1.get(&b).as_vec(), g2.get(&b).as_vec()),
        ] {
            let want: Vec<f64> = want.iter().map(|v| *v as f64).collect();
            assert_close(&got, &want, 1e-4, &format!("{name} {shape:?} {o}"));
        }
    }

    #[test]
    fn the_kernel_and_the_composite_agree_forward_and_backward() {
        let dev = Cpu::default();
        let shape = (2, 8, 4, 5);
        let y = rand_t4(&dev, shape, 8);
        let r = rand_vec(2 * 2 * 3 * 2 * 4 * 2, 9);
        let (a, b) = (interleave_phases(y.leaky_trace()).unwrap(), composite(y.leaky_trace()).unwrap());
        assert_eq!(a.as_vec(), b.as_vec());
        let (ga, gb) = (weighted_sum_backward(a, &r), weighted_sum_backward(b, &r));
        assert_eq!(ga.get(&y).as_vec(), gb.get(&y).as_vec());
        check_fd("interleave", &ga.get(&y).as_vec(), &y.as_vec(), |v| {
            dot(&interleave_phases(from_vec(&dev, v, shape)).unwrap().as_vec(), &r)
        });
    }

    #[test]
    fn shapes_that_are_not_phases_are_errors() {
        let dev = Cpu::default();
        assert!(matches!(interleave_phases(rand_t4(&dev, (1, 6, 3, 3), 1)), Err(KernelError::Shape { .. })));
        assert!(matches!(interleave_phases(rand_t4(&dev, (1, 4, 1, 3), 1)), Err(KernelError::Shape { .. })));
        let x = rand_t4(&dev, (1, 2, 3, 3), 1);
        let w = rand_t4(&dev, (2, 2, 4, 4), 2);
        assert!(matches!(upsample2_conv3x3(x, w, None, ConvGrads::ALL), Err(KernelError::Shape { .. })));
    }
}
