//! Every registered loss and sampler kind, built-in or from a plugin, driven from the
//! registry with the configurations each declares (`LossKind::probes`, a plugin's
//! `PROBES`). A loss gives finite D and G losses whose gradients w.r.t. every
//! discriminator output agree with finite differences; a noise sampler draws finite,
//! seed-determined values; a mismatch sampler pairs each image with another sample's text.

use dfdx::prelude::{Cpu, OwnedTape};
use rand::SeedableRng;
use stackflow_core::exec::{grad_of, NoiseSource, Runner};
use stackflow_core::kind::{Loss, Probe, SamplerImpl};
use stackflow_core::ops::Ops;

use crate::plugins::{fd, registry, with_attrs, Probs};

/// Which loss of a stage.
#[derive(Clone, Copy, Debug)]
enum Side {
    D,
    G,
}

/// One side's loss and its gradients w.r.t. the outputs of every pair (real, mismatched,
/// fake). G's loss sees D's outputs on real pairs as constants, as the trainer gives them.
fn side(l: &dyn Loss, side: Side, [real, wrong, fake]: [&Probs; 3]) -> (f32, Vec<Vec<f32>>) {
    let dev = Cpu::default();
    let mut noise = NoiseSource::seeded(0);
    let mut r: Runner<Cpu, OwnedTape<f32, Cpu>> = Runner::new(dev, true, &mut noise);
    let (ro, wo, fo) = (real.push(&mut r), wrong.push(&mut r), fake.push(&mut r));
    let total = match side {
        Side::D => l.d_loss(&mut r, &ro, &wo, &fo).unwrap().total,
        Side::G => {
            let constants = ro.iter().map(|(n, t)| (n.clone(), r.detach(*t).unwrap())).collect();
            l.g_loss(&mut r, &constants, &fo).unwrap().total
        }
    };
    let v = r.read(total).unwrap()[0];
    let mut grads = r.backward(total).unwrap();
    let all = real.vals.iter().chain(&wrong.vals).chain(&fake.vals);
    (v, all.map(|(_, v)| grad_of(&mut grads, v)).collect())
}

#[test]
fn every_loss_passes_a_gradient_check_on_its_probes() {
    let reg = registry();
    let dev = Cpu::default();
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for (kind, k, _) in reg.losses().iter() {
        for Probe { attrs, .. } in k.probes() {
            let loss = with_attrs(kind, &attrs, |a| k.configure(a).unwrap());
            let needs = loss.needs();
            let all: Vec<String> = needs.iter().chain(&loss.optional()).cloned().collect();
            let (all, needs): (Vec<&str>, Vec<&str>) =
                (all.iter().map(String::as_str).collect(), needs.iter().map(String::as_str).collect());
            let sets = [Probs::new(&dev, &all, 4, 1), Probs::new(&dev, &needs, 3, 2), Probs::new(&dev, &all, 4, 3)];
            let outputs: Vec<(usize, usize)> =
                sets.iter().enumerate().flat_map(|(s, p)| (0..p.vals.len()).map(move |o| (s, o))).collect();
            for which in [Side::D, Side::G] {
                let (v, grads) = side(&*loss, which, [&sets[0], &sets[1], &sets[2]]);
                if !v.is_finite() {
                    failures.push(format!("{kind} {attrs}: {which:?} loss {v}"));
                    continue;
                }
                // Finite differences w.r.t. each output of each pair, one at a time.
                for (&(s, o), analytic) in outputs.iter().zip(&grads) {
                    let value = |x: &[f32]| {
                        let mut moved = sets.clone();
                        moved[s].set(o, &dev, x);
                        side(&*loss, which, [&moved[0], &moved[1], &moved[2]]).0
                    };
                    let numeric = match (which, s) {
                        (Side::G, 0) => vec![0.0; analytic.len()],
                        _ => fd(&value, &sets[s].vals[o].1.to_vec(), 1e-3),
                    };
                    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
                        if (a - n).abs() > 2e-2 * (1.0 + a.abs().max(n.abs())) {
                            let name = &sets[s].vals[o].0;
                            failures.push(format!("{kind} {attrs}: {which:?}: d/d{name}[{i}] of pair {s}: {a} vs {n}"));
                        }
                    }
                }
            }
            checked.push(kind.to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for k in ["stackgan.matching_aware_bce", "gan_losses.hinge", "gan_losses.relativistic"] {
        assert!(checked.iter().any(|c| c == k), "{k} was not checked: {checked:?}");
    }
}

#[test]
fn every_sampler_draws_from_the_seed_on_its_probes() {
    let reg = registry();
    let seeded = |s: u64| rand::rngs::StdRng::seed_from_u64(s);
    let tags: Vec<Vec<u32>> = (0..6).map(|i| vec![i % 2, i % 3, i]).collect();
    let mut checked = Vec::new();
    for (kind, k, _) in reg.samplers().iter() {
        for Probe { attrs, .. } in k.probes() {
            match with_attrs(kind, &attrs, |a| k.configure(a).unwrap()) {
                SamplerImpl::Noise(n) => {
                    let a = n.sample(&mut seeded(1), 4, 8).unwrap();
                    assert_eq!(a.len(), 32, "{kind} {attrs}");
                    assert!(a.iter().all(|v| v.is_finite()), "{kind} {attrs}: {a:?}");
                    assert_eq!(a, n.sample(&mut seeded(1), 4, 8).unwrap(), "{kind} {attrs}: one seed, one draw");
                    assert_ne!(a, n.sample(&mut seeded(2), 4, 8).unwrap(), "{kind} {attrs}: seeds differ");
                }
                SamplerImpl::Mismatch(m) => {
                    let pairs = m.pairs(&mut seeded(1), &tags).unwrap();
                    assert!(!pairs.is_empty(), "{kind} {attrs}");
                    assert!(pairs.iter().all(|&(i, j)| i < 6 && j < 6 && i != j), "{kind} {attrs}: {pairs:?}");
                    assert_eq!(pairs, m.pairs(&mut seeded(1), &tags).unwrap(), "{kind} {attrs}: one seed, one draw");
                }
            }
            checked.push(kind.to_string());
        }
    }
    for k in ["core.normal", "samplers.truncated_normal", "samplers.class_aware", "stackgan.batch_shift"] {
        assert!(checked.iter().any(|c| c == k), "{k} was not checked: {checked:?}");
    }
}
