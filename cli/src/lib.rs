//! The `stackflow` command line as a library: [`main`] runs it with the kinds of a
//! registry, so a crate can ship its own `stackflow` with kinds compiled in
//! (`examples/static-kinds`). The `stackflow` binary is `main(Registry::with_builtins())`.
//!
//! A binary that wants `bench` to report peak heap memory installs
//! [`stackflow_core::mem::Counting`] as its global allocator, as `src/main.rs` does.

mod commands;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use stackflow_core::registry::Registry;

/// StackGAN as data: check, inspect, train and sample RON graph files.
#[derive(Parser, Debug)]
#[command(name = "stackflow", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a graph file: parse, expand, wire and shape-check every net and the recipe.
    Check(commands::check::Args),
    /// Per net: parameters (trainable, frozen), FLOPs per sample and memory.
    Info(commands::info::Args),
    /// Print a net's nodes and edges as text or Graphviz dot.
    Graph(commands::graph::Args),
    /// Run one forward pass of a net on tensors from a safetensors file.
    Forward(commands::forward::Args),
    /// Plugin libraries and the kinds they add: `plugins list [--plugin LIB]…`.
    Plugins(commands::plugins::Args),
    /// Train the recipe of a graph file (progress, metrics, samples, checkpoints).
    Run(commands::run::Args),
    /// Generate images for captions from a trained run.
    Sample(commands::sample::Args),
    /// Render the interpolation between two captions with fixed noise as a strip.
    Interpolate(commands::sample::InterpolateArgs),
    /// Caption fidelity and diversity of a trained run on synthetic shapes.
    Eval(commands::eval::Args),
    /// Encode captions (a dataset's or a file's) into embeddings with the built-in encoder.
    Encode(commands::encode::Args),
    /// FID, KID, Inception Score, precision and recall between two folders of images.
    Metrics(commands::metrics::Args),
    /// Time sampling and one training iteration of a stage on random data.
    Bench(commands::bench::Args),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Runs the command line of this process with the kinds of `kinds` (plus the plugins a
/// command loads), prints diagnostics, and returns the exit status: 0 ok, 1 invalid
/// input, 2 other failure.
pub fn main(kinds: Registry) -> ExitCode {
    // Output piped into `head` ends quietly, as for any Unix tool, instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    stackflow_core::mem::tune_allocator();
    ExitCode::from(run(&kinds, std::env::args_os()))
}

/// Runs one command line (`args[0]` is the program name) and returns its exit status.
pub fn run<I, T>(kinds: &Registry, args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Check(a) => commands::check::run(a, kinds),
        Command::Info(a) => commands::info::run(a, kinds),
        Command::Graph(a) => commands::graph::run(a, kinds),
        Command::Forward(a) => commands::forward::run(a, kinds),
        Command::Plugins(a) => commands::plugins::run(a, kinds),
        Command::Bench(a) => commands::bench::run(a, kinds),
        Command::Run(a) => commands::run::run(a, kinds),
        Command::Sample(a) => commands::sample::run(a, kinds),
        Command::Interpolate(a) => commands::sample::interpolate(a, kinds),
        Command::Eval(a) => commands::eval::run(a, kinds),
        Command::Metrics(a) => commands::metrics::run(a, kinds),
        Command::Encode(a) => commands::encode::run(a, kinds),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "stackflow", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("{:?}", miette::Report::new(e));
            code as u8
        }
    }
}
