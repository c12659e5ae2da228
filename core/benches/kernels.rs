//! Kernel benchmark at StackGAN Stage-I shapes (batch 64): conv2d forward and backward
//! GFLOP/s against the machine's plain GEMM rate, and the memory-bound ops in GB/s.
//!
//! `cargo bench -p stackflow-core --bench kernels [-- FILTER]`; `REPS=n` sets repetitions,
//! `NO_CACHE=1` leaves dfdx's allocation cache off.

use std::time::Instant;

use dfdx::prelude::*;
use stackflow_core::kernels::{
    batch_norm, conv2d, leaky_relu, upsample_nearest, Conv2dGeom, T1, T4,
};

type Tp = OwnedTape<f32, Cpu>;

fn reps() -> usize {
    std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Best-of-`reps()` seconds of `f`, after one warm-up run.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    (0..reps())
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Deterministic values in `[-1, 1)`.
fn rand_vec(n: usize) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn rand4(dev: &Cpu, s: (usize, usize, usize, usize)) -> T4<Cpu> {
    dev.tensor_from_vec(rand_vec(s.num_elements()), s)
}

fn gemm_peak() {
    let n = 2048;
    let a = vec![1.0f32; n * n];
    let b = vec![1.0f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let t = time(|| unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            n as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    });
    let gf = 2.0 * (n as f64).powi(3) / t / 1e9;
    println!(
        "gemm {n}x{n}x{n} (reference)             {:8.1} ms  {gf:7.1} GFLOP/s",
        t * 1e3
    );
}

fn conv(
    dev: &Cpu,
    name: &str,
    x: (usize, usize, usize, usize),
    co: usize,
    k: usize,
    s: usize,
    p: usize,
    bias: bool,
) {
    let ws = (co, x.1, k, k);
    let g = Conv2dGeom::new(x, ws, bias.then_some(co), s, p).unwrap();
    let xt = rand4(dev, x);
    let wt = rand4(dev, ws);
    let bt: Option<T1<Cpu>> = bias.then(|| dev.tensor_from_vec(rand_vec(co), (co,)));
    let t_fwd = time(|| {
        conv2d(xt.clone(), wt.clone(), bt.clone(), s, p).unwrap();
    });
    let mut t_bwd = f64::INFINITY;
    for _ in 0..reps() + 1 {
        let y = conv2d::<Cpu, Tp>(
            xt.leaky_trace(),
            wt.retaped(),
            bt.as_ref().map(|b| b.retaped()),
            s,
            p,
        )
        .unwrap();
        let loss = y.try_sum::<Rank0, _>().unwrap();
        let t = Instant::now();
        let grads = loss.backward();
        t_bwd = t_bwd.min(t.elapsed().as_secs_f64());
        drop(grads);
    }
    let f = g.flops();
    println!(
        "conv {name:<34} fwd {:8.1} ms {:7.1} GFLOP/s | bwd {:8.1} ms {:7.1} GFLOP/s",
        t_fwd * 1e3,
        f / t_fwd / 1e9,
        t_bwd * 1e3,
        2.0 * f / t_bwd / 1e9
    );
}

fn elementwise(dev: &Cpu, shape: (usize, usize, usize, usize)) {
    let c = shape.1;
    let x = rand4(dev, shape);
    let bytes = (shape.num_elements() * 4) as f64;
    let gamma: T1<Cpu> = dev.ones_like(&(c,));
    let beta: T1<Cpu> = dev.zeros_like(&(c,));
    let mut rm: T1<Cpu> = dev.zeros_like(&(c,));
    let mut rv: T1<Cpu> = dev.ones_like(&(c,));

    let report = |what: &str, t: f64, traffic: f64| {
        println!(
            "{what:<10} {shape:?}  {:8.2} ms  {:6.1} GB/s (in+out)",
            t * 1e3,
            traffic / t / 1e9
        )
    };
    let t = time(|| {
        batch_norm(
            x.clone(),
            gamma.clone(),
            beta.clone(),
            &mut rm,
            &mut rv,
            true,
            0.1,
            1e-5,
        )
        .unwrap();
    });
    report("bn fwd", t, 2.0 * bytes);
    let mut tb = f64::INFINITY;
    for _ in 0..reps() + 1 {
        let y = batch_norm::<Cpu, Tp>(
            x.leaky_trace(),
            gamma.retaped(),
            beta.retaped(),
            &mut rm,
            &mut rv,
            true,
            0.1,
            1e-5,
        )
        .unwrap();
        let loss = y.try_sum::<Rank0, _>().unwrap();
        let t = Instant::now();
        drop(loss.backward());
        tb = tb.min(t.elapsed().as_secs_f64());
    }
    report("bn bwd", tb, 3.0 * bytes);
    let t = time(|| {
        leaky_relu(x.clone(), 0.2).unwrap();
    });
    report("leaky fwd", t, 2.0 * bytes);
    let t = time(|| {
        upsample_nearest(x.clone(), 2).unwrap();
    });
    report("up2 fwd", t, 5.0 * bytes);
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let on = |name: &str| name.contains(&filter);
    let dev = Cpu::default();
    // What the trainer should do too: reuse dropped tensors' buffers instead of mapping
    // fresh pages for every activation and gradient.
    let cache = std::env::var_os("NO_CACHE").is_none();
    if cache {
        dev.enable_cache();
    }
    println!(
        "rayon threads: {}, dfdx allocation cache: {cache}",
        rayon::current_num_threads()
    );
    if on("gemm") {
        gemm_peak();
    }
    let convs: &[(
        &str,
        (usize, usize, usize, usize),
        usize,
        usize,
        usize,
        usize,
        bool,
    )] = &[
        (
            "G up1 1024->512 3x3 s1p1 @8",
            (64, 1024, 8, 8),
            512,
            3,
            1,
            1,
            false,
        ),
        (
            "G up2 512->256 3x3 s1p1 @16",
            (64, 512, 16, 16),
            256,
            3,
            1,
            1,
            false,
        ),
        (
            "G up3 256->128 3x3 s1p1 @32",
            (64, 256, 32, 32),
            128,
            3,
            1,
            1,
            false,
        ),
        (
            "G up4 128->64 3x3 s1p1 @64",
            (64, 128, 64, 64),
            64,
            3,
            1,
            1,
            false,
        ),
        (
            "G img 64->3 3x3 s1p1 @64",
            (64, 64, 64, 64),
            3,
            3,
            1,
            1,
            false,
        ),
        (
            "D c1 3->64 4x4 s2p1 @64",
            (64, 3, 64, 64),
            64,
            4,
            2,
            1,
            false,
        ),
        (
            "D 64->128 4x4 s2p1 @64 (brief)",
            (64, 64, 64, 64),
            128,
            4,
            2,
            1,
            false,
        ),
        (
            "D c2 64->128 4x4 s2p1 @32",
            (64, 64, 32, 32),
            128,
            4,
            2,
            1,
            false,
        ),
        (
            "D c3 128->256 4x4 s2p1 @16",
            (64, 128, 16, 16),
            256,
            4,
            2,
            1,
            false,
        ),
        (
            "D c4 256->512 4x4 s2p1 @8",
            (64, 256, 8, 8),
            512,
            4,
            2,
            1,
            false,
        ),
        (
            "D joint 640->512 3x3 s1p1 @4",
            (64, 640, 4, 4),
            512,
            3,
            1,
            1,
            false,
        ),
        (
            "D logit 512->1 4x4 s4p0 @4 +bias",
            (64, 512, 4, 4),
            1,
            4,
            4,
            0,
            true,
        ),
    ];
    for &(name, x, co, k, s, p, bias) in convs {
        if on("conv") || on(name) {
            conv(&dev, name, x, co, k, s, p, bias);
        }
    }
    if on("elementwise") {
        for shape in [(64, 512, 16, 16), (64, 128, 64, 64)] {
            elementwise(&dev, shape);
        }
    }
}
