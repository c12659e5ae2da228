//! Execution on dfdx: the tensor-op interface blocks are written against ([`ops`]), the
//! runtime values and parameter store, and the [`runner::Runner`] that executes a checked
//! net forward (train or eval mode) and backward.

pub mod forward;
pub mod noise;
pub mod params;
pub mod plan;
pub mod profile;
pub mod runner;
pub mod value;
pub mod weights;

pub use noise::NoiseSource;
pub use params::ParamStore;
pub use runner::{grad_of, Runner};
pub use value::Val;

/// The CPU device, seeded.
///
/// dfdx's allocation cache stays off: it keeps every freed buffer by exact size, so peak
/// memory grows far beyond the live peak. Page faults on re-allocation are avoided instead
/// by [`crate::mem::tune_allocator`], which the `stackflow` binary calls at start.
pub fn cpu(seed: u64) -> dfdx::prelude::Cpu {
    dfdx::tensor::Cpu::seed_from_u64(seed)
}

/// The first CUDA device, seeded; an error if there is none.
#[cfg(feature = "cuda")]
pub fn cuda(seed: u64) -> crate::Result<dfdx::prelude::Cuda> {
    dfdx::tensor::Cuda::try_build(0, seed).map_err(|e| {
        crate::Error::other("device::cuda", format!("cannot open CUDA device 0: {e:?}"))
            .with_help("is an NVIDIA driver installed and a GPU visible? use `--device cpu` otherwise")
    })
}
