//! The FID Inception-v3 as a feature extractor: the graph shipped in the binary (or one
//! the user names), its weights from a pytorch-fid state_dict, run in eval mode in batches.

use std::sync::Arc;

use crate::dsl;
use crate::error::{Error, Result, SourceFile};
use crate::exec::forward::{forward_named, Named};
use crate::exec::weights::{self, Naming};
use crate::exec::ParamStore;
use crate::ir::{self, BuildOptions, Flow};
use crate::kernels::KernelDevice;
use crate::registry::Registry;

use super::stats::Samples;
use super::ExtractorOptions;

/// The shipped graph, `graphs/metrics/fid_inception.ron`.
pub const GRAPH: &str = include_str!("../../../graphs/metrics/fid_inception.ron");
/// The name diagnostics give the shipped graph.
pub const GRAPH_NAME: &str = "graphs/metrics/fid_inception.ron";
/// The weight map its weights are read through.
pub const WEIGHT_MAP: &str = "pytorch-fid";
/// The net that computes the features.
pub const NET: &str = "inception";

/// Features of a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// The 2048-d pool features (FID, KID, precision, recall).
    pub pool: Samples,
    /// Class logits (Inception Score).
    pub logits: Samples,
}

impl Features {
    /// Adds the samples of `other` after these.
    pub fn append(&mut self, other: Features) {
        self.pool.data.extend(other.pool.data);
        self.logits.data.extend(other.logits.data);
    }
}

/// A loaded feature extractor for images of one size.
pub struct Inception<D: KernelDevice> {
    flow: Flow,
    store: ParamStore<D>,
    image_size: usize,
    batch: usize,
}

impl<D: KernelDevice> Inception<D> {
    /// Builds the graph (`opts.graph`, or the shipped one) for `image_size`² inputs with
    /// the `--set` style `opts.overrides`, and loads `opts.weights` through its
    /// `pytorch-fid` map.
    pub fn open(dev: D, registry: &Registry, opts: &ExtractorOptions, image_size: usize) -> Result<Self> {
        let parsed = match &opts.graph {
            Some(path) => dsl::load(path)?,
            None => dsl::parse(SourceFile::new(GRAPH_NAME, GRAPH))?,
        };
        let mut sets = vec![format!("image_size={image_size}")];
        sets.extend(opts.overrides.iter().cloned());
        let flow = ir::build(Arc::new(parsed), registry, &BuildOptions { overrides: sets })?;
        let net = flow
            .net(NET)
            .ok_or_else(|| Error::input("metrics::no_net", format!("{} has no net `{NET}`", flow.parsed.src.name)))?;
        for (port, want) in [("pool", 1), ("logits", 1)] {
            if net.output(port).is_none_or(|v| net.values[v].shape.dims().len() != want) {
                return Err(Error::input(
                    "metrics::no_net",
                    format!("net `{NET}` of {} needs a vector output `{port}`", flow.parsed.src.name),
                ));
            }
        }
        let mut store = ParamStore::new(dev);
        weights::load(&mut store, &flow, net, &opts.weights, &Naming::Mapped(WEIGHT_MAP.into())).map_err(|e| {
            e.with_help(
                "the weights are pytorch-fid's FID Inception state_dict as safetensors (README: `stackflow metrics`)",
            )
        })?;
        Ok(Self { flow, store, image_size, batch: opts.batch.max(1) })
    }

    /// The side of the images this extractor takes.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Features of `images` (3×S×S each, CHW, in [-1, 1]), the options' `batch` at a time;
    /// `progress` hears how many are done.
    pub fn features(&mut self, images: &[f32], progress: &mut dyn FnMut(usize)) -> Result<Features> {
        let per = 3 * self.image_size * self.image_size;
        if !images.len().is_multiple_of(per) {
            return Err(Error::other(
                "metrics::shape",
                format!("{} values are not whole {per}-value images", images.len()),
            ));
        }
        let n = images.len() / per;
        let (mut pool, mut logits, mut dims) = (Vec::new(), Vec::new(), (0, 0));
        let net = self.flow.net(NET).ok_or_else(|| Error::other("metrics::no_net", "the net went missing"))?;
        let naming = Naming::Mapped(WEIGHT_MAP.into());
        for start in (0..n).step_by(self.batch) {
            let b = self.batch.min(n - start);
            let mut inputs = Named::new();
            let data = images[start * per..(start + b) * per].to_vec();
            inputs.insert("img".into(), (vec![b, 3, self.image_size, self.image_size], data));
            let (out, _) = forward_named(&self.flow, net, &mut self.store, &inputs, false, &naming, 0)?;
            for (name, acc, dim) in [("pool", &mut pool, &mut dims.0), ("logits", &mut logits, &mut dims.1)] {
                let (shape, values) = &out[name];
                *dim = shape[1];
                acc.extend(values.iter().map(|&v| v as f64));
            }
            progress(start + b);
        }
        Ok(Features { pool: Samples::new(pool, dims.0.max(1)), logits: Samples::new(logits, dims.1.max(1)) })
    }
}
