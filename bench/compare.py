#!/usr/bin/env python3
"""Interleaved speed comparison of stackflow with its PyTorch yardstick.

Each round runs, for every case, `bench/torch_reference.py` and then
`stackflow bench graphs/stackgan256.ron ... --json` with the same stage, batch
and widths, so that both see the same machine state. Prints per case the
median of each round, the median over rounds, the spread (min-max of the
round medians) and the stackflow/PyTorch ratio per round and overall.

  python3 bench/compare.py                         # quickstart scale, 3 rounds
  python3 bench/compare.py --case all --rounds 3   # also reference scale
  python3 bench/compare.py --binary target/release/stackflow --json out.json

Needs `torch` (CPU build is enough) and a release build of stackflow. Run it
on an otherwise idle machine; a shared machine moves single runs by 25%.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name: (stage, batch, gf_dim, df_dim)
CASES = {
    "quickstart": (1, 16, 16, 16),
    "stage1-b64": (1, 64, 128, 64),
    "stage2-b4": (2, 4, 128, 64),
}


def torch_round(case, iters, warmup):
    stage, batch, gf, df = CASES[case]
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        cmd = [sys.executable, os.path.join(HERE, "torch_reference.py"), "--stage", str(stage),
               "--batch", str(batch), "--gf", str(gf), "--df", str(df), "--mode", "all",
               "--warmup", str(warmup), "--iters", str(iters), "--json", f.name]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = [json.loads(line) for line in open(f.name)]
    return {r["kind"]: r["median_ms"] for r in rows}


def stackflow_round(binary, case, iters, warmup):
    stage, batch, gf, df = CASES[case]
    cmd = [binary, "bench", os.path.join(ROOT, "graphs", "stackgan256.ron"), "--set", f"gf_dim={gf}",
           "--set", f"df_dim={df}", "--stage", str(stage), "--batch", str(batch),
           "--iters", str(iters), "--warmup", str(warmup), "--json"]
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {"train": r["train_ms"], "sample": r["sample_ms"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="quickstart", choices=[*CASES, "all"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "stackflow"))
    ap.add_argument("--json", default="", help="write every round's figures to this file")
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        sys.exit(f"no stackflow binary at {a.binary}: run `cargo build --release` first")
    cases = list(CASES) if a.case == "all" else [a.case]
    rounds = {c: [] for c in cases}
    for r in range(a.rounds):
        for c in cases:
            t = torch_round(c, a.iters, a.warmup)
            s = stackflow_round(a.binary, c, a.iters, a.warmup)
            rounds[c].append({"torch": t, "stackflow": s})
            print(f"round {r + 1} {c:11s} train {s['train']:8.1f} vs {t['train']:8.1f} ms   "
                  f"sample {s['sample']:8.1f} vs {t['sample']:8.1f} ms", file=sys.stderr)
    print(f"{'case':11s} {'kind':6s} {'stackflow ms (spread)':>24s} {'PyTorch ms (spread)':>24s} "
          f"{'ratio':>6s} {'ratio per round':>20s}")
    for c in cases:
        for kind in ("train", "sample"):
            ours = [x["stackflow"][kind] for x in rounds[c]]
            theirs = [x["torch"][kind] for x in rounds[c]]
            ratios = [o / t for o, t in zip(ours, theirs)]
            cell = lambda v: f"{statistics.median(v):8.1f} ({min(v):.1f}-{max(v):.1f})"
            print(f"{c:11s} {kind:6s} {cell(ours):>24s} {cell(theirs):>24s} "
                  f"{statistics.median(ratios):6.2f} {' '.join(f'{x:.2f}' for x in ratios):>20s}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"iters": a.iters, "warmup": a.warmup, "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    main()
