//! `stackflow eval`: caption fidelity and diversity of a trained run on synthetic shapes.

use std::path::PathBuf;

use stackflow_core::registry::Registry;
use stackflow_core::train::infer;
use stackflow_core::{Error, Result};

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run directory or checkpoint file.
    pub run: PathBuf,
    /// Held-out captions to score.
    #[arg(long, default_value_t = 64)]
    pub captions: usize,
    /// Samples per caption (diversity needs at least 2).
    #[arg(long, default_value_t = 4)]
    pub per_caption: usize,
    /// Stage whose generator to score, 1-based (default: the newest trained).
    #[arg(long)]
    pub stage: Option<usize>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Run `eval`.
pub fn run(a: Args) -> Result<()> {
    if a.captions == 0 || a.per_caption == 0 {
        return Err(Error::input("cli::bad_count", "--captions and --per-caption must be at least 1"));
    }
    let t = infer::open(&a.run, &Registry::with_builtins())?;
    let s = t.stage(a.stage)?;
    let (model, ceiling) =
        infer::evaluate(&t, stackflow_core::exec::cpu(a.seed), s, a.captions, a.per_caption, a.seed)?;
    if a.json {
        let j =
            serde_json::json!({ "checkpoint": t.checkpoint, "stage": s + 1, "model": model, "real_images": ceiling });
        println!("{j}");
        return Ok(());
    }
    println!("checkpoint {} (stage {})", t.checkpoint.display(), s + 1);
    println!("{:<22} {:>10} {:>10}", "", "model", "real");
    println!(
        "{:<22} {:>9.1}% {:>9.1}%",
        "background fidelity",
        100.0 * model.background_fidelity,
        100.0 * ceiling.background_fidelity
    );
    println!(
        "{:<22} {:>9.1}% {:>9.1}%",
        "object fidelity",
        100.0 * model.object_fidelity,
        100.0 * ceiling.object_fidelity
    );
    println!("{:<22} {:>9.1}% {:>9.1}%", "both", 100.0 * model.both_fidelity, 100.0 * ceiling.both_fidelity);
    println!("{:<22} {:>10.4}", "diversity (RMS)", model.diversity);
    println!("({} captions × {} samples, held-out synthetic shapes)", a.captions, a.per_caption);
    Ok(())
}
