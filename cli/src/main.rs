//! `stackflow`: the command line with the built-in kinds.

use std::process::ExitCode;

use stackflow_core::registry::Registry;

/// Counts heap bytes so `bench` can report peak memory; forwards to the system allocator.
#[global_allocator]
static ALLOC: stackflow_core::mem::Counting<std::alloc::System> = stackflow_core::mem::Counting(std::alloc::System);

fn main() -> ExitCode {
    stackflow_cli::main(Registry::with_builtins())
}
