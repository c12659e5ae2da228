//! `stackflow forward`: one forward pass of a net on tensors from a safetensors file.

use std::path::PathBuf;

use stackflow_core::exec::forward::{forward_named, Named};
use stackflow_core::exec::weights::{self, Naming};
use stackflow_core::exec::{ParamStore, Val};
use stackflow_core::kernels::KernelDevice;
use stackflow_core::registry::Registry;
use stackflow_core::Result;

use super::{pick_net, Device, GraphArgs};

/// Train or eval mode.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// BatchNorm uses batch statistics.
    Train,
    /// BatchNorm uses running statistics.
    Eval,
}

/// Arguments of `forward`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// The net to run.
    #[arg(long)]
    pub net: String,
    /// Weights (safetensors); without it the net is freshly initialised from `--seed`.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// How tensors in the weights file are named: `native` (stackflow's parameter paths)
    /// or a `weight_maps` entry of the graph (`stackgan-pytorch`, `pytorch-fid`).
    #[arg(long, default_value = "native")]
    pub weights_format: String,
    /// Inputs (safetensors) named like the net's inputs; CA noise as `eps.<node>`.
    #[arg(long)]
    pub inputs: PathBuf,
    /// BatchNorm mode.
    #[arg(long, value_enum, default_value = "eval")]
    pub mode: Mode,
    /// Where to write the outputs (safetensors, named like the net's outputs).
    #[arg(long)]
    pub output: PathBuf,
    /// Seed for initialisation and for noise not given in the inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
}

/// Run `forward`.
pub fn run(a: Args, kinds: &Registry) -> Result<()> {
    super::on_device!(a.device, a.seed, |dev| run_on(dev, &a, kinds))
}

fn run_on<D: KernelDevice>(dev: D, a: &Args, kinds: &Registry) -> Result<()> {
    let flow = a.graph.build(kinds)?;
    let net = pick_net(&flow, &a.net)?;
    let naming = match a.weights_format.as_str() {
        "native" => Naming::Native,
        map => Naming::Mapped(map.to_string()),
    };
    let mut store = ParamStore::new(dev);
    match &a.weights {
        Some(w) => weights::load(&mut store, &flow, net, w, &naming)?,
        None => store.init_net(net, a.seed)?,
    }
    let inputs: Named = weights::read_all(&a.inputs)?.into_iter().collect();
    let (outs, sampled) = forward_named(&flow, net, &mut store, &inputs, a.mode == Mode::Train, &naming, a.seed)?;
    if !sampled.is_empty() {
        eprintln!("note: no noise given for {}; sampled with seed {}", sampled.join(", "), a.seed);
    }
    let tensors = outs
        .into_iter()
        .map(|(name, (shape, data))| Ok((name, Val::from_host(&store.dev, data, &shape)?)))
        .collect::<Result<Vec<_>>>()?;
    weights::save(&a.output, &tensors, None)?;
    println!("wrote {} output(s) of net `{}` to {}", tensors.len(), net.name, a.output.display());
    Ok(())
}
