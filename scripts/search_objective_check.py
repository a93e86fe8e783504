"""Does a supernet learn from its first hundred steps?  Single-path (SPOS) training of a search config's
supernet on episodes, reporting mean loss and accuracy per window, for the config and for each variant (a
set of overrides on top of it, e.g. another sampler learning rate or space option).

    python scripts/search_objective_check.py CONFIG [key=value ...] [--steps 300] [--window 50]
        [--variant "search.sampler_options.w_lr=0.005" ...] [--out result.json]

Try colour data without a colour dataset: ``data.dataset=synthetic data.options={colour: true}
data.image_size=32``.  Loss stuck at ln(n_way) with chance accuracy is a collapsed feature map (every image
the same features); a loss far above it is an over-confident metric (squared distances of wide features)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.checks import load_config  # noqa: E402
from nas.pipeline import build_dataset  # noqa: E402
from nas.search.loop import search_samplers  # noqa: E402
from nas.search.strategies import create_strategy  # noqa: E402
from search_spaces import create_supernet  # noqa: E402


def run(cfg, ds, variant: list[str], steps: int, window: int) -> dict:
    torch.manual_seed(cfg.seed)
    sc = cfg.search
    supernet = create_supernet(sc.space, ds.image_shape[0], **sc.space_options)
    strategy = create_strategy("spos", supernet, steps=steps, seed=cfg.seed,
                               options={k: v for k, v in sc.sampler_options.items() if k != "random_paths"})
    train, _ = search_samplers(cfg, ds)
    rows, acc, loss, t0 = [], [], [], time.perf_counter()
    for step in range(steps):
        m = strategy.step(train.episode(step), None)
        acc.append(m["accuracy"])
        loss.append(m["loss"])
        if (step + 1) % window == 0:
            rows.append({"step": step + 1, "loss": sum(loss) / len(loss), "accuracy": sum(acc) / len(acc)})
            acc, loss = [], []
    return {"variant": variant, "windows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--variant", action="append", default=[], help="overrides (space-separated) of one variant")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    ds = build_dataset(cfg)
    report = {"config": args.config, "overrides": args.overrides, "image_shape": list(ds.image_shape),
              "chance": 1 / cfg.search.episode.n_way, "runs": []}
    for variant in [[]] + [v.split() for v in args.variant]:
        r = run(load_config(args.config, args.overrides + variant), ds, variant, args.steps, args.window)
        report["runs"].append(r)
        line = "  ".join(f"{w['step']}: {w['loss']:.2f}/{w['accuracy']:.2f}" for w in r["windows"])
        print(f"{' '.join(variant) or 'config':40s} ({r['seconds']:.0f} s)  step: loss/accuracy  {line}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
