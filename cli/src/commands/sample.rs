//! `stackflow sample` and `stackflow interpolate`: images from a trained run.

use std::path::PathBuf;

use stackflow_core::data::{folder, write_grid_png, write_png};
use stackflow_core::encoders::embeddings;
use stackflow_core::kernels::KernelDevice;
use stackflow_core::registry::Registry;
use stackflow_core::train::infer;
use stackflow_core::{Error, Result};

use super::{Device, NoiseArgs, TrainedArgs};

/// Arguments of `sample`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub run: TrainedArgs,
    #[command(flatten)]
    pub noise: NoiseArgs,
    /// A text file with one caption per line.
    #[arg(long, conflicts_with = "embeddings", required_unless_present = "embeddings")]
    pub captions: Option<PathBuf>,
    /// Text embeddings instead of captions (.npy, [N, D] or [N, K, D]: the first of K).
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// The model folder of the encoder the run's embeddings came from, when it is no
    /// longer where `stackflow encode` recorded it (its hash must match).
    #[arg(long, value_name = "DIR")]
    pub encoder_weights: Option<PathBuf>,
    /// Images per caption.
    #[arg(long, default_value_t = 4)]
    pub per_caption: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stage whose generator to use, 1-based (default: the newest trained).
    #[arg(long)]
    pub stage: Option<usize>,
    /// Output directory.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
}

/// Arguments of `interpolate`.
#[derive(clap::Args, Debug)]
pub struct InterpolateArgs {
    #[command(flatten)]
    pub run: TrainedArgs,
    #[command(flatten)]
    pub noise: NoiseArgs,
    /// Caption at the left end.
    #[arg(long)]
    pub from: String,
    /// Caption at the right end.
    #[arg(long)]
    pub to: String,
    /// The model folder of the encoder the run's embeddings came from, when it is no
    /// longer where `stackflow encode` recorded it (its hash must match).
    #[arg(long, value_name = "DIR")]
    pub encoder_weights: Option<PathBuf>,
    /// Number of images in the strip.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Seed of the (fixed) noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stage whose generator to use, 1-based.
    #[arg(long)]
    pub stage: Option<usize>,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
}

/// Run `sample`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    super::on_device!(a.device, a.seed, |dev| sample_on(dev, &a, kinds))
}

fn sample_on<D: KernelDevice>(dev: D, a: &Args, kinds: &Registry) -> Result<()> {
    if a.per_caption == 0 {
        return Err(Error::input("cli::bad_count", "--per-caption must be at least 1"));
    }
    let t = a.run.open(kinds)?;
    let s = t.stage(a.stage)?;
    let gen = t.generator(s);
    let e = gen.embed_dim;
    let (embeds, labels) = match (&a.captions, &a.embeddings) {
        (Some(path), _) => {
            let mut enc = t.caption_encoder(s, kinds, a.encoder_weights.as_deref())?;
            let text = std::fs::read_to_string(path).map_err(|err| Error::io(path, err))?;
            let caps = embeddings::caption_lines(&text);
            if caps.is_empty() {
                return Err(Error::input("sample::empty", format!("`{}` has no captions", path.display())));
            }
            // Before the encoder runs over a file of any length.
            infer::check_image_budget(caps.len().saturating_mul(a.per_caption), gen.side)?;
            (enc.encode(&caps, &mut |_| {})?, caps)
        }
        (None, Some(path)) => {
            let (data, n, k, d) = folder::read_embeddings_any(path)?;
            if d != e {
                return Err(Error::input(
                    "sample::embed_dim",
                    format!("`{}` holds {d}-d embeddings; the generator reads {e}", path.display()),
                ));
            }
            let first: Vec<f32> = (0..n).flat_map(|i| data[i * k * d..i * k * d + d].iter().copied()).collect();
            (first, (0..n).map(|i| format!("embedding {i}")).collect())
        }
        (None, None) => return Err(Error::input("cli::missing", "give --captions or --embeddings")),
    };
    infer::check_image_budget(labels.len().saturating_mul(a.per_caption), gen.side)?;
    let mut store = t.store(dev)?;
    let noise = a.noise.sampler(&t, s)?;
    let (images, side) = infer::generate_many(&t.flow, (s, &*noise), &mut store, &embeds, a.per_caption, a.seed)?;
    std::fs::create_dir_all(&a.out_dir).map_err(|err| Error::io(&a.out_dir, err))?;
    for (i, img) in images.iter().enumerate() {
        write_png(&a.out_dir.join(format!("{}-{}.png", i / a.per_caption, i % a.per_caption)), img, side)?;
    }
    write_grid_png(&a.out_dir.join("grid.png"), &images, side, a.per_caption, Some(&labels))?;
    println!("wrote {} image(s) ({side}×{side}) and grid.png to {}", images.len(), a.out_dir.display());
    Ok(())
}

/// Run `interpolate`.
pub fn interpolate(a: InterpolateArgs, kinds: &Registry) -> Result<()> {
    super::on_device!(a.device, a.seed, |dev| interpolate_on(dev, &a, kinds))
}

fn interpolate_on<D: KernelDevice>(dev: D, a: &InterpolateArgs, kinds: &Registry) -> Result<()> {
    if a.steps < 2 {
        return Err(Error::input("cli::bad_count", "--steps must be at least 2"));
    }
    let t = a.run.open(kinds)?;
    let s = t.stage(a.stage)?;
    let gen = t.generator(s);
    let e = gen.embed_dim;
    infer::check_image_budget(a.steps, gen.side)?;
    let ends = t
        .caption_encoder(s, kinds, a.encoder_weights.as_deref())?
        .encode(&[a.from.clone(), a.to.clone()], &mut |_| {})?;
    let (from, to) = ends.split_at(e);
    let embeds: Vec<f32> = (0..a.steps)
        .flat_map(|i| {
            let w = i as f32 / (a.steps - 1) as f32;
            from.iter().zip(to).map(move |(x, y)| (1.0 - w) * x + w * y)
        })
        .collect();
    let mut store = t.store(dev)?;
    let noise = a.noise.sampler(&t, s)?;
    // The same seed for every image: one noise vector, only the sentence embedding moves.
    let mut images = Vec::new();
    let mut side = 0;
    for i in 0..a.steps {
        let (img, img_side) =
            infer::generate_many(&t.flow, (s, &*noise), &mut store, &embeds[i * e..(i + 1) * e], 1, a.seed)?;
        images.extend(img);
        side = img_side;
    }
    let caption = vec![format!("{} -> {}", a.from, a.to)];
    write_grid_png(&a.out, &images, side, a.steps, Some(&caption))?;
    println!("wrote {} ({} steps)", a.out.display(), a.steps);
    Ok(())
}
