"""Does a supernet learn from its first hundred steps?  Single-path (SPOS) training of a search config's
supernet on episodes, reporting mean loss and accuracy per window, for the config and for each variant (a
set of overrides on top of it, e.g. another sampler learning rate or space option).

    python scripts/search_objective_check.py CONFIG [key=value ...] [--steps 300] [--window 50]
        [--variant "search.sampler_options.w_lr=0.005" ...] [--path random|largest|progressive|GENOTYPE] [--phase-steps 300,100,...]
        [--optimizer sgd|adam] [--metric raw|dim|rms] [--temperature T] [--out result.json]

Try colour data without a colour dataset: ``data.dataset=synthetic data.options={colour: true}
data.image_size=32``.  Loss stuck at ln(n_way) with chance accuracy is a collapsed feature map (every image
the same features); a loss far above it is an over-confident metric (squared distances of wide features).
``--metric`` tries the ProtoNet metric's scale: ``raw`` (fsnas's objective: -squared distance), ``dim``
(-T x squared distance / feature dimension) and ``rms`` (the same on features divided by their root mean
square over the episode, so every path's features have one scale); T is ``--temperature``."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.checks import load_config  # noqa: E402
from nas.pipeline import build_dataset  # noqa: E402
from nas.search.loop import search_samplers  # noqa: E402
from nas.search.objective import episode_loss  # noqa: E402
from nas.search.single_path import PROGRESSIVE_PHASES, opened_by_phase  # noqa: E402
from search_spaces import create_supernet, load_genotype  # noqa: E402


def paths(supernet, which: str, gen: torch.Generator, phase_steps: list[int]):
    """The path of each step: drawn uniformly, the largest, drawn in the dimensions opened so far
    (``progressive``: the progressive sampler's default phases, ``phase_steps`` steps each), or one genotype
    file every step."""
    if which == "random":
        return lambda: supernet.sample_path(gen)
    if which == "progressive":
        opened = opened_by_phase(PROGRESSIVE_PHASES)
        ends = list(itertools.accumulate(phase_steps))
        step = itertools.count()

        def progressive():
            t = next(step)
            return supernet.sample_path(gen, open=opened[next((k for k, e in enumerate(ends) if t < e), -1)])
        return progressive
    if which == "largest":
        return lambda: supernet.extreme_path(True, gen)
    g = load_genotype(which)
    return lambda: g


def step_counts(text: str) -> list[int]:
    """--phase-steps: comma-separated step counts of at least 0."""
    try:
        counts = [int(v) for v in text.split(",")]
    except ValueError:
        counts = [-1]
    if min(counts) < 0:
        raise argparse.ArgumentTypeError(f"expected step counts like 300,100,100,100,100,100, got {text!r}")
    return counts


def metric_loss(features, ep, metric: str, temperature: float) -> tuple[torch.Tensor, float]:
    """``episode_loss`` with the squared distances scaled by T / feature dimension (``raw``: unscaled), by
    scaling the features by sqrt(T / D): -|sa - sb|^2 = -s^2 |a - b|^2."""
    if metric == "raw":
        return episode_loss(features, ep)

    def scaled(x: torch.Tensor) -> torch.Tensor:
        f = features(x).flatten(1)
        if metric == "rms":
            f = f / f.pow(2).mean().sqrt()
        return f * (temperature / f.shape[1]) ** 0.5

    return episode_loss(scaled, ep)


def run(cfg, ds, variant: list[str], args) -> dict:
    """SPOS steps (SGD with the config's sampler options, or Adam) on the chosen paths; per window the mean
    loss and accuracy, and the spread of the features over an episode's images (about 0: collapsed)."""
    torch.manual_seed(cfg.seed)
    sc = cfg.search
    supernet = create_supernet(sc.space, ds.image_shape[0], **sc.space_options)
    so = sc.sampler_options
    opt = (torch.optim.Adam(supernet.parameters(), lr=args.adam_lr) if args.optimizer == "adam" else
           torch.optim.SGD(supernet.parameters(), lr=so.get("w_lr", 0.05), momentum=so.get("w_momentum", 0.9),
                           weight_decay=so.get("w_weight_decay", 4e-5)))
    phase_steps = args.phase_steps or [args.steps // len(PROGRESSIVE_PHASES)] * len(PROGRESSIVE_PHASES)
    if len(phase_steps) != len(PROGRESSIVE_PHASES):
        raise SystemExit(f"--phase-steps: give {len(PROGRESSIVE_PHASES)} step counts, one per phase")
    next_path = paths(supernet, args.path, torch.Generator().manual_seed(cfg.seed), phase_steps)
    train, _ = search_samplers(cfg, ds)
    rows, acc, loss, t0 = [], [], [], time.perf_counter()
    for step in range(args.steps):
        supernet.train()
        path, ep = next_path(), train.episode(step)
        value, accuracy = metric_loss(lambda x: supernet(x, path=path), ep, args.metric, args.temperature)
        opt.zero_grad(set_to_none=True)
        value.backward()
        nn.utils.clip_grad_norm_(supernet.parameters(), so.get("grad_clip", 5.0))
        opt.step()
        acc.append(accuracy)
        loss.append(value.item())
        if (step + 1) % args.window == 0:
            with torch.no_grad():
                feats = supernet(torch.cat([ep.support_x, ep.query_x]), path=path).flatten(1)
            rows.append({"step": step + 1, "loss": sum(loss) / len(loss), "accuracy": sum(acc) / len(acc),
                         "feature_spread": float(feats.std(0).mean() / (feats.abs().mean() + 1e-12))})
            acc, loss = [], []
    return {"variant": variant, "path": args.path, "optimizer": args.optimizer, "metric": args.metric,
            "temperature": args.temperature, "windows": rows,
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--variant", action="append", default=[], help="overrides (space-separated) of one variant")
    ap.add_argument("--path", default="random", help="random, largest, progressive, or a genotype file trained every step")
    ap.add_argument("--phase-steps", type=step_counts, help="--path progressive: steps of each phase, comma-separated (default: "
                                          "--steps in equal shares)")
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd: the sampler options' SGD")
    ap.add_argument("--adam-lr", type=float, default=1e-3)
    ap.add_argument("--metric", choices=["raw", "dim", "rms"], default="raw")
    ap.add_argument("--temperature", type=float, default=10.0, help="T of --metric dim and rms")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    ds = build_dataset(cfg)
    report = {"config": args.config, "overrides": args.overrides, "image_shape": list(ds.image_shape),
              "chance": 1 / cfg.search.episode.n_way, "runs": []}
    for variant in [[]] + [v.split() for v in args.variant]:
        r = run(load_config(args.config, args.overrides + variant), ds, variant, args)
        report["runs"].append(r)
        line = "  ".join(f"{w['step']}: {w['loss']:.2f}/{w['accuracy']:.2f}/{w['feature_spread']:.2f}"
                         for w in r["windows"])
        print(f"{' '.join(variant) or 'config'} ({r['seconds']:.0f} s)  step: loss/accuracy/spread  {line}",
              flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
