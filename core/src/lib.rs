//! stackflow-core: StackGAN as data. A RON graph file is parsed ([`dsl`]), checked and
//! shape-inferred ([`ir`]), and run on dfdx ([`exec`], [`kernels`]). Every node kind lives
//! in one [`registry`]; the built-in kinds are in [`blocks`].

pub mod blocks;
pub mod data;
pub mod dsl;
pub mod error;
pub mod exec;
pub mod ir;
pub mod kernels;
pub mod mem;
pub mod plugin;
pub mod registry;
pub mod train;

pub use error::{Error, Result};
