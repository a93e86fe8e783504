"""Benchmark: Conv-4 ProtoNet on Omniglot (Vinyals split), 5-way and 20-way 1-shot, 1000 test episodes.

    FSNAS_DATA_ROOT=../shared/data python scripts/bench_protonet_omniglot.py [--out DIR] [key=value ...]

Trains with configs/omniglot_protonet.yaml (overrides allowed), evaluates, and prints a Markdown row for
docs/benchmarks.md with the training time, episodes per second and accuracy ± 95% CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from nas.checks import load_config
from nas.pipeline import prepare, retrain
from nas.runs import RunDir

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*")
    p.add_argument("--config", default=str(REPO / "configs" / "omniglot_protonet.yaml"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cfg = load_config(args.config, args.overrides)
    prepared = prepare(cfg)
    ds, device = prepared.ds, prepared.device
    run = RunDir.create(cfg, args.out)
    summary = retrain(cfg, run, ds, device)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or "uncommitted"
    t = summary["train"]
    cells = [time.strftime("%Y-%m-%d"), commit, summary["device"], f"seed {cfg.seed}",
             f"{t['steps']} x {cfg.train.episode.n_way}-way", f"{t['seconds'] / 60:.1f} min",
             f"{t['episodes_per_second']:.2f}"]
    cells += [f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}" for r in summary["results"]]
    print(json.dumps(summary["results"], indent=2))
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
