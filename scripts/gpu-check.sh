#!/usr/bin/env bash
# GPU check with prebuilt binaries (scripts/build-cuda.sh): needs no Rust toolchain and no
# network, only the NVIDIA driver and the CUDA 13 libraries (cuBLAS, NVRTC) as Python wheels
# or a CUDA install. Run from the repository root on the GPU machine:
#
#   scripts/gpu-check.sh                  # writes gpu-check-out/
#   QUICKSTART_STEPS=0 scripts/gpu-check.sh   # skip the quickstart run
#
# 1. the golden tests on the GPU: forward parity, gradients and BatchNorm statistics of
#    every net, and one training iteration of each stage (Adam with its moments on the
#    device);
# 2. `bench --device cuda` for Stage-I batch 64 and Stage-II batch 4;
# 3. the quickstart trained on CUDA for QUICKSTART_STEPS iterations (default 400), then
#    sampled and evaluated.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check-out}"
BIN="${BIN:-dist/stackflow-cuda}"
GOLDEN="${GOLDEN:-dist/golden-cuda}"
STEPS="${QUICKSTART_STEPS:-400}"
mkdir -p "$OUT"

# The CUDA 13 libraries from Python wheels, where no CUDA install provides them.
if ! ldconfig -p 2>/dev/null | grep -q libcublas.so.13; then
  for lib in $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null); do
    [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"
  done
fi
{
  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1 | head -3
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  ls -la "$BIN" "$GOLDEN" 2>&1
  ldd "$BIN" | grep -E "cuda|cublas|nvrtc"
} 2>&1 | tee "$OUT/env.txt"
[ -x "$BIN" ] && [ -x "$GOLDEN" ] || { echo "no prebuilt binaries: run scripts/build-cuda.sh where Rust is"; exit 3; }

status=0
echo "== golden tests on the GPU"
STACKFLOW_ROOT="$PWD" "$GOLDEN" _on_cuda --nocapture 2>&1 | tail -15 | tee "$OUT/golden.txt"
grep -q "test result: ok. 2 passed" "$OUT/golden.txt" || status=1

echo "== bench"
for args in "--stage 1 --batch 64" "--stage 2 --batch 4"; do
  "$BIN" bench graphs/stackgan256.ron $args --device cuda --iters 5 --warmup 2 --json | tee -a "$OUT/bench.jsonl" || status=1
done

if [ "$STEPS" -gt 0 ]; then
  echo "== quickstart on CUDA, $STEPS steps"
  rm -rf "$OUT/quickstart"
  { time "$BIN" run graphs/quickstart.ron --out "$OUT/quickstart" --device cuda --max-steps "$STEPS"; } 2>&1 | tail -5 | tee "$OUT/quickstart.txt" || status=1
  "$BIN" sample "$OUT/quickstart" --out-dir "$OUT/quickstart-samples" --device cuda 2>&1 | tail -2 | tee -a "$OUT/quickstart.txt"
  "$BIN" eval "$OUT/quickstart" --device cuda 2>&1 | tail -6 | tee -a "$OUT/quickstart.txt"
fi
echo "== done (status $status): $OUT"
exit $status
