"""MAML speed against a minimal torch.func MAML loop (same model, same tasks), and memory by order.

    python scripts/bench_maml.py [--steps 5] [--meta-batch 4] [--iters 20] [--hidden 64] [--device cpu]

Both loops run Conv-4 with a 5-way linear head on 28x28 5-way 1-shot tasks with 15 queries per class,
``--steps`` inner SGD steps, Adam outer updates.  Each (implementation, order) runs in its own process so
peak memory is its own: CPU peak RSS above the peak before the first meta-step (model and tasks built),
or CUDA ``max_memory_allocated`` over the timed steps.  Prints a table and the fsnas/minimal speed ratio (target >= 0.9);
first order also runs fsnas with the meta-batch as one vmap over tasks (``vmap: true``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def tasks(n: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield (torch.randn(5, 1, 28, 28, generator=g).to(device), torch.arange(5, device=device),
               torch.randn(75, 1, 28, 28, generator=g).to(device), torch.arange(5, device=device).repeat(15))


def minimal_loop(backbone: nn.Module, args, device):
    """The reference: MAML written directly against torch.func, nothing else."""
    model = nn.Sequential(backbone, nn.Flatten(), nn.Linear(64 if args.hidden == 64 else args.hidden, 5)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    second = args.order == "second"

    def step(batch):
        opt.zero_grad()
        for sx, sy, qx, qy in batch:
            fast = dict(model.named_parameters())
            for _ in range(args.steps):
                loss = F.cross_entropy(functional_call(model, fast, (sx,)), sy)
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=second)
                fast = {k: v - 0.4 * g for (k, v), g in zip(fast.items(), grads)}
            (F.cross_entropy(functional_call(model, fast, (qx,)), qy) / len(batch)).backward()
        opt.step()
    return step


def fsnas_loop(backbone: nn.Module, args, device):
    from meta.episodes import Episode
    from meta.learners import MAML
    learner = MAML(backbone.to(device), n_way=5, steps=args.steps, inner_lr=0.4, order=args.order,
                   in_shape=(1, 28, 28), vmap=args.impl == "fsnas-vmap").to(device)

    def step(batch):
        learner.meta_train_step([Episode(sx, sy, qx, qy, torch.arange(5)) for sx, sy, qx, qy in batch])
    return step


def worker(args) -> dict:
    from search_spaces import create_model
    device = torch.device(args.device)
    torch.manual_seed(0)
    backbone = create_model("conv4", in_channels=1, hidden=args.hidden)
    step = (minimal_loop if args.impl == "minimal" else fsnas_loop)(backbone, args, device)
    batches = list(tasks(args.meta_batch * (args.iters + 1), device))
    batches = [batches[i:i + args.meta_batch] for i in range(0, len(batches), args.meta_batch)]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model and tasks built, no step taken
    step(batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for b in batches[1:]:
        step(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024)
    return {"impl": args.impl, "order": args.order, "tasks_per_s": args.iters * args.meta_batch / seconds,
            "peak_mb": round(peak, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--meta-batch", type=int, default=4)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each implementation")
    p.add_argument("--impl", choices=("fsnas", "fsnas-vmap", "minimal"), help=argparse.SUPPRESS)
    p.add_argument("--order", default="second", choices=("first", "second"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.impl:
        print(json.dumps(worker(args)))
        return
    rows = []
    for order in ("second", "first"):
        for _ in range(args.repeats):
            # vmap: first order only (second order through BatchNorm is refused, see meta.learners.maml)
            for impl in ("minimal", "fsnas") + (("fsnas-vmap",) if order == "first" else ()):
                cmd = [sys.executable, __file__, "--impl", impl, "--order", order, "--steps", str(args.steps),
                       "--meta-batch", str(args.meta_batch), "--iters", str(args.iters), "--hidden",
                       str(args.hidden), "--device", args.device]
                rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print("| implementation | order | tasks/s (best of runs) | peak memory (MB) |\n| --- | --- | --- | --- |")
    best = {}
    for r in rows:
        k = (r["impl"], r["order"])
        if k not in best or r["tasks_per_s"] > best[k]["tasks_per_s"]:
            best[k] = r
    for (impl, order), r in sorted(best.items()):
        print(f"| {impl} | {order} | {r['tasks_per_s']:.2f} | {r['peak_mb']} |")
    for order in ("second", "first"):
        ratio = best[("fsnas", order)]["tasks_per_s"] / best[("minimal", order)]["tasks_per_s"]
        print(f"{order} order: fsnas / minimal = {ratio:.3f}")


if __name__ == "__main__":
    main()
