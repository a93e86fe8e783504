"""Long-tail losses on long-tailed Omniglot base classes, and what the best one does downstream.

    FSNAS_DATA_ROOT=../shared/data python scripts/bench_long_tail.py --out /tmp/longtail --jobs 2

For every imbalance ``--rhos`` and seed ``--seeds`` (the seed also picks which characters are the head):
Conv-4 is pretrained on the long-tailed split (configs/omniglot_longtail.yaml, ``--pretrain-steps`` batches
of 128) with each loss of ``--methods``, and its base-class accuracy is read at the final step on 5 held-out
images of every class: overall, balanced, many (> 10 training images) / medium / few (< 4).  ``crt`` and
``tau_norm`` are the decoupled classifiers of the cross-entropy run (cRT: ``--crt-steps`` class-balanced
batches on the frozen backbone; τ-norm with τ = 1).  Every run also tests its frozen backbone downstream
with the fine-tune baseline on ``--finetune-episodes`` 20-way 1-shot test episodes.

``--mtl-steps`` > 0 adds the downstream MTL comparison: at the largest imbalance, MTL (20-way, 2 tasks + 1
hard task per step) meta-trained from the backbone of the best loss by balanced accuracy (mean over seeds)
and from the cross-entropy backbone, for every seed, tested on ``--eval-episodes`` 20-way 1-shot episodes.

Run folders under ``--out``; a killed script, run again, resumes and skips.  Results: ``--out``/longtail.json
and longtail.md (mean ± standard deviation over seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fsnas_runs import ensure_run

GROUPS = ("accuracy", "balanced_accuracy", "many", "medium", "few")
HELDOUT, N_MAX, FEW = 5, 15, 4  # configs/omniglot_longtail.yaml: 20 images a class, 5 held out


def seql_threshold(rho: float) -> float:
    """SEQL's λ: the training frequency of a class with FEW images, so its tail is the 'few' group."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from meta.data.long_tail import exponential_profile
    return FEW / (4 * sum(exponential_profile(N_MAX, 1028, rho)))  # 4 rotations of every character


def loss_overrides(method: str, rho: float, crt_steps: int) -> list[str]:
    losses = {
        "ce": "{loss: cross_entropy}",
        "focal": "{loss: focal, loss_options: {gamma: 2.0}}",
        "class_balanced": "{loss: class_balanced, loss_options: {beta: 0.999}}",
        "ldam_drw": "{loss: ldam, loss_options: {max_margin: 0.5, scale: 30.0, drw_start: 0.8}}",
        "balanced_softmax": "{loss: balanced_softmax, loss_options: {tau: 1.0}}",
        "seql": f"{{loss: seql, loss_options: {{lam: {seql_threshold(rho):.3e}, gamma: 0.9}}}}",
        "ib": "{loss: ib, loss_options: {alpha: 1000.0, warmup: 0.5}}",
        "cdt": "{loss: cdt, loss_options: {gamma: 0.2}}",
    }
    options = losses[method].replace("{loss:", "{lr: 0.1, momentum: 0.9, weight_decay: 0.0005, loss:", 1)
    extra = [f"pretrain.crt={{steps: {crt_steps}}}", "pretrain.tau_norm=1.0"] if method == "ce" else []
    return [f"pretrain.options={options}", *extra]


def mean_sd(values: list[float | None]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--rhos", nargs="+", type=float, default=[10, 100])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["ce", "focal", "class_balanced", "ldam_drw", "balanced_softmax",
                                                    "seql", "ib", "cdt"])
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--crt-steps", type=int, default=300)
    p.add_argument("--mtl-steps", type=int, default=0, help="> 0: the downstream MTL comparison")
    p.add_argument("--eval-episodes", type=int, default=1000, help="test episodes of the MTL runs")
    p.add_argument("--finetune-episodes", type=int, default=600, help="test episodes of the fine-tune baseline")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each when > 1")
    args = p.parse_args()
    out, threads = args.out.resolve(), (1 if args.jobs > 1 else None)
    if "ce" not in args.methods:
        args.methods.insert(0, "ce")  # cRT, τ-norm and the downstream comparison need it

    def run_dir(rho: float, method: str, seed: int) -> Path:
        return out / f"rho{rho:g}" / method / f"seed{seed}"

    def pretrain(job: tuple[float, str, int]) -> dict:
        rho, method, seed = job
        return ensure_run(run_dir(rho, method, seed), "retrain", "configs/omniglot_longtail.yaml", f"seed={seed}",
                          f"data.long_tail.imbalance={rho:g}", f"data.long_tail.seed={seed}",
                          f"pretrain.steps={args.pretrain_steps}", f"eval.episodes={args.finetune_episodes}",
                          *loss_overrides(method, rho, args.crt_steps),
                          threads=threads)

    jobs = [(rho, m, s) for rho in args.rhos for m in args.methods for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        summaries = dict(zip(jobs, pool.map(pretrain, jobs)))

    rows = []
    for rho in args.rhos:
        variants = [(m, m, "base_classes") for m in args.methods]
        variants += [("crt", "ce", "base_classes_crt"), ("tau_norm", "ce", "base_classes_tau_norm")]
        for name, method, key in variants:
            runs = [summaries[(rho, method, s)] for s in args.seeds]
            row = {"rho": rho, "method": name, "seeds": args.seeds,
                   **{g: mean_sd([r["pretrain"][key][g] for r in runs]) for g in GROUPS},
                   "classes": runs[0]["pretrain"][key]["classes"],
                   "pretrain_seconds": statistics.mean(r["pretrain"]["seconds"] for r in runs)}
            row["finetune_20way"] = (mean_sd([r["accuracy"] for r in runs]) if key == "base_classes" else None)
            rows.append(row)

    downstream = []
    if args.mtl_steps:
        rho = max(args.rhos)
        candidates = [r for r in rows if r["rho"] == rho and r["method"] in args.methods and r["method"] != "ce"]
        best = max(candidates, key=lambda r: r["balanced_accuracy"][0])["method"]

        def mtl(job: tuple[str, int]) -> dict:
            method, seed = job
            weights = run_dir(rho, method, seed) / "model.pt"
            return ensure_run(out / f"rho{rho:g}-mtl" / method / f"seed{seed}", "retrain", "configs/omniglot_mtl.yaml",
                              f"seed={seed}", "pretrain.steps=0", f"model.weights={weights}",
                              f"train.steps={args.mtl_steps}", "train.episode={n_way: 20, k_shot: 1, n_query: 5}",
                              "train.val_every=0", f"eval.episodes={args.eval_episodes}",
                              "eval.tasks=[{n_way: 20, k_shot: 1, n_query: 15}]", threads=threads)
        todo = [(m, s) for m in ("ce", best) for s in args.seeds]
        with ThreadPoolExecutor(args.jobs) as pool:
            results = dict(zip(todo, pool.map(mtl, todo)))
        for s in args.seeds:
            a, b = results[(best, s)], results[("ce", s)]
            downstream.append({"seed": s, "rho": rho, "loss": best, "loss_accuracy": a["accuracy"],
                               "loss_ci95": a["ci95"], "ce_accuracy": b["accuracy"], "ce_ci95": b["ci95"],
                               "difference": a["accuracy"] - b["accuracy"],
                               "difference_ci95": math.hypot(a["ci95"], b["ci95"])})

    report = {"settings": vars(args) | {"out": str(out)}, "rows": rows, "downstream_mtl": downstream}
    (out / "longtail.json").write_text(json.dumps(report, indent=2, default=str))

    def cell(v: tuple[float, float] | None) -> str:
        return "—" if v is None else f"{100 * v[0]:.2f} ± {100 * v[1]:.2f}"
    lines = []
    for rho in args.rhos:
        classes = next(r["classes"] for r in rows if r["rho"] == rho)
        lines += [f"ρ = {rho:g} (classes many/medium/few: {classes['many']}/{classes['medium']}/{classes['few']})", "",
                  "| method | balanced | many | medium | few | overall | fine-tune 20-way 1-shot | pretrain s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in (r for r in rows if r["rho"] == rho):
            lines.append(f"| {r['method']} | {cell(r['balanced_accuracy'])} | {cell(r['many'])} | {cell(r['medium'])} | "
                         f"{cell(r['few'])} | {cell(r['accuracy'])} | {cell(r['finetune_20way'])} | "
                         f"{r['pretrain_seconds']:.0f} |")
        lines.append("")
    if downstream:
        lines += [f"Downstream MTL 20-way 1-shot at ρ = {downstream[0]['rho']:g}, {args.eval_episodes} episodes:", "",
                  f"| seed | {downstream[0]['loss']} | cross-entropy | difference |", "| --- | --- | --- | --- |"]
        for d in downstream:
            lines.append(f"| {d['seed']} | {100 * d['loss_accuracy']:.2f} ± {100 * d['loss_ci95']:.2f} | "
                         f"{100 * d['ce_accuracy']:.2f} ± {100 * d['ce_ci95']:.2f} | "
                         f"{100 * d['difference']:+.2f} ± {100 * d['difference_ci95']:.2f} |")
    (out / "longtail.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
