//! stackflow-plugin-api: write stackflow plugins (blocks, GAN losses, samplers) in
//! ordinary Rust, loaded by the host at run time through a versioned C ABI.
//!
//! A plugin is a `cdylib` crate that depends on this crate only — never on dfdx or
//! stackflow-core. Tensors live in the host: a [`Tensor`] is an opaque handle, and every
//! operation on it (`+`, `matmul`, `conv2d`, …) runs in the host's executor, on the host's
//! device and tape, so plugin blocks and losses are differentiable for free and one
//! library serves CPU and CUDA hosts.
//!
//! ```ignore
//! use stackflow_plugin_api::prelude::*;
//!
//! struct Swish;
//!
//! impl Block for Swish {
//!     const NAME: &'static str = "my.swish";
//!     const DOC: &'static str = "x·σ(x), same shape";
//!     fn configure(_: &mut Attrs) -> Result<Self> { Ok(Swish) }
//!     fn infer(&self, inputs: &[Vec<usize>]) -> Result<Inferred, String> {
//!         Ok(Inferred::outputs([inputs[0].clone()]))
//!     }
//!     fn forward<'a>(&self, _: &'a Ops, x: &[Tensor<'a>], _: &[Tensor<'a>]) -> Result<Vec<Tensor<'a>>> {
//!         Ok(vec![x[0] * x[0].sigmoid()])
//!     }
//! }
//!
//! export_plugin!(name: "my", blocks: [Swish]);
//! ```
//!
//! [`abi`] is the C ABI itself; [`export_plugin!`] writes the exported declaration and
//! wraps every entry point so that a panic becomes an error, never an unwind into the host.

pub mod abi;
mod attrs;
mod error;
#[doc(hidden)]
pub mod export;
mod kinds;
pub mod log;
mod ops;
mod rng;

pub use attrs::Attrs;
pub use error::{Error, Result};
pub use kinds::{Block, Inferred, Init, Loss, MismatchSampler, NoiseSampler, Outs, ParamSpec, Probe, Terms};
pub use ops::{BnStats, Noise, Ops, Tensor};
pub use rng::Rng;

/// Everything a plugin author needs: `use stackflow_plugin_api::prelude::*;`.
pub mod prelude {
    pub use crate::{
        export_plugin, Attrs, Block, BnStats, Error, Inferred, Init, Loss, MismatchSampler, Noise, NoiseSampler, Ops,
        Outs, ParamSpec, Probe, Result, Rng, Tensor, Terms,
    };
}
