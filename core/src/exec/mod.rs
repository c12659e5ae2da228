//! Execution on dfdx: the tensor-op interface blocks are written against ([`ops`]), the
//! runtime values and parameter store, and the [`runner::Runner`] that executes a checked
//! net forward (train or eval mode) and backward.

pub mod forward;
pub mod noise;
pub mod ops;
pub mod params;
pub mod runner;
pub mod value;
pub mod weights;

pub use noise::NoiseSource;
pub use params::ParamStore;
pub use runner::{grad_of, Runner};
pub use value::Val;

/// The CPU device, seeded.
pub fn cpu(seed: u64) -> dfdx::prelude::Cpu {
    let dev = dfdx::tensor::Cpu::seed_from_u64(seed);
    // Reuse freed buffers: without it every large activation is a fresh mapping and
    // page faults dominate (BatchNorm backward 380 ms instead of 46 ms at Stage-I b64).
    // `STACKFLOW_NO_ALLOC_CACHE=1` trades that speed for a lower peak memory.
    if std::env::var_os("STACKFLOW_NO_ALLOC_CACHE").is_none() {
        dfdx::prelude::Cache::enable_cache(&dev);
    }
    dev
}

/// The first CUDA device, seeded; an error if there is none.
#[cfg(feature = "cuda")]
pub fn cuda(seed: u64) -> crate::Result<dfdx::prelude::Cuda> {
    dfdx::tensor::Cuda::try_build(0, seed).map_err(|e| {
        crate::Error::other("device::cuda", format!("cannot open CUDA device 0: {e:?}"))
            .with_help("is an NVIDIA driver installed and a GPU visible? use `--device cpu` otherwise")
    })
}
