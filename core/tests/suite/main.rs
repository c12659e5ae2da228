//! Core's integration tests, one binary (one link instead of one per file). The memory
//! test stays its own binary: it installs a counting global allocator and measures the
//! process's heap.

#[path = "../common/mod.rs"]
mod common;

mod blocks;
mod checkpoint;
mod fusion;
mod golden;
mod layers;
mod losses_and_samplers;
mod metrics;
mod mutated_graphs;
mod plugins;
mod recipe;
mod train_parity;
