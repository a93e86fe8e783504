"""Benchmark: training-step time and peak memory of the supernet in mixed and single-path mode, and of
the stand-alone network of the same path.

    python scripts/bench_supernet.py [--space darts] [--channels 16] [--cells 5] [--batch 80] [--size 1 28 28]
    python scripts/bench_supernet.py --config configs/search/omniglot_elastic_cpu.yaml --path largest

``--config``: the space and options of a search config (the elastic space has no mixed mode: single path and
stand-alone only).  ``--path``: a sampled path (seeded) or the space's largest (``extreme_path``).

Each mode runs in its own process, so its peak memory is its own (CPU: peak RSS above the RSS right
after importing torch; CUDA: max allocated).
A step is forward, cross-entropy through a linear head, backward and an SGD update.  Prints a Markdown row
per mode for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch import nn

from search_spaces import create_supernet


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_mode(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    at_start = current_rss_mb()  # torch imported, nothing built yet
    torch.manual_seed(args.seed)
    options = space_options(args)  # sets args.space from --config
    supernet = create_supernet(args.space, args.size[0], **options).to(device)
    gen = torch.Generator().manual_seed(args.seed)
    path = supernet.extreme_path(True, gen) if args.path == "largest" else supernet.sample_path(gen)
    model = supernet.subnet(path) if args.mode == "standalone" else supernet
    forward = (lambda x: model(x, path=path)) if args.mode == "single" else model
    x = torch.randn(args.batch, *args.size, device=device)
    with torch.no_grad():
        features = forward(x[:2]).shape[1]
    head = nn.Linear(features, 10).to(device)
    params = list(model.weight_parameters() if args.mode != "standalone" else model.parameters()) + list(head.parameters())
    if args.mode == "mixed":
        params += model.arch_parameters()
    opt = torch.optim.SGD(params, lr=0.01)
    y = torch.randint(0, 10, (args.batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(head(forward(x)), y).backward()
        opt.step()

    step()  # warm-up: allocator, kernels
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = current_rss_mb()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - at_start)
    return {"mode": args.mode, "step_s": sorted(times)[len(times) // 2], "peak_mb": round(peak, 1),
            "rss_before_steps_mb": round(base - at_start, 1), "params": sum(p.numel() for p in model.parameters()),
            "path": path.to_dict()}


def space_options(args: argparse.Namespace) -> dict:
    if args.config:
        import yaml
        search = yaml.safe_load(open(args.config))["search"]
        args.space = search["space"]
        return search.get("space_options", {})
    return {"channels": args.channels, "cells": args.cells, "nodes": args.nodes} if args.space == "darts" else {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="darts", choices=["darts", "blocks", "elastic"])
    p.add_argument("--config", help="a search config: its search.space and space_options (overrides --space)")
    p.add_argument("--path", choices=["sampled", "largest"], default="sampled")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--batch", type=int, default=80)
    p.add_argument("--size", type=int, nargs=3, default=[1, 28, 28])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mode", choices=["mixed", "single", "standalone"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    rows = []
    space_options(args)
    modes = ("single", "standalone") if args.space == "elastic" else ("mixed", "single", "standalone")
    for mode in modes:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--mode", mode]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    ratio = rows[-2]["step_s"] / rows[-1]["step_s"]
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    space = (args.config if args.config else f"darts C={args.channels}, cells={args.cells}, nodes={args.nodes}"
             if args.space == "darts" else f"{args.space} (default options)") + f", {args.path} path"
    print(f"space {space}, batch {args.batch}, "
          f"input {'x'.join(map(str, args.size))}, {dev}, torch {torch.__version__}, seed {args.seed}, "
          f"median of {args.steps} steps")
    print("| mode | step (s) | peak memory (MB) | parameters |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['mode']} | {r['step_s']:.3f} | {r['peak_mb']:.0f} | {r['params']:,} |")
    print(f"single-path / stand-alone step time: {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
