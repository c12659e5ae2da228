"""Full-size check of `stackflow metrics` against pytorch-fid.

Computes FID and KID between two folders of images with pytorch-fid's own pipeline and
network (FIDInceptionV3 built without downloading anything, weights from a safetensors
file), runs `stackflow metrics` on the same folders and weights, and prints both side by
side. Exits 1 when the FIDs differ by more than --fid-rtol (default 1e-3) relative.

    python3 tests/inception/compare_full.py DIR_A DIR_B --weights W.safetensors \\
        [--stackflow target/release/stackflow] [--batch-size 50] [--device cpu]
    python3 tests/inception/compare_full.py DIR_A DIR_B --weights W.safetensors --no-stackflow

Helpers, so the comparison runs without the published weights or a data set:

    python3 tests/inception/compare_full.py --make-weights /tmp/inception-random.safetensors
    python3 tests/inception/compare_full.py --make-images /tmp/imgs_a 64 --seed 1
    python3 tests/inception/compare_full.py --make-images /tmp/imgs_b 64 --seed 2

--make-weights writes a randomly initialised full-size state_dict under pytorch-fid's names
(~96 MB, f32, no num_batches_tracked); --make-images writes N random smooth 64x64 RGB PNGs.

The published FID weights (pytorch-fid's FID_WEIGHTS_URL, a plain state_dict of
FIDInceptionV3, the same names as `reference.FidInception`) convert with:

    python -c "import torch, safetensors.torch as st; st.save_file({k: v.float().contiguous() for k, v in torch.load('pt_inception-2015-12-05-6726825d.pth', map_location='cpu').items() if not k.endswith('num_batches_tracked')}, 'inception.safetensors')"

(472 tensors: every `*.conv.weight`, `*.bn.weight|bias|running_mean|running_var` and
`fc.weight` [1008, 2048], `fc.bias` [1008].)

Reference conventions (pytorch-fid 0.3.0):
* images: every file in the folder with one of pytorch-fid's extensions (lower case only:
  bmp jpg jpeg pgm png ppm tif tiff webp; `*.PNG` is not picked up), decoded by PIL,
  `.convert('RGB')`, ToTensor -> [0, 1]; all images of a batch must have the same size.
* features: F.interpolate(bilinear, align_corners=False, no antialias) to 299x299, 2x - 1,
  FIDInceptionV3 up to the global average pool -> 2048 floats per image (f32 on the device,
  then f64).
* FID: mu, np.cov(rowvar=False) (unbiased), pytorch_fid.fid_score.calculate_frechet_distance.
* KID: unbiased MMD^2 over all samples, k(x, y) = (x.y/d + 1)^3 (see make_fixtures.py).
* IS (informational, of DIR_B): logits = fc(pool) with the bias, softmax over all classes,
  --is-splits consecutive splits (see make_fixtures.py).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep __pycache__ out of the repository
sys.path.insert(0, HERE)
import reference  # noqa: E402
from make_fixtures import inception_score, kid_unbiased, smooth_images  # noqa: E402


def list_images(folder):
    """Exactly the files pytorch-fid's `compute_statistics_of_path` would use."""
    from pytorch_fid.fid_score import IMAGE_EXTENSIONS

    path = pathlib.Path(folder)
    files = sorted(f for ext in IMAGE_EXTENSIONS for f in path.glob(f"*.{ext}"))
    if len(files) < 2:
        sys.exit(f"{folder}: needs at least 2 images (found {len(files)})")
    return files


def load_network(weights_path):
    """pytorch-fid's FIDInceptionV3 (no download) with the weights of `weights_path`."""
    from safetensors.torch import load_file

    net = reference.build_pytorch_fid_inception(num_classes=1008)
    state = load_file(weights_path)
    if "fc.weight" in state and state["fc.weight"].shape[0] != 1008:
        net.fc = torch.nn.Linear(2048, state["fc.weight"].shape[0])
    # strict: every name must match; torch fills in the absent num_batches_tracked.
    net.load_state_dict(state, strict=True)
    return net.eval()


def pool_features(files, wrapper, batch_size, device):
    """pytorch-fid's own `get_activations`: [N, 2048] pool3 features, f64."""
    from pytorch_fid.fid_score import get_activations

    return get_activations(files, wrapper, batch_size=batch_size, dims=2048,
                           device=device, num_workers=0)


def reference_metrics(dir_a, dir_b, weights, batch_size, device, is_splits):
    from pytorch_fid.fid_score import calculate_frechet_distance

    net = load_network(weights)
    wrapper = reference.pytorch_fid_feature_model(net).to(device)
    feats = {}
    for name, folder in (("a", dir_a), ("b", dir_b)):
        files = list_images(folder)
        print(f"{folder}: {len(files)} images", file=sys.stderr)
        feats[name] = pool_features(files, wrapper, batch_size, device)
    a, b = feats["a"], feats["b"]
    fid = calculate_frechet_distance(a.mean(axis=0), np.cov(a, rowvar=False),
                                     b.mean(axis=0), np.cov(b, rowvar=False))
    # The same FID with tr sqrt(S_a S_b) = sum sqrt(eig(S_a^1/2 S_b S_a^1/2)) (symmetric
    # eigendecompositions instead of scipy's Schur-based sqrtm): how much the matrix square
    # root alone can move the value, which matters when N < 2048 makes the covariances singular.
    fid_eigh = frechet_distance_eigh(a, b)
    with torch.no_grad():
        fc = net.fc.to("cpu").double()
        logits_b = fc(torch.from_numpy(b)).numpy()
    is_mean, is_std = inception_score(logits_b, min(is_splits, len(b)))
    return {"fid": float(fid), "kid": kid_unbiased(a, b), "is": is_mean, "is_std": is_std,
            "fid_eigh": fid_eigh, "n_a": len(a), "n_b": len(b)}


def frechet_distance_eigh(a, b):
    """FID via symmetric eigendecompositions (a cross-check of scipy's sqrtm)."""
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    diff = a.mean(axis=0) - b.mean(axis=0)
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


def scalar(value, *keys):
    """A number from stackflow's JSON: a plain number, or the first of `keys` in an object."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        for k in keys:
            if isinstance(value.get(k), (int, float)):
                return float(value[k])
    if isinstance(value, list) and value and isinstance(value[0], (int, float)):
        return float(value[0])
    return None


def run_stackflow(binary, dir_a, dir_b, weights):
    cmd = [binary, "metrics", dir_a, dir_b, "--inception", weights, "--json"]
    print("running: " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.exit(f"stackflow exited with {proc.returncode}")
    out = proc.stdout.strip()
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        # Tolerate log lines before the JSON object: take the last line that parses.
        for line in reversed(out.splitlines()):
            if line.strip().startswith("{"):
                return json.loads(line)
        sys.exit(f"stackflow printed no JSON object:\n{out}")


def compare(args):
    if not args.no_stackflow and not os.path.exists(args.stackflow):
        sys.exit(f"{args.stackflow}: no such binary (build it, pass --stackflow, or use --no-stackflow)")
    ref = reference_metrics(args.dirs[0], args.dirs[1], args.weights, args.batch_size,
                            args.device, args.is_splits)
    if args.no_stackflow:
        print(json.dumps(ref, indent=2))
        return 0
    got = run_stackflow(args.stackflow, args.dirs[0], args.dirs[1], args.weights)
    ours = {
        "fid": scalar(got.get("fid"), "value", "fid"),
        "kid": scalar(got.get("kid"), "value", "mean", "kid"),
        "is": scalar(got.get("is"), "value", "mean", "is"),
    }
    print(f"{'metric':8s} {'pytorch-fid reference':>24s} {'stackflow':>24s} {'rel diff':>10s}")
    for k in ("fid", "kid", "is"):
        r, s = ref[k], ours[k]
        rel = abs(s - r) / max(abs(r), 1e-12) if s is not None else float("nan")
        s_txt = f"{s:24.10g}" if s is not None else f"{'(absent)':>24s}"
        note = f"  (IS of DIR_B, {args.is_splits} splits, ±{ref['is_std']:.4g})" if k == "is" else ""
        print(f"{k:8s} {r:24.10g} {s_txt} {rel:10.3e}{note}")
    print(f"(FID via eigh instead of sqrtm: {ref['fid_eigh']:.10g}, "
          f"rel {abs(ref['fid_eigh'] - ref['fid']) / max(abs(ref['fid']), 1e-12):.2e}; "
          f"{ref['n_a']} and {ref['n_b']} images)")
    if ours["fid"] is None:
        print("FAIL: stackflow printed no fid")
        return 1
    rel_fid = abs(ours["fid"] - ref["fid"]) / max(abs(ref["fid"]), 1e-12)
    if rel_fid > args.fid_rtol:
        print(f"FAIL: FID differs by {rel_fid:.3e} relative (> {args.fid_rtol:g})")
        return 1
    print(f"OK: FID within {args.fid_rtol:g} relative")
    return 0


def make_weights(path, seed):
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    net = reference.random_init_(reference.build_pytorch_fid_inception(1008), seed)
    save_file(reference.weights_state_dict(net), path)
    print(f"wrote {path}: {os.path.getsize(path)} bytes (random FIDInceptionV3, seed {seed})")


def make_images(folder, n, seed, size=64):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    imgs = smooth_images(n, size, seed)  # [-1, 1]
    # Per-image brightness/contrast jitter so the set is not too uniform.
    g = torch.Generator().manual_seed(seed + 1)
    gain = 0.6 + 0.4 * torch.rand(n, 1, 1, 1, generator=g)
    shift = 0.3 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    imgs = ((imgs * gain + shift).clamp(-1, 1) + 1) * 127.5
    arr = imgs.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        Image.fromarray(arr[i], "RGB").save(os.path.join(folder, f"{i:05d}.png"))
    print(f"wrote {n} {size}x{size} PNGs to {folder} (seed {seed})")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="*", metavar="DIR", help="DIR_A DIR_B: the two image folders")
    p.add_argument("--weights", help="FIDInceptionV3 state_dict (pytorch-fid names), safetensors")
    p.add_argument("--stackflow", default="target/release/stackflow", help="stackflow binary")
    p.add_argument("--no-stackflow", action="store_true", help="only print the reference values")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--is-splits", type=int, default=10)
    p.add_argument("--fid-rtol", type=float, default=1e-3)
    p.add_argument("--make-weights", metavar="OUT", help="write random full-size weights and exit")
    p.add_argument("--make-images", nargs=2, metavar=("DIR", "N"), help="write N random 64x64 PNGs and exit")
    p.add_argument("--seed", type=int, default=0, help="seed for --make-weights / --make-images")
    args = p.parse_args()

    torch.set_grad_enabled(False)
    if args.make_weights:
        make_weights(args.make_weights, args.seed)
        return 0
    if args.make_images:
        make_images(args.make_images[0], int(args.make_images[1]), args.seed)
        return 0
    if len(args.dirs) != 2 or not args.weights:
        p.error("need DIR_A DIR_B and --weights (or --make-weights / --make-images)")
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
