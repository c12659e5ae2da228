//! Numerical kernels the executor calls: conv2d, fused batch norm, nearest upsampling (and
//! a ×2 upsampling convolved 3×3, computed without the upsampling),
//! pooling, bilinear resizing, leaky ReLU and tanh, as custom ops on dfdx's public tape API. CPU gets hand-written multithreaded
//! kernels (im2col + `gemm`); CUDA gets composites of dfdx ops (each op's `composite`).
//!
//! Every op is generic over the tape, so the same call serves inference (`NoneTape`) and
//! training (`OwnedTape`). Backward ops *add* into gradients, so a tensor consumed by several
//! ops gets the sum of their contributions. Shapes are checked before any work and reported
//! as [`KernelError`]; nothing here panics on a shape. Adam's update of a parameter
//! ([`adam`]) is not a tape op: it runs after backward, on the device that holds both.

pub mod adam;
pub mod batch_norm;
pub mod conv2d;
mod cpu;
pub mod leaky_relu;
pub mod pool2d;
pub mod resize;
pub mod tanh;
pub mod upsample;
pub mod upsample_conv;

#[cfg(test)]
mod testutil;

use dfdx::prelude::{Cpu, Device, Storage, Tensor};

pub use adam::{AdamKernel, AdamStep, AdamVisit};
pub use batch_norm::{batch_norm, BatchNormKernel, BatchNormMode};
pub use conv2d::{conv2d, conv2d_for, Conv2dGeom, Conv2dKernel, ConvGrads};
pub use leaky_relu::{leaky_relu, LeakyReluKernel};
pub use pool2d::{pool2d, PoolKernel};
pub use resize::resize_bilinear;
pub use tanh::{tanh, TanhKernel};
pub use upsample::{upsample_nearest, UpsampleKernel};
pub use upsample_conv::{upsample2_conv3x3, PhaseKernel};

/// A 4-d `f32` tensor with runtime dims, `[batch, channels, height, width]`.
pub type T4<D, T = dfdx::prelude::NoneTape> = Tensor<(usize, usize, usize, usize), f32, D, T>;
/// A 1-d `f32` tensor with a runtime length (per-channel parameters and statistics).
pub type T1<D, T = dfdx::prelude::NoneTape> = Tensor<(usize,), f32, D, T>;

/// Why a kernel refused to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// Input shapes disagree with each other or with the op's parameters.
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The op that rejected its inputs.
        op: &'static str,
        /// Which shapes disagree, with their values.
        detail: String,
    },
    /// A scalar argument is out of range (zero stride, zero scale, a batch of one in
    /// training-mode batch norm, ...).
    #[error("{op}: invalid argument: {detail}")]
    Argument {
        /// The op that rejected its argument.
        op: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The device failed (out of memory, a CUDA error).
    #[error("{op}: device error: {detail}")]
    Device {
        /// The op that was running.
        op: &'static str,
        /// The device's own message.
        detail: String,
    },
}

impl KernelError {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Self::Shape { op, detail: detail.into() }
    }

    pub(crate) fn arg(op: &'static str, detail: impl Into<String>) -> Self {
        Self::Argument { op, detail: detail.into() }
    }

    pub(crate) fn device(op: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Device { op, detail: err.to_string() }
    }
}

/// Freeing a gradient buffer in the middle of backward, once nothing reads it any more.
pub trait ReleaseGrad: Storage<f32> {
    /// Replace `grad` with an empty buffer, freeing its memory.
    fn release_grad(grad: &mut Self::Vec);
}

impl ReleaseGrad for Cpu {
    fn release_grad(grad: &mut Self::Vec) {
        drop(std::mem::take(&mut **grad));
    }
}

#[cfg(feature = "cuda")]
impl ReleaseGrad for dfdx::prelude::Cuda {
    /// Kept: GPU gradients are freed together when backward ends (device memory is not
    /// the limit this addresses, and a zero-length device buffer is not portable).
    fn release_grad(_grad: &mut Self::Vec) {}
}

/// A dfdx device that has every stackflow kernel: implemented for `Cpu` (hand-written
/// kernels) and, with the `cuda` feature, for `Cuda` (composites of dfdx ops).
pub trait KernelDevice:
    Device<f32>
    + Conv2dKernel
    + BatchNormKernel
    + UpsampleKernel
    + PhaseKernel
    + PoolKernel
    + LeakyReluKernel
    + TanhKernel
    + AdamKernel
    + ReleaseGrad
{
}

impl<D> KernelDevice for D where
    D: Device<f32>
        + Conv2dKernel
        + BatchNormKernel
        + UpsampleKernel
        + PhaseKernel
        + PoolKernel
        + LeakyReluKernel
        + TanhKernel
        + AdamKernel
        + ReleaseGrad
{
}
