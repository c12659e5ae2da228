//! `stackflow`: a thin command-line front end over stackflow-core.

mod commands;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Counts heap bytes so `bench` can report peak memory; forwards to the system allocator.
#[global_allocator]
static ALLOC: stackflow_core::mem::Counting<std::alloc::System> = stackflow_core::mem::Counting(std::alloc::System);

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
    /// Time sampling and one training iteration of a stage on random data.
    Bench(commands::bench::Args),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as for any Unix tool, instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    stackflow_core::mem::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Check(a) => commands::check::run(a),
        Command::Info(a) => commands::info::run(a),
        Command::Graph(a) => commands::graph::run(a),
        Command::Forward(a) => commands::forward::run(a),
        Command::Plugins(a) => commands::plugins::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Sample(a) => commands::sample::run(a),
        Command::Interpolate(a) => commands::sample::interpolate(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "stackflow", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(code as u8)
        }
    }
}
