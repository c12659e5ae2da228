//! Using a trained run: find its checkpoint and graph, generate images for captions or
//! embeddings, interpolate between captions, and score fidelity on synthetic shapes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;

use super::checkpoint::{self, Loaded};
use super::game;
use super::rundir;
use crate::data::{self, synthetic, Dataset, TextEncoder};
use crate::dsl::DataDef;
use crate::encoders::{self, embeddings};
use crate::error::SourceFile;
use crate::error::{Error, Result};
use crate::exec::ParamStore;
use crate::ir::{self, BuildOptions, Flow};
use crate::kernels::KernelDevice;
use crate::kind::attrs::{Attr, Attrs};
use crate::kind::{NoiseSampler, SamplerImpl, SentenceEncoder};
use crate::registry::Registry;

/// A checkpoint with the graph that made it, rebuilt.
pub struct Trained {
    /// The run directory.
    pub dir: PathBuf,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// The checkpoint's content.
    pub loaded: Loaded,
    /// The run's graph with its overrides.
    pub flow: Flow,
    /// The kinds the graph was built with (the given ones and the graph's plugins).
    pub registry: Registry,
    /// Whether G takes its moving average where the run kept one (the default).
    pub averaged: bool,
}

/// Open a run directory (its newest loadable checkpoint; newer damaged ones are named on
/// stderr) or a checkpoint file in a run's `checkpoints/` folder. The run's `graph.ron`
/// must hash to the checkpoint's graph hash. `registry` must already hold the plugins the
/// run needs: the libraries recorded in `run.json` are never loaded from there, only
/// named in the error when a kind is missing.
pub fn open(path: &Path, registry: &Registry) -> Result<Trained> {
    let rundir::Located { dir, checkpoint: ckpt, loaded } = rundir::locate(path)?;
    let dir = dir.ok_or_else(|| {
        rundir::stray(path, "pass the run directory, or a checkpoint file inside it (the run's graph.ron is needed)")
    })?;
    let info = rundir::read_info(&dir)?;
    let graph = dir.join("graph.ron");
    let parsed =
        crate::dsl::load(&graph).map_err(|e| e.context(format!("the run's graph for `{}`", ckpt.display())))?;
    let text = rundir::graph_text(&parsed.src.text, loaded.meta.overrides.len());
    if checkpoint::graph_hash(text, &loaded.meta.overrides) != loaded.meta.graph_hash {
        return Err(Error::input(
            "run::graph_edited",
            format!("`{}` is not the graph that trained `{}`", graph.display(), ckpt.display()),
        )
        .with_help("the run's graph.ron was edited after training; restore it (the checkpoint records its hash)"));
    }
    // Libraries the graph file itself names, relative to the file the run was started from.
    let mut registry = registry.clone();
    let origin = info.as_ref().map(|i| i.graph.as_path());
    for lib in crate::plugin::requested(origin, &parsed.doc.plugins, &[]) {
        crate::plugin::load(&mut registry, &lib)?;
    }
    let flow = ir::build(Arc::new(parsed), &registry, &BuildOptions { overrides: loaded.meta.overrides.clone() })
        .map_err(|e| {
            let recorded: Vec<String> =
                info.iter().flat_map(|i| &i.plugins).map(|p| format!("--plugin {}", p.display())).collect();
            if e.code_str() == "graph::unknown_kind" && !recorded.is_empty() {
                e.with_help(format!("the run was trained with plugins; load them with {}", recorded.join(" ")))
            } else {
                e
            }
        })?;
    Ok(Trained { dir, checkpoint: ckpt, loaded, flow, registry, averaged: true })
}

/// Refuse to hold more than a few GiB of generated images at once.
pub fn check_image_budget(images: usize, side: usize) -> Result<()> {
    const BUDGET: usize = 4 << 30;
    let bytes = images.checked_mul(side.saturating_mul(side).saturating_mul(3 * 4));
    if bytes.is_none_or(|b| b > BUDGET) {
        return Err(Error::input(
            "cli::too_many",
            format!("{images} images of {side}×{side} would take more than 4 GiB"),
        )
        .with_help("ask for fewer captions or samples per caption"));
    }
    Ok(())
}

impl Trained {
    /// Sample with the trained weights, not G's moving averages (`--no-ema`); refused
    /// for a run that kept no average.
    pub fn without_averages(&mut self) -> Result<()> {
        let ema = &self.loaded.opt.ema;
        if ema.raw.is_empty() && ema.shadow.is_empty() {
            return Err(Error::input(
                "cli::no_ema",
                format!("--no-ema: `{}` holds no moving average of G", self.checkpoint.display()),
            )
            .with_help("only a stage with `ema: Some(decay)` keeps one; leave out --no-ema"));
        }
        self.averaged = false;
        Ok(())
    }

    /// The stage whose generator to use: `stage` (1-based) or the newest trained one.
    pub fn stage(&self, stage: Option<usize>) -> Result<usize> {
        let n = self.flow.parsed.doc.train.len();
        let newest = self.loaded.meta.position.stage.min(n.saturating_sub(1));
        let newest = if self.loaded.meta.position.stage_done || self.loaded.meta.position.step > 0 || newest == 0 {
            newest
        } else {
            newest - 1
        };
        match stage {
            None => Ok(newest),
            Some(s) if s >= 1 && s <= n => Ok(s - 1),
            Some(s) => Err(Error::input("cli::bad_stage", format!("--stage {s}: the recipe has {n} stage(s)"))),
        }
    }

    /// A parameter store with the checkpoint's weights: where a stage kept a moving
    /// average of G (`ema`), the average, or after [`Trained::without_averages`] the
    /// trained weights it replaced.
    pub fn store<D: KernelDevice>(&self, dev: D) -> Result<ParamStore<D>> {
        let mut store = ParamStore::new(dev);
        for net in &self.flow.nets {
            store.init_net(net, 0)?;
        }
        checkpoint::restore(&mut store, &self.loaded, &self.checkpoint)?;
        self.loaded.opt.ema.select(&mut store, self.averaged)?;
        Ok(store)
    }

    /// The noise a sampling command draws for stage `s`: the sampler the stage trained
    /// with (its `noise` and `noise_params`), or `kind` with attributes `attrs`
    /// (`name=value`, as typed after `--noise-attr`).
    pub fn noise(&self, s: usize, kind: Option<&str>, attrs: &[String]) -> Result<Arc<dyn NoiseSampler>> {
        let Some(kind) = kind else {
            if !attrs.is_empty() {
                return Err(Error::input("cli::bad_noise", "`--noise-attr` needs `--noise KIND`")
                    .with_help(format!("the run's sampler is `{}`", self.flow.parsed.doc.train[s].noise)));
            }
            return game::stage_noise(&self.flow, &self.registry, s);
        };
        let src = SourceFile::new("--noise-attr", attrs.join(" "));
        let k = self.registry.samplers().get(kind).ok_or_else(|| {
            Error::input("cli::bad_noise", format!("unknown sampler `{kind}`"))
                .with_help(self.registry.samplers().suggest(kind))
        })?;
        let mut items = Vec::new();
        let mut offset = 0;
        for flag in attrs {
            let Some((name, value)) = flag.split_once('=') else {
                return Err(src
                    .error(
                        "cli::bad_noise",
                        (offset, flag.len().max(1)).into(),
                        format!("`{flag}` is not `name=value`"),
                    )
                    .with_help("e.g. `--noise-attr truncation=0.5`"));
            };
            let parsed = ron::from_str::<ron::Value>(value).unwrap_or_else(|_| ron::Value::String(value.to_string()));
            items.push(Attr {
                name: name.trim().to_string(),
                value: parsed,
                span: (offset + name.len() + 1, value.len().max(1)).into(),
                key_span: Some((offset, name.len().max(1)).into()),
            });
            offset += flag.len() + 1;
        }
        let mut a = Attrs::new(items, &self.flow.vars, &src, src.whole(), kind);
        let sampler = k.configure(&mut a)?;
        a.finish()?;
        match sampler {
            SamplerImpl::Noise(n) => Ok(n),
            SamplerImpl::Mismatch(_) => Err(Error::input(
                "cli::bad_noise",
                format!("`{kind}` is not a noise sampler (it picks mismatched pairs)"),
            )),
        }
    }

    /// The folder a dataset's relative root is relative to: that of the graph file the run
    /// started from (as `run` resolved it).
    fn data_dir(&self) -> Result<PathBuf> {
        let origin = rundir::read_info(&self.dir)?.map(|i| i.graph).unwrap_or_default();
        Ok(origin.parent().unwrap_or(Path::new("")).to_path_buf())
    }

    /// The encoder typed captions for stage `s` go through (`sample --captions`,
    /// `interpolate`): the one that made the embeddings the stage trained on. A folder
    /// dataset's `embeddings.npy` names it in the record `stackflow encode` writes beside
    /// it; its weights are reopened from the recorded folder, or from `weights` when given,
    /// and must hash the same. Synthetic shapes embed with the built-in encoder.
    pub fn caption_encoder(
        &self,
        s: usize,
        registry: &Registry,
        weights: Option<&Path>,
    ) -> Result<Box<dyn SentenceEncoder>> {
        let embed_dim = self.generator(s).embed_dim;
        let DataDef::Folder { root, split } = &self.flow.parsed.doc.train[s].data else {
            return Ok(Box::new(TextEncoder::new(embed_dim)));
        };
        let npy = self.data_dir()?.join(root).join(split).join("embeddings.npy");
        let Some(record) = embeddings::read_record(&npy) else {
            return Err(Error::input(
                "sample::encoder",
                format!(
                    "stage {} trained on `{}`, whose encoder is not recorded (no embeddings.encoder.json beside \
                     it): typed captions cannot be encoded the way the model saw them",
                    s + 1,
                    npy.display()
                ),
            )
            .with_help(
                "sample with --embeddings FILE from the encoder the run trained with, or encode the dataset's \
                 captions with `stackflow encode DATASET --out DATASET/<split>/embeddings.npy` and train on those",
            ));
        };
        if record.dim != embed_dim {
            return Err(Error::input(
                "sample::encoder",
                format!(
                    "`{}` records {}-d embeddings from `{}`; stage {}'s generator reads {embed_dim}",
                    npy.display(),
                    record.dim,
                    record.encoder,
                    s + 1
                ),
            ));
        }
        encoders::reopen(registry, &record, weights)
    }

    /// What the generator of stage `s` (a checked index, see [`Trained::stage`]) reads and
    /// makes.
    pub fn generator(&self, s: usize) -> GeneratorShape {
        let st = &self.flow.stages[s];
        let (net, ports) = (&self.flow.nets[st.g], &st.g_ports);
        GeneratorShape { embed_dim: ports.embed_dim(net), z_dim: ports.z_dim(net), side: ports.image_side(net) }
    }
}

/// What a stage's generator reads and makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneratorShape {
    /// Width of a text embedding.
    pub embed_dim: usize,
    /// Width of a noise vector.
    pub z_dim: usize,
    /// Side of the square images.
    pub side: usize,
}

/// Generate `per` images for each text embedding (rows of `embeds`) with the generator of
/// stage `stage`, its noise drawn by `noise`: returns images (CHW in [-1, 1]) in
/// caption-major order and their side.
pub fn generate_many<D: KernelDevice>(
    flow: &Flow,
    (stage, noise): (usize, &dyn NoiseSampler),
    store: &mut ParamStore<D>,
    embeds: &[f32],
    per: usize,
    seed: u64,
) -> Result<(Vec<Vec<f32>>, usize)> {
    let st = &flow.stages[stage];
    let (net, ports) = (&flow.nets[st.g], &st.g_ports);
    let (e, z_dim, side) = (ports.embed_dim(net), ports.z_dim(net), ports.image_side(net));
    let n = embeds.len() / e.max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    // Batches of up to 16 per call; eval-mode BatchNorm makes batching irrelevant to results.
    let rows: Vec<usize> = (0..n).flat_map(|i| std::iter::repeat_n(i, per)).collect();
    for chunk in rows.chunks(16) {
        let emb: Vec<f32> = chunk.iter().flat_map(|&i| embeds[i * e..(i + 1) * e].iter().copied()).collect();
        let z = noise.sample(&mut rng, chunk.len(), z_dim)?;
        if z.len() != chunk.len() * z_dim {
            return Err(Error::input(
                "plugin::bad_noise",
                format!("the noise sampler gave {} values for {} × {z_dim}", z.len(), chunk.len()),
            ));
        }
        let imgs = game::generate(flow, stage, store, (&emb, &z), false, seed)?;
        let each = imgs.len() / chunk.len();
        out.extend(imgs.chunks(each).map(<[f32]>::to_vec));
    }
    Ok((out, side))
}

/// Caption-fidelity and diversity scores.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scores {
    /// Samples judged.
    pub samples: usize,
    /// Share whose background colour matches the caption.
    pub background_fidelity: f64,
    /// Share whose object colour matches the caption.
    pub object_fidelity: f64,
    /// Share matching both.
    pub both_fidelity: f64,
    /// Mean pairwise RMS distance between samples of the same caption (0 = identical).
    pub diversity: f64,
}

/// Score images against synthetic-shapes tags (`[background, object, …]`), `per` per caption.
pub fn score(images: &[Vec<f32>], side: usize, tags: &[Vec<u32>], per: usize) -> Scores {
    let (mut bg, mut obj, mut both) = (0usize, 0usize, 0usize);
    for (i, img) in images.iter().enumerate() {
        let t = &tags[i / per.max(1)];
        let j = synthetic::judge(img, side);
        let b = t.first().is_some_and(|&c| c as usize == j.background);
        let o = t.get(1).is_some_and(|&c| Some(c as usize) == j.object);
        bg += usize::from(b);
        obj += usize::from(o);
        both += usize::from(b && o);
    }
    let mut dist = Vec::new();
    for group in images.chunks(per.max(1)) {
        for a in 0..group.len() {
            for b in a + 1..group.len() {
                let d: f64 = group[a].iter().zip(&group[b]).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>()
                    / group[a].len().max(1) as f64;
                dist.push(d.sqrt());
            }
        }
    }
    let n = images.len().max(1) as f64;
    Scores {
        samples: images.len(),
        background_fidelity: bg as f64 / n,
        object_fidelity: obj as f64 / n,
        both_fidelity: both as f64 / n,
        diversity: if dist.is_empty() { 0.0 } else { dist.iter().sum::<f64>() / dist.len() as f64 },
    }
}

/// Evaluate stage `s` of a trained run on held-out synthetic shapes: the model's scores
/// and the ceiling (the same judge on the real images).
pub fn evaluate<D: KernelDevice>(
    t: &Trained,
    dev: D,
    (s, noise): (usize, &dyn NoiseSampler),
    captions: usize,
    per: usize,
    seed: u64,
) -> Result<(Scores, Scores)> {
    let mut store = t.store(dev)?;
    evaluate_store(&t.flow, (s, noise), &mut store, (captions, per), seed)
}

/// [`evaluate`] with the parameters in `store` (a run in progress).
pub fn evaluate_store<D: KernelDevice>(
    flow: &Flow,
    (s, noise): (usize, &dyn NoiseSampler),
    store: &mut ParamStore<D>,
    (captions, per): (usize, usize),
    seed: u64,
) -> Result<(Scores, Scores)> {
    let st = &flow.stages[s];
    let (net, ports) = (&flow.nets[st.g], &st.g_ports);
    let (e, side) = (ports.embed_dim(net), ports.image_side(net));
    let DataDef::SyntheticShapes { seed: data_seed, .. } = flow.parsed.doc.train[s].data else {
        return Err(Error::input("eval::dataset", "`stackflow eval` scores runs trained on SyntheticShapes"));
    };
    // The first stage's data seed when it is synthetic too, so every stage sees the same captions.
    let data_seed = match flow.parsed.doc.train[0].data {
        DataDef::SyntheticShapes { seed, .. } => seed,
        _ => data_seed,
    };
    // Held out: a different generator seed than training.
    let ds = data::SyntheticShapes::new(captions, data_seed.wrapping_add(0x0E7A_1000), e);
    check_image_budget(captions.saturating_mul(per.saturating_add(1)), side)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut embeds = Vec::new();
    let mut tags = Vec::new();
    let mut reals = Vec::new();
    for i in 0..captions {
        let smp = ds.get(i, &[side], &mut rng)?;
        embeds.extend_from_slice(&smp.embedding);
        tags.push(smp.tags);
        reals.push(smp.images[0].clone());
    }
    let (images, side) = generate_many(flow, (s, noise), store, &embeds, per, seed)?;
    Ok((score(&images, side, &tags, per), score(&reals, side, &tags, 1)))
}

/// Real images of stage `s`'s dataset (its first `count` samples, crops with a seeded
/// draw; of `split` instead of the stage's own for a folder) and one image generated from
/// each one's caption embedding, both 3×S×S CHW in [-1, 1] back to back; returns them
/// and `S`. A held-out set of synthetic shapes, as for the fidelity scores.
pub fn real_and_generated<D: KernelDevice>(
    t: &Trained,
    store: &mut ParamStore<D>,
    (s, noise): (usize, &dyn NoiseSampler),
    (count, split): (usize, Option<&str>),
    seed: u64,
) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    let (embeds, reals) = real_samples(&t.flow, s, &t.data_dir()?, (count, split), seed)?;
    let (fakes, side) = generate_many(&t.flow, (s, noise), store, &embeds, 1, seed)?;
    Ok((reals, fakes.concat(), side))
}

/// The caption embeddings and images (3×S×S CHW in [-1, 1], back to back) of the first
/// `count` samples of stage `s`'s dataset, crops drawn from `seed`: a held-out set of
/// synthetic shapes, or the folder dataset (under `data_dir`) in `split` or the stage's own.
pub fn real_samples(
    flow: &Flow,
    s: usize,
    data_dir: &Path,
    (count, split): (usize, Option<&str>),
    seed: u64,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let st = &flow.stages[s];
    let (net, ports) = (&flow.nets[st.g], &st.g_ports);
    let (e, side) = (ports.embed_dim(net), ports.image_side(net));
    let ds: Box<dyn Dataset> = match &flow.parsed.doc.train[s].data {
        DataDef::SyntheticShapes { .. } if split.is_some() => {
            return Err(Error::input(
                "cli::bad_split",
                format!("stage {} trains on synthetic shapes, which have no splits", s + 1),
            )
            .with_help("--split chooses a folder dataset's split; leave it out here"));
        }
        DataDef::SyntheticShapes { seed: data_seed, .. } => {
            Box::new(data::SyntheticShapes::new(count, data_seed.wrapping_add(0x0E7A_1000), e))
        }
        DataDef::Folder { root, split: own } => {
            let def = DataDef::Folder { root: root.clone(), split: split.unwrap_or(own).to_string() };
            data::open(&def, data_dir, e)?
        }
    };
    let count = count.min(ds.len());
    check_image_budget(count.saturating_mul(2), side)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut embeds, mut reals) = (Vec::new(), Vec::new());
    for i in 0..count {
        let smp = ds.get(i, &[side], &mut rng)?;
        embeds.extend_from_slice(&smp.embedding);
        reals.extend_from_slice(&smp.images[0]);
    }
    Ok((embeds, reals))
}
