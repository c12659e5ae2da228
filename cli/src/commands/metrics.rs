//! `stackflow metrics`: FID, KID, Inception Score and precision/recall between two folders
//! of images, the way `python -m pytorch_fid` computes FID, so figures compare with
//! published ones.

use std::path::PathBuf;

use stackflow_core::metrics::{self, ExtractorOptions, Features, Report};
use stackflow_core::registry::Registry;
use stackflow_core::{Error, Result};

use super::Device;

/// The feature extractor: pytorch-fid's FID Inception-v3 weights and how to run them.
#[derive(clap::Args, Debug, Clone)]
pub struct InceptionArgs {
    /// pytorch-fid's FID Inception weights as safetensors (README: converting
    /// `pt_inception-2015-12-05-6726825d.pth`).
    #[arg(long, value_name = "WEIGHTS")]
    pub inception: Option<PathBuf>,
    /// A graph file for the feature extractor instead of the shipped `fid_inception.ron`.
    #[arg(long, value_name = "FILE")]
    pub inception_graph: Option<PathBuf>,
    /// Override a variable of the extractor's graph (`div=16` for a reduced test network).
    #[arg(long = "inception-set", value_name = "NAME=EXPR")]
    pub inception_set: Vec<String>,
    /// Images per Inception forward pass.
    #[arg(long, default_value_t = 16)]
    pub inception_batch: usize,
    /// Groups the Inception Score splits the generated images into.
    #[arg(long, default_value_t = 10)]
    pub splits: usize,
}

impl InceptionArgs {
    /// The extractor options, or a diagnostic when no weights were named.
    pub fn options(&self) -> Result<ExtractorOptions> {
        let Some(weights) = self.inception.clone() else {
            return Err(Error::input(
                "cli::no_inception",
                "FID, KID and IS need the Inception weights: --inception FILE",
            )
            .with_help(
                "convert pytorch-fid's pt_inception-2015-12-05 weights to safetensors (README, `stackflow metrics`)",
            ));
        };
        if self.inception_batch == 0 || self.inception_batch > 4096 || self.splits == 0 {
            return Err(Error::input("cli::bad_count", "--inception-batch must be 1 to 4096 and --splits at least 1"));
        }
        Ok(ExtractorOptions {
            weights,
            graph: self.inception_graph.clone(),
            overrides: self.inception_set.clone(),
            batch: self.inception_batch,
        })
    }
}

/// Arguments of `metrics`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The real images (a folder of PNG/JPEG files, square, one size).
    pub real: PathBuf,
    /// The generated images.
    pub generated: PathBuf,
    #[command(flatten)]
    pub inception: InceptionArgs,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    /// Print one JSON object: {"fid", "kid", "is", "is_std", "precision", "recall", …}.
    #[arg(long)]
    pub json: bool,
}

/// A progress bar on stderr over `len` images (its message), labelled `what`.
pub fn feature_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_prefix(what.to_string());
    pb.set_message("images");
    pb
}

/// Features of the image `files`, with a progress bar on stderr.
fn features_with_progress(
    opts: &ExtractorOptions,
    device: Device,
    kinds: &Registry,
    files: &[PathBuf],
    what: &str,
) -> Result<Features> {
    let pb = feature_bar(files.len(), what);
    let f = super::on_device!(device, 0, |dev| metrics::folder_features(dev, kinds, files, opts, &mut |n| pb
        .set_position(n as u64)));
    pb.finish_and_clear();
    f
}

/// Run `metrics`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    let opts = a.inception.options()?;
    let (real_files, fake_files) = (metrics::image_files(&a.real)?, metrics::image_files(&a.generated)?);
    let real = features_with_progress(&opts, a.device, kinds, &real_files, "real")?;
    let fake = features_with_progress(&opts, a.device, kinds, &fake_files, "generated")?;
    let report = metrics::report(&real, &fake, a.inception.splits)?;
    if a.json {
        println!("{}", serde_json::json!(report));
    } else {
        println!("real       {} ({} images)", a.real.display(), report.real);
        println!("generated  {} ({} images)", a.generated.display(), report.generated);
        print_report(&report, a.inception.splits);
    }
    Ok(())
}

/// The report as aligned lines.
pub fn print_report(r: &Report, splits: usize) {
    println!("FID        {:.4}", r.fid);
    println!("KID        {:.6}", r.kid);
    println!("IS         {:.4} ± {:.4} ({} splits)", r.is, r.is_std, splits.min(r.generated));
    println!("precision  {:.4}", r.precision);
    println!("recall     {:.4}", r.recall);
}
