//! A ×2 upsampling that only a 3×3 convolution reads is computed through that convolution
//! (`kernels::upsample2_conv3x3`): Stage-I's generator, run wanting only its outputs,
//! gives the outputs, input gradients and parameter gradients of the same net run op by
//! op (its upsampled maps wanted too, which keeps them out of the fusion).
//!
//! Stage-I, not Stage-II: in Stage-II's generator a rounding-level difference flips a ReLU
//! input near zero, and a flipped element moves whole gradient tensors by ~1e-2 (the
//! reference fixtures' tolerances for Stage-II gradients are loose for the same reason).

use dfdx::prelude::{Cpu, OwnedTape};
use stackflow_core::exec::plan::NetPlan;
use stackflow_core::exec::{grad_of, NoiseSource, ParamStore, Runner, Val};
use stackflow_core::ir::Net;
use stackflow_core::ops::Ops;

use crate::common::{add_weighted_sum, flow};

/// Outputs, then the gradients of every input and trainable parameter, of a weighted sum
/// of the outputs, in train mode; `also` are further wanted values.
fn run(net: &Net, store: &mut ParamStore<Cpu>, also: &[usize]) -> Vec<Vec<f32>> {
    let dev = store.dev.clone();
    let mut noise = NoiseSource::seeded(3);
    let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev.clone(), true, &mut noise);
    let feeds: Vec<(usize, _)> = net
        .inputs
        .iter()
        .enumerate()
        .map(|(k, (_, v))| {
            let dims: Vec<usize> = std::iter::once(2).chain(net.values[*v].shape.dims().iter().copied()).collect();
            let n: usize = dims.iter().product();
            let data = (0..n).map(|i| ((i * 7919 + k * 104_729) % 2001) as f32 / 1000.0 - 1.0).collect();
            (*v, r.push(Val::from_host(&dev, data, &dims).unwrap()))
        })
        .collect();
    let outputs: Vec<usize> = net.outputs.iter().map(|(_, v)| *v).collect();
    let wanted: Vec<usize> = outputs.iter().chain(also).copied().collect();
    let outs = r.run_net(net, store, &feeds, &wanted).unwrap();
    let mut seen = Vec::new();
    let mut loss = None;
    for (k, h) in outs[..outputs.len()].iter().enumerate() {
        seen.push(r.read(*h).unwrap());
        let n = seen[k].len();
        let weights: Vec<f32> = (0..n).map(|i| ((i * 31 + k) % 17) as f32 / 17.0 - 0.5).collect();
        loss = Some(add_weighted_sum(&mut r, loss, *h, &weights));
    }
    let params: Vec<Val<Cpu>> =
        net.trainable_params().iter().map(|&p| store.get(&net.params[p].path).unwrap().value.clone()).collect();
    let inputs: Vec<Val<Cpu>> = feeds.iter().map(|(_, h)| r.val(*h).unwrap().clone()).collect();
    let mut grads = r.backward(loss.unwrap()).unwrap();
    seen.extend(inputs.iter().chain(&params).map(|v| grad_of(&mut grads, v)));
    seen
}

#[test]
fn an_upsampling_read_by_a_convolution_is_computed_through_it() {
    let flow = flow();
    let net = flow.net("g1").unwrap();
    let upsampled: Vec<usize> =
        net.nodes.iter().filter(|n| n.kind == "core.upsample_nearest").map(|n| n.outputs[0]).collect();
    let fed: Vec<usize> = net.inputs.iter().map(|(_, v)| *v).collect();
    let outputs: Vec<usize> = net.outputs.iter().map(|(_, v)| *v).collect();
    let fused = NetPlan::new(net, &fed, &outputs).unwrap().upsamples_into_conv;
    assert_eq!(fused.len(), 4, "each of g1's four up-blocks is an upsampling read by a 3×3 convolution");
    let all: Vec<usize> = outputs.iter().chain(&upsampled).copied().collect();
    assert!(NetPlan::new(net, &fed, &all).unwrap().upsamples_into_conv.is_empty(), "wanted values are not fused");

    let mut store = ParamStore::new(Cpu::default());
    for n in &flow.nets {
        store.init_net(n, 11).unwrap();
    }
    let one_by_one = run(net, &mut store.clone(), &upsampled);
    let through = run(net, &mut store, &[]);
    assert_eq!(one_by_one.len(), 3 + 2 + net.trainable_params().len());
    for (k, (a, b)) in one_by_one.iter().zip(&through).enumerate() {
        assert_eq!(a.len(), b.len(), "value {k}");
        let scale = a.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst <= 1e-5 * scale, "value {k}: differs by {worst} at scale {scale}");
    }
}
