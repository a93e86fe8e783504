"""Latency tables and their validation on this machine, for the CPU DARTS space and the block space.

    FSNAS_DATA_ROOT=../shared/data python scripts/bench_latency.py --out /tmp/latency [--device cpu]
        [--threads 1] [--batch 1 80] [--samples 100]

For each space and batch size: ``fsnas latency build`` (every op at every shape), then ``fsnas latency
validate`` (``--samples`` sampled networks timed end to end) and Conv-4 timed the same way for scale.
The spaces are those of configs/search/omniglot_spos_cpu.yaml (DARTS cells, 8 channels, 3 cells) and the
same config with ``search.space=blocks`` (MBConv stages, default choices), on 1x28x28 Omniglot images.
Nothing else should run on the machine meanwhile.  Results: ``--out``/latency.json and latency.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPACES = {"darts-cpu": [], "blocks": ["search.space=blocks", "search.space_options={}"]}


def fsnas(*args: str) -> None:
    cmd = [sys.executable, "-m", "nas.cli", "-q", "latency", *args]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 80], help="batch sizes (80: a 5-way 1-shot episode "
                                                                        "with 15 queries per class)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    args = p.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timing = ["--device", args.device, "--threads", str(args.threads)]
    sys.path.insert(0, str(REPO))
    from search_spaces import FixedGenotype
    conv4_genotype = out / "conv4.yaml"
    FixedGenotype("conv4", {"hidden": 64}).save(conv4_genotype)
    rows = []
    for space in args.spaces:
        for batch in args.batch:
            name = f"{space}-b{batch}"
            table, report = out / f"{name}.json", out / f"{name}-validation"
            if not table.is_file():  # a finished step is not redone when the script runs again
                fsnas("build", "--space", "configs/search/omniglot_spos_cpu.yaml", *SPACES[space], "--out",
                      str(table), "--batch", str(batch), "--image-shape", "1x28x28", *timing)
            if not (report / "report.json").is_file():
                fsnas("validate", str(table), "--samples", str(args.samples), "--out", str(report))
            r = json.loads((report / "report.json").read_text())
            conv4 = out / f"conv4-b{batch}.json"
            if not conv4.is_file():
                fsnas("measure", str(conv4_genotype), "--input", "1x28x28", "--batch", str(batch), *timing,
                      "--out", str(conv4))
            measured = [n["measured_ms"] for n in r["networks"]]
            rows.append({"space": space, "batch": batch, "entries": len(json.loads(table.read_text())["entries"]),
                         "samples": r["samples"], "table_sum": r["table_sum"], "calibrated_cv": r["calibrated_cv"],
                         "per_op_cv": r["per_op_cv"],
                         "predictor": r["predictor"], "measured_min_ms": min(measured),
                         "measured_max_ms": max(measured), "fingerprint": r["fingerprint"],
                         "conv4_ms": json.loads(conv4.read_text())["measured"]["median_ms"]})
    (out / "latency.json").write_text(json.dumps(rows, indent=2))
    lines = ["| space | batch | entries | networks | measured range (ms) | Conv-4 (ms) | predictor | RMSPE | within 5% "
             "| within 10% | Kendall tau | Spearman rho |", "| --- " * 12 + "|"]
    for r in rows:
        for label, m in (("table sum", r["table_sum"]), ("calibrated (2-fold CV)", r["calibrated_cv"]),
                         ("per op type (2-fold CV)", r["per_op_cv"])):
            lines.append(f"| {r['space']} | {r['batch']} | {r['entries']} | {r['samples']} | "
                         f"{r['measured_min_ms']:.2f}-{r['measured_max_ms']:.2f} | {r['conv4_ms']:.2f} | {label} | "
                         f"{100 * m['rmspe']:.1f}% | {100 * m['within_5pct']:.0f}% | {100 * m['within_10pct']:.0f}% | "
                         f"{m['kendall_tau']:.3f} | {m['spearman_rho']:.3f} |")
    fp = rows[0]["fingerprint"] if rows else {}
    lines.append(f"\nDevice: {fp.get('device')}, {fp.get('threads')} thread(s), {fp.get('dtype')}, torch "
                 f"{fp.get('torch')}.  The search uses the predictor each table names: "
                 + "; ".join(f"{r['space']} b{r['batch']}: {r['predictor']['kind']}" for r in rows) + ".")
    (out / "latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
