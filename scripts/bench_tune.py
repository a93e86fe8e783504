"""Wall time of Ray Tune trials run concurrently against the same trials one after another.

    FSNAS_DATA_ROOT=../shared/data python scripts/bench_tune.py --out /tmp/bench-tune

Runs ``--config`` (default: four CPU-sized ProtoNet retrains, configs/tune/omniglot_protonet_x4_cpu.yaml)
through ``fsnas tune`` three times on a quiet machine: ``concurrent`` with the config's resources (1 CPU per
trial, 2 at once); ``serial``, the same trials one after another (``tune.max_concurrent=1``); and
``serial-all-cores``, one after another with every core each (``tune.resources.cpu=<cores>``: more threads per
trial, so not the same trials bit for bit).  Each trial's test accuracy is reported too (the seeds are the same, so the
two settings train the same models up to thread-count rounding).  Results: ``--out``/bench_tune.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_experiment(config: str, out: Path, *overrides: str) -> tuple[float, dict]:
    if not (out / "results.json").is_file():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nas.cli", "-q", "tune", config, *overrides, "--out", str(out)],
                       check=True, cwd=REPO)
        wall = time.perf_counter() - t0
        (out / "bench_wall_seconds").write_text(f"{wall:.1f}\n")
    return float((out / "bench_wall_seconds").read_text()), json.loads((out / "results.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--config", default="configs/tune/omniglot_protonet_x4_cpu.yaml")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    out = args.out.resolve()
    concurrent = run_experiment(args.config, out / "concurrent")
    serial = run_experiment(args.config, out / "serial-same", "tune.max_concurrent=1")
    all_cores = run_experiment(args.config, out / "serial", "tune.max_concurrent=1", f"tune.resources.cpu={cores}")
    runs = {"concurrent": concurrent, "serial": serial, "serial-all-cores": all_cores}
    report = {"config": args.config, "cores": cores, **{f"{k}_seconds": v[0] for k, v in runs.items()},
              "ratio": concurrent[0] / serial[0], "ratio_all_cores": concurrent[0] / all_cores[0],
              "trials": {k: [(t["values"], t["accuracy"], t["ci95"]) for t in v[1]["trials"]] for k, v in runs.items()}}
    (out / "bench_tune.json").write_text(json.dumps(report, indent=2))
    lines = ["| setting | wall time (s) | trials |", "| --- | --- | --- |",
             f"| concurrent (as configured) | {concurrent[0]:.0f} | {len(concurrent[1]['trials'])} |",
             f"| the same trials one after another | {serial[0]:.0f} | {len(serial[1]['trials'])} |",
             f"| one after another, {cores} threads each | {all_cores[0]:.0f} | {len(all_cores[1]['trials'])} |",
             "", f"Ratio concurrent / serial: {report['ratio']:.2f} (same trials), {report['ratio_all_cores']:.2f} "
             f"(all cores per trial)."]
    (out / "bench_tune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
