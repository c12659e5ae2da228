//! End-to-end tests: they drive the real `stackflow` binary on real graph files.

mod bad_graphs;
mod bench;
mod check;
mod compose;
mod docs;
mod forward;
mod metrics;
mod plugins;
mod reliability;
mod run;
mod snapshots;
mod support;
