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
    use cudarc::driver::result;
    let none = |why: String| {
        crate::Error::other("device::cuda", format!("cannot open CUDA device 0: {why}"))
            .with_help("is an NVIDIA driver installed and a GPU visible? use `--device cpu` otherwise")
    };
    // Asked first: cudarc 0.9 panics inside `CudaDevice::new` when the driver has no device.
    result::init().map_err(|e| none(format!("the driver did not start ({:?})", e.0)))?;
    match result::device::get_count() {
        Ok(n) if n > 0 => {}
        Ok(_) => return Err(none("the driver sees no device".into())),
        Err(e) => return Err(none(format!("the driver cannot count devices ({:?})", e.0))),
    }
    dfdx::tensor::Cuda::try_build(0, seed).map_err(|e| none(format!("{e:?}")))
}
