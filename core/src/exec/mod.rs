//! Execution on dfdx: the tensor-op interface blocks are written against ([`ops`]), the
//! runtime values and parameter store, and the [`runner::Runner`] that executes a checked
//! net forward (train or eval mode) and backward.

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
