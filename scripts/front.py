"""A latency-accuracy front from one trained supernet, with the hand-designed backbones on it (issue #22, item 2).

For each latency factor f, evolution in the finished search RUN (``search.supernet``) chooses the network
predicted no slower than f times the reference genotype (Conv-4) on every table; each choice and the
reference backbones are retrained at one shared, smaller budget and tested on the same episodes; then every
network is timed as the tables were, and the front is plotted.  Three steps, each resumable (a step whose
run folder is finished is skipped), so that the timing runs alone on a quiet machine:

    FSNAS_DATA_ROOT=../shared/data python scripts/front.py train RUN --table b80.json --also b1.json \\
        --factors 0.5,0.75,1,1.25,1.5 --out FRONT                 # evolutions and retraining
    python scripts/front.py measure FRONT                            # nothing else running: timing
    python scripts/front.py plot FRONT                               # FRONT/front.png and front.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from nas import cli
from nas.files import write_json

REFERENCES = {"Conv-4": "configs/genotypes/conv4.yaml", "ResNet-12": "configs/genotypes/resnet12.yaml"}


def finished(run: Path) -> bool:
    return (run / "summary.json").is_file()


def train(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", {k: v for k, v in vars(args).items() if k != "command"})
    search_config = str(Path(args.run) / "config.yaml")
    budget = [f"train.steps={args.steps}", f"train.episode.n_way={args.way}",
              f"train.options.lr_step={max(1, args.steps // 2)}", f"eval.episodes={args.eval_episodes}",
              "eval.tasks=[" + ", ".join(f"{{n_way: {w}, k_shot: 1, n_query: 15}}" for w in args.test_ways) + "]"]
    also = f"search.latency.also=[{', '.join('{table: ' + t + '}' for t in args.also)}]"
    for f in args.factors:
        search = out / f"search-{f:g}"
        if not finished(search):
            code = cli.main(["-q", "search", search_config, f"search.supernet={args.run}",
                             f"search.latency.table={args.table}", f"search.latency.target_of={args.reference}",
                             f"search.latency.target_factor={f}", also,
                             f"search.evolution.rerank.top={args.rerank}", "--out", str(search)])
            if code:
                raise SystemExit(f"the search at factor {f} failed (exit {code})")
    arches = {f"searched {f:g}x": out / f"search-{f:g}" for f in args.factors} | REFERENCES
    for name, arch in arches.items():
        run = out / f"retrain-{name.replace(' ', '_')}"
        if not finished(run):
            code = cli.main(["-q", "retrain", args.recipe, *budget, "--arch", str(arch), "--out", str(run)])
            if code:
                raise SystemExit(f"retraining {name} failed (exit {code})")


def measure(args) -> None:
    out = Path(args.out)
    settings = json.loads((out / "settings.json").read_text())
    for run in sorted(out.glob("retrain-*")):
        genotype = run / "genotype.yaml"
        for batch in args.batches:
            target = run / f"latency-b{batch}.json"
            if not target.is_file():
                cli.main(["-q", "latency", "measure", str(genotype), "--batch", str(batch), "--threads", "1",
                          "--input", settings["input"], "--repeats", str(args.repeats), "--out", str(target)])


def plot(args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(args.out)
    rows = []
    for run in sorted(out.glob("retrain-*")):
        summary = json.loads((run / "summary.json").read_text())
        tasks = {f"{r['n_way']}-way": r for r in summary["results"]}
        lat = {b: json.loads((run / f"latency-b{b}.json").read_text())["measured"]["median_ms"] for b in args.batches
               if (run / f"latency-b{b}.json").is_file()}
        rows.append({"name": run.name.removeprefix("retrain-").replace("_", " "),
                     "params": summary.get("parameters"), "latency_ms": lat,
                     **{k: (100 * v["accuracy"], 100 * v["ci95"]) for k, v in tasks.items()}})
    write_json(out / "front.json", rows)
    lines = ["| network | parameters | " + " | ".join(f"batch {b} (ms)" for b in args.batches)
             + " | 5-way 1-shot | 20-way 1-shot |", "|" + " --- |" * (4 + len(args.batches))]
    for r in rows:
        lat = " | ".join(f"{r['latency_ms'][b]:.2f}" if b in r["latency_ms"] else "-" for b in args.batches)
        acc = " | ".join(f"{r[k][0]:.2f} ± {r[k][1]:.2f}" if k in r else "-" for k in ("5-way", "20-way"))
        lines.append(f"| {r['name']} | {r['params'] or '-'} | {lat} | {acc} |")
    (out / "front.md").write_text("\n".join(lines) + "\n")
    key = f"{args.way}-way"
    fig, axes = plt.subplots(1, len(args.batches), figsize=(6 * len(args.batches), 4.5), squeeze=False)
    for ax, b in zip(axes[0], args.batches):
        for r in rows:
            if b not in r["latency_ms"] or key not in r:
                continue
            hand = not r["name"].startswith("searched")
            ax.errorbar(r["latency_ms"][b], r[key][0], yerr=r[key][1], fmt="s" if hand else "o",
                        color="tab:red" if hand else "tab:blue")
            ax.annotate(r["name"], (r["latency_ms"][b], r[key][0]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"measured latency, batch {b} (ms, 1 thread)")
        ax.set_ylabel(f"{key} 1-shot test accuracy (%)")
    fig.tight_layout()
    fig.savefig(out / "front.png", dpi=110)
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="evolve at each factor in RUN's supernet, retrain every choice and reference")
    t.add_argument("run", help="a finished single-path search (its trained supernet)")
    t.add_argument("--table", required=True, help="the latency table the factors apply to")
    t.add_argument("--also", nargs="*", default=[], help="more tables every choice must also meet")
    t.add_argument("--reference", default=REFERENCES["Conv-4"], help="the genotype the factors multiply")
    t.add_argument("--factors", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 0.75, 1.0, 1.25, 1.5])
    t.add_argument("--rerank", type=int, default=0, help="search.evolution.rerank.top of each evolution")
    t.add_argument("--recipe", default="configs/omniglot_protonet.yaml", help="the retraining config")
    t.add_argument("--steps", type=int, default=1500, help="the shared, smaller retraining budget")
    t.add_argument("--way", type=int, default=20, help="training episodes' ways")
    t.add_argument("--eval-episodes", type=int, default=1000)
    t.add_argument("--test-ways", type=lambda s: [int(x) for x in s.split(",")], default=[5, 20])
    t.add_argument("--input", default="1x28x28", help="CxHxW, for the timing step")
    t.add_argument("--out", required=True)
    m = sub.add_parser("measure", help="time every network of FRONT at each batch (run alone)")
    m.add_argument("out")
    m.add_argument("--batches", type=int, nargs="+", default=[1, 80])
    m.add_argument("--repeats", type=int, default=30)
    g = sub.add_parser("plot", help="FRONT/front.png, front.md and front.json")
    g.add_argument("out")
    g.add_argument("--batches", type=int, nargs="+", default=[1, 80])
    g.add_argument("--way", type=int, default=20, help="the test task plotted")
    args = p.parse_args()
    {"train": train, "measure": measure, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
