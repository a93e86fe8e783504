"""How repeatable is an end-to-end CPU timing here?  The same network timed ``--rounds`` times in a row (each a
median of ``--repeats`` runs after ``--warmup``), once in a fresh process with glibc's default malloc and once
with the thresholds fsnas fixes for timing (nas.latency.measure.steady_cpu_allocator).

    python scripts/latency_noise.py GENOTYPE [--against GENOTYPE] --batch 80 --threads 1 --out noise.json

The spread of the rounds is the floor under any predictor's error: a table entry and a network timed minutes
apart cannot agree better than the machine repeats itself.  ``--against``: a second network timed in
alternation with the first (round by round), so that a drift of the machine's speed cancels in their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rounds(genotypes: list[str], batch: int, threads: int, count: int, warmup: int, repeats: int,
           steady: bool) -> list[list[float]]:
    sys.path.insert(0, str(REPO))
    import torch

    from nas.latency.measure import _timings_ms, measure_latency
    from search_spaces.build import build_network
    from search_spaces.genotypes import load_genotype

    torch.set_num_threads(threads)
    nets = [build_network(load_genotype(g), in_channels=1).eval() for g in genotypes]
    x = torch.randn(batch, 1, 28, 28)
    out = [[] for _ in nets]
    with torch.no_grad():
        for _ in range(count):
            for net, ms in zip(nets, out):
                if steady:
                    ms.append(measure_latency(net, tuple(x.shape), "cpu", warmup, repeats).median_ms)
                else:  # the same loop without fixing the allocator
                    ms.append(statistics.median(_timings_ms(lambda: net(x), torch.device("cpu"), warmup, repeats)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("genotype")
    p.add_argument("--against", help="a second genotype, timed in alternation")
    p.add_argument("--batch", type=int, default=80)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", type=Path)
    p.add_argument("--child", choices=["default", "steady"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        nets = [a.genotype, *([a.against] if a.against else [])]
        print(json.dumps(rounds(nets, a.batch, a.threads, a.rounds, a.warmup, a.repeats, a.child == "steady")))
        return
    report = {"genotype": str(Path(a.genotype).resolve()), "batch": a.batch, "threads": a.threads,
              "warmup": a.warmup, "repeats": a.repeats,
              "against": str(Path(a.against).resolve()) if a.against else None}
    for mode in ("default", "steady"):  # each in a fresh process: the allocator setting is process-wide
        cmd = [sys.executable, __file__, a.genotype, "--child", mode, *map(str, (
            "--batch", a.batch, "--threads", a.threads, "--rounds", a.rounds, "--warmup", a.warmup,
            "--repeats", a.repeats)), *(["--against", a.against] if a.against else [])]
        timed = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        report[mode] = {}
        for name, ms in zip(("network", "against"), timed):
            report[mode][name] = {"round_medians_ms": ms, "mean_ms": statistics.fmean(ms), "min_ms": min(ms),
                                  "max_ms": max(ms), "cv": statistics.stdev(ms) / statistics.fmean(ms)}
            print(f"{mode:8s} allocator, {name:8s}: rounds {', '.join(f'{m:.1f}' for m in ms)} ms; "
                  f"mean {statistics.fmean(ms):.1f}, CV {100 * report[mode][name]['cv']:.1f}%")
        if a.against:
            ratios = [x / y for x, y in zip(*timed)]
            report[mode]["ratio"] = {"per_round": ratios, "mean": statistics.fmean(ratios),
                                     "min": min(ratios), "max": max(ratios)}
            print(f"{mode:8s} allocator, network / against per round: {min(ratios):.3f}-{max(ratios):.3f}, "
                  f"mean {statistics.fmean(ratios):.3f}")
    if a.out:
        a.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
