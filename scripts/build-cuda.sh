#!/usr/bin/env bash
# Build `stackflow` with `--features cuda` on a machine with no GPU and no CUDA install.
#
# The CUDA 13 toolkit pieces come as Python wheels from the package registry: the compiler
# (nvcc, ptxas, cicc), the headers, and the runtime libraries the binary links (cuBLAS,
# cuBLASLt, NVRTC). nvcc compiles dfdx's kernels to PTX for the chosen architecture; the
# driver library is only a link stub here (a real driver provides it at run time).
#
#   scripts/build-cuda.sh                 # toolchain in ~/.cache/stackflow-cuda, binary in dist/
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # another GPU generation (default 90: H100/H200)
#
# The wheels are pinned to CUDA 13.0 so that the PTX they emit (ISA 9.0) loads on a
# driver of the 580 series (CUDA 13.0) or newer. Output in dist/: stackflow-cuda (the
# stripped binary), golden-cuda (core's test suite binary; gpu-check.sh runs its golden tests) and
# cuda-build.txt (sizes and the libraries each needs).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLCHAIN="${STACKFLOW_CUDA_TOOLCHAIN:-$HOME/.cache/stackflow-cuda}"
CAP="${CUDA_COMPUTE_CAP:-90}"
CUDA_VERSION="13.0"
PY="$TOOLCHAIN/py"
ROOT="$TOOLCHAIN/root"

step() { printf '== %s\n' "$*"; }

step "CUDA $CUDA_VERSION wheels into $PY"
mkdir -p "$PY"
if [ ! -x "$PY/nvidia/cu13/bin/nvcc" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$PY" --no-deps \
    "nvidia-cuda-nvcc~=$CUDA_VERSION.0" "nvidia-nvvm~=$CUDA_VERSION.0" "nvidia-cuda-crt~=$CUDA_VERSION.0" \
    "nvidia-cuda-runtime~=$CUDA_VERSION.0" "nvidia-cuda-cccl~=$CUDA_VERSION.0" \
    "nvidia-cuda-nvrtc~=$CUDA_VERSION.0" "nvidia-cublas~=$CUDA_VERSION.0"
fi
CU="$PY/nvidia/cu13"
[ -x "$CU/bin/nvcc" ] || { echo "no nvcc in $CU/bin after installing the wheels" >&2; exit 1; }

step "a CUDA root in $ROOT (headers, unversioned library names, a driver link stub)"
rm -rf "$ROOT"
mkdir -p "$ROOT/lib" "$ROOT/bin"
ln -s "$CU/include" "$ROOT/include"
for lib in cudart nvrtc cublas cublasLt; do
  real=$(find "$CU/lib" -maxdepth 1 -name "lib$lib.so.*" | sort | head -1)
  [ -n "$real" ] || { echo "lib$lib.so.* is missing from $CU/lib" >&2; exit 1; }
  ln -s "$real" "$ROOT/lib/lib$lib.so"
done
# libcuda.so comes with the NVIDIA driver, not the toolkit. Linking only needs its symbol
# names and its soname, so a stub with every driver function cudarc binds is built here.
cudarc=$(cargo metadata --format-version 1 --features stackflow-cli/cuda 2>/dev/null |
  python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
# Every call fails with CUDA_ERROR_NO_DEVICE (100), and the error's name and text say why,
# so a binary run against the stub reports a missing device instead of crashing.
{
  grep -o 'pub fn cu[A-Za-z0-9_]*' "$(dirname "$cudarc")/src/driver/sys.rs" | sort -u |
    grep -v -x -e 'pub fn cuGetErrorString' -e 'pub fn cuGetErrorName' |
    sed 's/pub fn \(.*\)/int \1(void) { return 100; }/'
  echo 'int cuGetErrorString(int e, const char **s) { *s = "no NVIDIA driver: this is the link stub of scripts/build-cuda.sh"; return 0; }'
  echo 'int cuGetErrorName(int e, const char **s) { *s = "CUDA_ERROR_NO_DEVICE"; return 0; }'
} > "$ROOT/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$ROOT/lib/libcuda.so" "$ROOT/cuda_stub.c"
# dfdx's build script asks nvidia-smi for the compute capability before it reads
# CUDA_COMPUTE_CAP; with no GPU here, a shim answers.
cat > "$ROOT/bin/nvidia-smi" <<EOF
#!/bin/sh
printf 'compute_cap\n%s.%s\n' "${CAP%?}" "${CAP#?}"
EOF
chmod +x "$ROOT/bin/nvidia-smi"

step "cargo build --release --features cuda (sm_$CAP): the binary and core's test suite binary"
export PATH="$ROOT/bin:$CU/bin:$PATH" CUDA_ROOT="$ROOT" CUDA_COMPUTE_CAP="$CAP"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
release=(--release --features cuda --config 'profile.release.debug=false' --config 'profile.release.strip=true')
cargo build -p stackflow-cli "${release[@]}"
golden=$(cargo test -p stackflow-core "${release[@]}" --test suite --no-run --message-format json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "suite" and m.get("executable"):
        print(m["executable"])')

step "dist/"
mkdir -p dist
cp "$CARGO_TARGET_DIR/release/stackflow" dist/stackflow-cuda
cp "$golden" dist/golden-cuda
{
  echo "built $(date -u +%FT%TZ) for sm_$CAP with nvcc $("$CU/bin/nvcc" --version | grep -o 'release [0-9.]*')"
  for f in stackflow-cuda golden-cuda; do
    echo "$f: $(du -h "dist/$f" | cut -f1) ($(stat -c %s "dist/$f") bytes); needs $(readelf -d "dist/$f" | grep NEEDED | sed 's/.*\[\(.*\)\]/\1/' | tr '\n' ' ')"
  done
} | tee dist/cuda-build.txt

step "smoke test here (no GPU: the stub driver answers, so the binary starts and says so)"
ln -sf libcuda.so "$ROOT/lib/libcuda.so.1"
export LD_LIBRARY_PATH="$ROOT/lib:$CU/lib"
dist/stackflow-cuda --version
dist/stackflow-cuda check graphs/quickstart.ron >/dev/null && echo "check on the CPU device: ok"
if dist/stackflow-cuda bench graphs/quickstart.ron --device cuda --iters 1 --warmup 0 2>dist/no-gpu.txt; then
  echo "unexpected: a CUDA device answered" >&2
else
  grep -q "cannot open CUDA device" dist/no-gpu.txt && echo "--device cuda without a GPU: $(grep -m1 'cannot open' dist/no-gpu.txt | sed 's/^[^a-z]*//')"
fi
echo "on a GPU machine: scripts/gpu-check.sh (see docs/cuda.md)"
