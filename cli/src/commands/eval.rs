//! `stackflow eval`: every trained stage side by side. On synthetic shapes: caption
//! fidelity and diversity; on any dataset, with `--inception WEIGHTS`: FID, KID, IS,
//! precision and recall of generated images against the stage's real ones.

use stackflow_core::dsl::DataDef;
use stackflow_core::kernels::KernelDevice;
use stackflow_core::kind::NoiseSampler;
use stackflow_core::metrics::{self, Inception, Report};
use stackflow_core::registry::Registry;
use stackflow_core::train::infer::{self, Scores, Trained};
use stackflow_core::{Error, Result};

use super::metrics::{feature_bar, print_report, InceptionArgs};
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
    #[command(flatten)]
    pub inception: InceptionArgs,
    /// Real and generated images compared by FID, KID, IS, precision and recall (at most
    /// the dataset's size).
    #[arg(long, default_value_t = 500)]
    pub images: usize,
    /// The split of a folder dataset the real images come from (default: the stage's own,
    /// e.g. `--split test` for held-out images).
    #[arg(long)]
    pub split: Option<String>,
}

/// Scores of one stage.
struct StageScores {
    stage: usize,
    side: usize,
    /// Caption fidelity (synthetic shapes only): the model's and the real images'.
    fidelity: Option<(Scores, Scores)>,
    /// FID and the rest, with `--inception`.
    metrics: Option<Report>,
}

/// FID, KID, IS, precision and recall of stage `s` against its dataset's real images.
fn stage_metrics<D: KernelDevice>(
    dev: D,
    t: &Trained,
    (s, noise): (usize, &dyn NoiseSampler),
    a: &Args,
) -> Result<Report> {
    let opts = a.inception.options()?;
    let mut store = t.store(dev.clone())?;
    let (reals, fakes, side) =
        infer::real_and_generated(t, &mut store, (s, noise), (a.images, a.split.as_deref()), a.seed)?;
    let mut net = Inception::open(dev, &t.registry, &opts, side)?;
    let n = reals.len() / (3 * side * side).max(1);
    let pb = feature_bar(2 * n, &format!("stage {}", s + 1));
    let real = net.features(&reals, &mut |k| pb.set_position(k as u64))?;
    let fake = net.features(&fakes, &mut |k| pb.set_position((n + k) as u64))?;
    pb.finish_and_clear();
    metrics::report(&real, &fake, a.inception.splits)
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
            let (Some((e, _)), Some((l, _))) = (&earlier.fidelity, &later.fidelity) else { continue };
            for ((name, a), (_, b)) in measures(e).into_iter().zip(measures(l)) {
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
    check_counts(&a)?;
    let t = a.run.open(kinds)?;
    let newest = t.stage(None)?;
    let stages = match a.stage {
        Some(_) => vec![t.stage(a.stage)?],
        None => (0..=newest).collect(),
    };
    if a.images < 4 || a.images > 100_000 {
        return Err(Error::input(
            "cli::bad_count",
            "--images must be 4 to 100000 (precision and recall need k + 1 = 4)",
        ));
    }
    let with_metrics = a.inception.inception.is_some();
    let mut all = Vec::new();
    for s in stages {
        let synthetic = matches!(t.flow.parsed.doc.train[s].data, DataDef::SyntheticShapes { .. });
        if !synthetic && !with_metrics {
            return Err(Error::input(
                "eval::dataset",
                format!("stage {} is not trained on synthetic shapes: caption fidelity cannot be judged", s + 1),
            )
            .with_help("pass --inception WEIGHTS for FID, KID, IS, precision and recall against the real images"));
        }
        let noise = a.noise.sampler(&t, s)?;
        let fidelity = if synthetic {
            Some(super::on_device!(a.device, a.seed, |dev| infer::evaluate(
                &t,
                dev,
                (s, &*noise),
                a.captions,
                a.per_caption,
                a.seed
            ))?)
        } else {
            None
        };
        let metrics = if with_metrics {
            Some(super::on_device!(a.device, a.seed, |dev| stage_metrics(dev, &t, (s, &*noise), &a))?)
        } else {
            None
        };
        all.push(StageScores { stage: s + 1, side: t.generator(s).side, fidelity, metrics });
    }
    let warnings = regressions(&all);
    if a.json {
        return print_json(&all, &t.checkpoint, &warnings);
    }
    println!("checkpoint {}", t.checkpoint.display());
    if all.iter().any(|s| s.fidelity.is_some()) {
        print_table(&all);
        println!(
            "({} captions × {} samples, held-out synthetic shapes; real = the judge on real images)",
            a.captions, a.per_caption
        );
    }
    for s in &all {
        if let Some(m) = &s.metrics {
            println!("stage {} ({}²): {} real vs {} generated images", s.stage, s.side, m.real, m.generated);
            print_report(m, a.inception.splits);
        }
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    Ok(())
}

/// Refuses caption and sample counts of zero or beyond what a run can hold.
fn check_counts(a: &Args) -> Result<()> {
    if a.captions == 0 || a.per_caption == 0 {
        return Err(Error::input("cli::bad_count", "--captions and --per-caption must be at least 1"));
    }
    if a.captions > 100_000 || a.per_caption > 1_000 {
        return Err(Error::input("cli::too_many", "--captions is at most 100000 and --per-caption at most 1000"));
    }
    Ok(())
}

/// `--json`: the last stage's scores at the top level, every stage's in `stages`.
fn print_json(all: &[StageScores], checkpoint: &std::path::Path, warnings: &[String]) -> Result<()> {
    let stage_json = |s: &StageScores| {
        let mut j = serde_json::json!({ "stage": s.stage, "side": s.side });
        if let Some((model, real)) = &s.fidelity {
            j["model"] = serde_json::json!(model);
            j["real_images"] = serde_json::json!(real);
        }
        if let Some(m) = &s.metrics {
            j["metrics"] = serde_json::json!(m);
        }
        j
    };
    let last = all.last().ok_or_else(|| Error::other("eval::nothing", "no stage to score"))?;
    let mut j = stage_json(last);
    j["checkpoint"] = serde_json::json!(checkpoint);
    j["stages"] = all.iter().map(stage_json).collect();
    j["below_earlier_stage"] = serde_json::json!(warnings);
    println!("{j}");
    Ok(())
}

fn print_table(all: &[StageScores]) {
    let all: Vec<(&StageScores, &Scores, &Scores)> =
        all.iter().filter_map(|s| s.fidelity.as_ref().map(|(m, r)| (s, m, r))).collect();
    let mut header = format!("{:<22}", "");
    for (s, _, _) in &all {
        header.push_str(&format!(" {:>17}", format!("stage {} ({}²)", s.stage, s.side)));
    }
    header.push_str(&format!(" {:>10}", "real"));
    println!("{header}");
    let real = all.last().map(|(_, _, r)| *r);
    for row in 0..3 {
        let name = all.first().map_or("", |(_, m, _)| measures(m)[row].0);
        let mut line = format!("{:<22}", format!("{name} fidelity"));
        for (_, m, _) in &all {
            line.push_str(&format!(" {:>16.1}%", 100.0 * measures(m)[row].1));
        }
        if let Some(r) = real {
            line.push_str(&format!(" {:>9.1}%", 100.0 * measures(r)[row].1));
        }
        println!("{line}");
    }
    let mut line = format!("{:<22}", "diversity (RMS)");
    for (_, m, _) in &all {
        line.push_str(&format!(" {:>17.4}", m.diversity));
    }
    println!("{line}");
}
