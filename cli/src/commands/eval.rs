//! `stackflow eval`: caption fidelity and diversity of a trained run on synthetic shapes,
//! every trained stage side by side.

use stackflow_core::registry::Registry;
use stackflow_core::train::infer::{self, Scores};
use stackflow_core::{Error, Result};

use super::{Device, NoiseArgs, TrainedArgs};

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub run: TrainedArgs,
    #[command(flatten)]
    pub noise: NoiseArgs,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// Held-out captions to score.
    #[arg(long, default_value_t = 64)]
    pub captions: usize,
    /// Samples per caption (diversity needs at least 2).
    #[arg(long, default_value_t = 4)]
    pub per_caption: usize,
    /// Score only this stage, 1-based (default: every stage trained so far).
    #[arg(long)]
    pub stage: Option<usize>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Scores of one stage.
struct StageScores {
    stage: usize,
    side: usize,
    model: Scores,
    real: Scores,
}

/// The measures on which a later stage may fall behind an earlier one.
fn measures(s: &Scores) -> [(&'static str, f64); 3] {
    [("background", s.background_fidelity), ("object", s.object_fidelity), ("both", s.both_fidelity)]
}

/// Plain sentences for every measure where a later stage scores below an earlier one.
fn regressions(all: &[StageScores]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, later) in all.iter().enumerate() {
        for earlier in &all[..i] {
            for ((name, a), (_, b)) in measures(&earlier.model).into_iter().zip(measures(&later.model)) {
                if b < a {
                    out.push(format!(
                        "stage {} scores below stage {} on {name} fidelity ({:.1}% < {:.1}%)",
                        later.stage,
                        earlier.stage,
                        100.0 * b,
                        100.0 * a
                    ));
                }
            }
        }
    }
    out
}

/// Run `eval`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    if a.captions == 0 || a.per_caption == 0 {
        return Err(Error::input("cli::bad_count", "--captions and --per-caption must be at least 1"));
    }
    if a.captions > 100_000 || a.per_caption > 1_000 {
        return Err(Error::input("cli::too_many", "--captions is at most 100000 and --per-caption at most 1000"));
    }
    let t = a.run.open(kinds)?;
    let newest = t.stage(None)?;
    let stages = match a.stage {
        Some(_) => vec![t.stage(a.stage)?],
        None => (0..=newest).collect(),
    };
    let mut all = Vec::new();
    for s in stages {
        let noise = a.noise.sampler(&t, s)?;
        let (model, real) = super::on_device!(a.device, a.seed, |dev| infer::evaluate(
            &t,
            dev,
            (s, &*noise),
            a.captions,
            a.per_caption,
            a.seed
        ))?;
        all.push(StageScores { stage: s + 1, side: t.generator(s).side, model, real });
    }
    let warnings = regressions(&all);
    if a.json {
        let json = |s: &Scores| serde_json::json!(s);
        let stages: Vec<_> = all
            .iter()
            .map(|s| serde_json::json!({ "stage": s.stage, "side": s.side, "model": json(&s.model), "real_images": json(&s.real) }))
            .collect();
        let last = all.last().ok_or_else(|| Error::other("eval::nothing", "no stage to score"))?;
        let j = serde_json::json!({
            "checkpoint": t.checkpoint, "stage": last.stage, "model": json(&last.model),
            "real_images": json(&last.real), "stages": stages, "below_earlier_stage": warnings,
        });
        println!("{j}");
        return Ok(());
    }
    println!("checkpoint {}", t.checkpoint.display());
    print_table(&all);
    println!(
        "({} captions × {} samples, held-out synthetic shapes; real = the judge on real images)",
        a.captions, a.per_caption
    );
    for w in &warnings {
        println!("warning: {w}");
    }
    Ok(())
}

fn print_table(all: &[StageScores]) {
    let mut header = format!("{:<22}", "");
    for s in all {
        header.push_str(&format!(" {:>17}", format!("stage {} ({}²)", s.stage, s.side)));
    }
    header.push_str(&format!(" {:>10}", "real"));
    println!("{header}");
    let real = all.last().map(|s| &s.real);
    for row in 0..3 {
        let name = all.first().map_or("", |s| measures(&s.model)[row].0);
        let mut line = format!("{:<22}", format!("{name} fidelity"));
        for s in all {
            line.push_str(&format!(" {:>16.1}%", 100.0 * measures(&s.model)[row].1));
        }
        if let Some(r) = real {
            line.push_str(&format!(" {:>9.1}%", 100.0 * measures(r)[row].1));
        }
        println!("{line}");
    }
    let mut line = format!("{:<22}", "diversity (RMS)");
    for s in all {
        line.push_str(&format!(" {:>17.4}", s.model.diversity));
    }
    println!("{line}");
}
