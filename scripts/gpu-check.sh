#!/usr/bin/env bash
# GPU check: build with CUDA, run the golden tests on the GPU, and bench both stages.
# Needs an NVIDIA driver, the CUDA toolkit (nvcc) and a Rust toolchain.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check-out}"
mkdir -p "$OUT"
{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
  command -v nvcc && nvcc --version | tail -2
  command -v cargo && cargo --version
} 2>&1 | tee "$OUT/env.txt"
command -v cargo >/dev/null || { echo "no cargo on this machine"; exit 3; }
command -v nvcc >/dev/null || { echo "no nvcc: dfdx's CUDA kernels cannot be built"; exit 3; }
set -e
echo "== build (release, cuda)"
cargo build --release -p stackflow-cli --features cuda 2>&1 | tail -3
echo "== golden tests on the GPU"
cargo test --release -p stackflow-core --features cuda --test golden -- --nocapture 2>&1 | tail -15 | tee "$OUT/golden.txt"
echo "== bench"
for args in "--stage 1 --batch 64" "--stage 2 --batch 4"; do
  ./target/release/stackflow bench graphs/stackgan256.ron $args --device cuda --iters 5 --warmup 2 --json | tee -a "$OUT/bench.jsonl"
done
