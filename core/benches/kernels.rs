//! Kernel benchmark at StackGAN Stage-I shapes (batch 64): conv2d forward and backward
//! GFLOP/s against the machine's plain GEMM rate, and the memory-bound ops in GB/s.
//!
//! `cargo bench -p stackflow-core --bench kernels [-- FILTER]`; `REPS=n` sets repetitions,
//! `NO_CACHE=1` leaves dfdx's allocation cache off.

use std::time::Instant;

use dfdx::prelude::*;
use stackflow_core::kernels::{batch_norm, conv2d, leaky_relu, upsample_nearest, BatchNormMode, Conv2dGeom, T1, T4};

type Tp = OwnedTape<f32, Cpu>;

fn reps() -> usize {
    std::env::var("REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// CPU time of all this process's threads, in seconds (Linux; `None` elsewhere).
fn cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// Best wall-clock seconds over the repetitions, and the CPU seconds spread over the
/// worker threads (`cpu / threads`): on a machine shared with other jobs the second is
/// what the op would take with the cores to itself.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
}

impl Timing {
    const NONE: Timing = Timing { wall: f64::INFINITY, cpu: f64::INFINITY };

    fn min(self, o: Timing) -> Timing {
        Timing { wall: self.wall.min(o.wall), cpu: self.cpu.min(o.cpu) }
    }

    fn rate(&self, amount: f64) -> String {
        format!("{:8.1} ms {:6.1} /s | {:6.1} /s (cpu)", self.wall * 1e3, amount / self.wall, amount / self.cpu)
    }
}

/// Times one run of `f`.
fn measure<R>(f: impl FnOnce() -> R) -> (Timing, R) {
    let threads = rayon::current_num_threads() as f64;
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let r = f();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (c0, cpu_seconds()) {
        (Some(a), Some(b)) => (b - a) / threads,
        _ => wall,
    };
    (Timing { wall, cpu }, r)
}

/// Best of `reps()` runs of `f`, after one warm-up run.
fn time(mut f: impl FnMut()) -> Timing {
    f();
    (0..reps()).map(|_| measure(&mut f).0).fold(Timing::NONE, Timing::min)
}

/// Deterministic values in `[-1, 1)`.
fn rand_vec(n: usize) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
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
    println!("gemm {n}x{n}x{n} (reference, GFLOP)        {}", t.rate(2.0 * (n as f64).powi(3) / 1e9));
}

/// One convolution of the benchmark: name, input shape, output channels, square kernel,
/// stride, padding, bias.
struct ConvCase(&'static str, (usize, usize, usize, usize), usize, usize, usize, usize, bool);

fn conv(dev: &Cpu, case: &ConvCase) {
    let &ConvCase(name, x, co, k, s, p, bias) = case;
    let ws = (co, x.1, k, k);
    let g = Conv2dGeom::new(x, ws, bias.then_some(co), s, (p, p)).unwrap();
    let xt = rand4(dev, x);
    let wt = rand4(dev, ws);
    let bt: Option<T1<Cpu>> = bias.then(|| dev.tensor_from_vec(rand_vec(co), (co,)));
    let t_fwd = time(|| {
        conv2d(xt.clone(), wt.clone(), bt.clone(), s, p).unwrap();
    });
    let mut t_bwd = Timing::NONE;
    for _ in 0..reps() + 1 {
        let y = conv2d::<Cpu, Tp>(xt.leaky_trace(), wt.retaped(), bt.as_ref().map(|b| b.retaped()), s, p).unwrap();
        let loss = y.try_sum::<Rank0, _>().unwrap();
        let (t, grads) = measure(|| loss.backward());
        t_bwd = t_bwd.min(t);
        drop(grads);
    }
    let gf = g.flops() / 1e9;
    println!("conv {name:<33} GFLOP fwd {} || bwd {}", t_fwd.rate(gf), t_bwd.rate(2.0 * gf));
}

fn elementwise(dev: &Cpu, shape: (usize, usize, usize, usize), on: &dyn Fn(&str) -> bool) {
    let c = shape.1;
    let x = rand4(dev, shape);
    let bytes = (shape.num_elements() * 4) as f64;
    let report =
        |what: &str, t: Timing, traffic: f64| println!("{what:<9} {shape:?} GB (in+out) {}", t.rate(traffic / 1e9));
    if on("bn") {
        let gamma: T1<Cpu> = dev.ones_like(&(c,));
        let beta: T1<Cpu> = dev.zeros_like(&(c,));
        let mut rm: T1<Cpu> = dev.zeros_like(&(c,));
        let mut rv: T1<Cpu> = dev.ones_like(&(c,));
        let t = time(|| {
            let (g, b) = (gamma.clone(), beta.clone());
            batch_norm(x.clone(), g, b, &mut rm, &mut rv, BatchNormMode { train: true, momentum: 0.1, eps: 1e-5 })
                .unwrap();
        });
        report("bn fwd", t, 2.0 * bytes);
        let mut tb = Timing::NONE;
        for _ in 0..reps() + 1 {
            let (g, b) = (gamma.retaped(), beta.retaped());
            let y = batch_norm::<Cpu, Tp>(
                x.leaky_trace(),
                g,
                b,
                &mut rm,
                &mut rv,
                BatchNormMode { train: true, momentum: 0.1, eps: 1e-5 },
            )
            .unwrap();
            let loss = y.try_sum::<Rank0, _>().unwrap();
            tb = tb.min(measure(|| drop(loss.backward())).0);
        }
        report("bn bwd", tb, 3.0 * bytes);
    }
    if on("leaky") {
        let t = time(|| {
            leaky_relu(x.clone(), 0.2).unwrap();
        });
        report("leaky fwd", t, 2.0 * bytes);
    }
    if on("up2") {
        let t = time(|| {
            upsample_nearest(x.clone(), 2).unwrap();
        });
        report("up2 fwd", t, 5.0 * bytes);
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let on = |name: &str| name.contains(&filter);
    let dev = Cpu::default();
    // What the trainer should do too: reuse dropped tensors' buffers instead of mapping
    // fresh pages for every activation and gradient.
    let cache = std::env::var_os("NO_CACHE").is_none();
    if cache {
        dev.enable_cache();
    }
    println!("rayon threads: {}, dfdx allocation cache: {cache}", rayon::current_num_threads());
    if on("gemm") {
        gemm_peak();
    }
    let convs = [
        ConvCase("G up1 1024->512 3x3 s1p1 @8", (64, 1024, 8, 8), 512, 3, 1, 1, false),
        ConvCase("G up2 512->256 3x3 s1p1 @16", (64, 512, 16, 16), 256, 3, 1, 1, false),
        ConvCase("G up3 256->128 3x3 s1p1 @32", (64, 256, 32, 32), 128, 3, 1, 1, false),
        ConvCase("G up4 128->64 3x3 s1p1 @64", (64, 128, 64, 64), 64, 3, 1, 1, false),
        ConvCase("G img 64->3 3x3 s1p1 @64", (64, 64, 64, 64), 3, 3, 1, 1, false),
        ConvCase("D c1 3->64 4x4 s2p1 @64", (64, 3, 64, 64), 64, 4, 2, 1, false),
        ConvCase("D 64->128 4x4 s2p1 @64 (brief)", (64, 64, 64, 64), 128, 4, 2, 1, false),
        ConvCase("D c2 64->128 4x4 s2p1 @32", (64, 64, 32, 32), 128, 4, 2, 1, false),
        ConvCase("D c3 128->256 4x4 s2p1 @16", (64, 128, 16, 16), 256, 4, 2, 1, false),
        ConvCase("D c4 256->512 4x4 s2p1 @8", (64, 256, 8, 8), 512, 4, 2, 1, false),
        ConvCase("D joint 640->512 3x3 s1p1 @4", (64, 640, 4, 4), 512, 3, 1, 1, false),
        ConvCase("D logit 512->1 4x4 s4p0 @4 +bias", (64, 512, 4, 4), 1, 4, 4, 0, true),
    ];
    // The quickstart's Stage-I (batch 16, gf 16, df 16): small channel counts, where
    // im2col and GEMM packing cost more than the multiply-adds.
    let quickstart = [
        ConvCase("qs G up1 128->64 3x3 s1p1 @8", (16, 128, 8, 8), 64, 3, 1, 1, false),
        ConvCase("qs G up2 64->32 3x3 s1p1 @16", (16, 64, 16, 16), 32, 3, 1, 1, false),
        ConvCase("qs G up3 32->16 3x3 s1p1 @32", (16, 32, 32, 32), 16, 3, 1, 1, false),
        ConvCase("qs G up4 16->8 3x3 s1p1 @64", (16, 16, 64, 64), 8, 3, 1, 1, false),
        ConvCase("qs G img 8->3 3x3 s1p1 @64", (16, 8, 64, 64), 3, 3, 1, 1, false),
        ConvCase("qs D e1 3->16 4x4 s2p1 @64", (16, 3, 64, 64), 16, 4, 2, 1, false),
        ConvCase("qs D e2 16->32 4x4 s2p1 @32", (16, 16, 32, 32), 32, 4, 2, 1, false),
        ConvCase("qs D e3 32->64 4x4 s2p1 @16", (16, 32, 16, 16), 64, 4, 2, 1, false),
        ConvCase("qs D e4 64->128 4x4 s2p1 @8", (16, 64, 8, 8), 128, 4, 2, 1, false),
        ConvCase("qs D head 128->128 3x3 s1p1 @4", (16, 128, 4, 4), 128, 3, 1, 1, false),
    ];
    for case in &quickstart {
        if on(case.0) {
            conv(&dev, case);
        }
    }
    for case in &convs {
        if on("conv") || on(case.0) {
            conv(&dev, case);
        }
    }
    for shape in [(64, 512, 16, 16), (64, 128, 64, 64)] {
        let on_op = |op: &str| on("elementwise") || on(op);
        elementwise(&dev, shape, &on_op);
    }
}
