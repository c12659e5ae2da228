//! stackflow-core: StackGAN as data. A RON graph file is parsed ([`dsl`]), checked and
//! shape-inferred ([`ir`]), and run on dfdx ([`exec`], [`kernels`]); [`train`] plays the
//! two-player game a recipe describes. Every kind (block, loss, sampler, sentence
//! encoder) implements the interface of [`kind`] and lives in one [`registry`]; the
//! built-in kinds are in [`blocks`], [`train`] and [`encoders`], registered by
//! [`builtins`], and [`plugin`] loads more.
//!
//! Modules only look down this list (a test holds it: `tests/suite/layers.rs`):
//! `error`, `mem` → `kernels` → `dsl` → `data` → `ops` → `kind` → `registry` → `ir` →
//! `exec` → `blocks` → `plugin`, `encoders` → `metrics` → `train` → `builtins`.

pub mod blocks;
pub mod builtins;
pub mod data;
pub mod dsl;
pub mod encoders;
pub mod error;
pub mod exec;
pub mod ir;
pub mod kernels;
pub mod kind;
pub mod mem;
pub mod metrics;
pub mod ops;
pub mod plugin;
pub mod registry;
pub mod train;

pub use error::{Error, Result};
