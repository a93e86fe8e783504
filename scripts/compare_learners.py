"""Base-learners compared on Omniglot (Vinyals split) at stated CPU budgets, and MTL with and without the
hard-task meta-batch.

    FSNAS_DATA_ROOT=../shared/data python scripts/compare_learners.py --out /tmp/learners --jobs 2

Every method trains Conv-4 (64 channels) from scratch or from the same pretraining, for each of 5-way and
20-way 1-shot, and is tested on the same ``--eval-episodes`` test episodes (15 queries per class, final
weights, no validation-based choice, 95% CI):

- ``pretrain-seed<s>``: many-way pretraining (``--pretrain-steps`` batches of 128 over the 4112 training
  classes) then the fine-tune baseline (a new linear head per episode; no meta-training);
- ``protonet``: ``--protonet-steps`` episodes;
- ``maml`` (second order), ``fomaml`` (first order), ``anil``: ``--maml-steps`` outer steps of 8 tasks at
  inner lr 0.4 (configs/omniglot_maml.yaml), 1 inner step while training (``--fomaml-inner-steps`` for FOMAML:
  with one step from the zero head only the head adapts and first order gives the backbone no signal through
  it; measured, it did not learn); the test-time inner steps are chosen among ``--inner-steps`` and the
  training ones by accuracy on ``--val-episodes`` validation episodes (3 collapsed 20-way MAML: 29.9% against
  77.7% with 1 step on 200 test episodes), then tested;
- ``mtl``: the pretrained backbone of ``pretrain-seed<s>`` frozen, ``--mtl-steps`` outer steps of 2 tasks +
  1 hard task (``mtl-noht``: 3 ordinary tasks, the same number of tasks) for seeds ``--seeds`` at 5-way.

``--model-genotype`` trains a searched cell instead of Conv-4; ``--ways 20`` runs only the 20-way rows.  Run folders under
``--out``; a killed script, run again, resumes and skips.  Runs start in the order of ``--methods`` (cheap
ones first finish more rows before a stop).  Results: ``--out``/learners.json and learners.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from fsnas_runs import ensure_eval, ensure_run

WAYS = (5, 20)
MAML_FAMILY = ("maml", "fomaml", "anil")  # learners whose test-time inner steps are chosen on validation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the MTL +/- hard-task runs")
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--protonet-steps", type=int, default=2000)
    p.add_argument("--maml-steps", type=int, default=300)
    p.add_argument("--mtl-steps", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=1000)
    p.add_argument("--inner-steps", nargs="+", type=int, default=[1, 2, 3],
                   help="test-time inner steps of the MAML family, chosen on validation episodes")
    p.add_argument("--val-episodes", type=int, default=200)
    p.add_argument("--fomaml-inner-steps", type=int, default=5, help="FOMAML's inner steps while meta-training")
    p.add_argument("--methods", nargs="+", default=["finetune", "protonet", "maml", "fomaml", "anil", "mtl"])
    p.add_argument("--ways", nargs="+", type=int, default=list(WAYS),
                   help="the N of the N-way 1-shot rows (a subset finishes part of a table)")
    p.add_argument("--model-genotype", type=Path, help="a searched genotype instead of Conv-4")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run, e.g. train.options.inner_lr=1.2")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each when > 1")
    args = p.parse_args()
    out, threads = args.out.resolve(), (1 if args.jobs > 1 else None)
    common = ([f"model.genotype={args.model_genotype.resolve()}"] if args.model_genotype else []) + args.set
    seed0, ways = args.seeds[0], tuple(args.ways)

    def evals(*task_ways: int) -> list[str]:
        tasks = ", ".join(f"{{n_way: {w}, k_shot: 1, n_query: 15}}" for w in task_ways)
        return [f"eval.episodes={args.eval_episodes}", f"eval.tasks=[{tasks}]", "train.val_every=0"]

    def pretrain(seed: int) -> dict:
        return ensure_run(out / f"pretrain-seed{seed}", "retrain", "configs/omniglot_finetune.yaml", f"seed={seed}",
                          f"pretrain.steps={args.pretrain_steps}", *evals(*WAYS), *common, threads=threads)

    def episodic(name: str, config: str, way: int, *overrides: str, seed: int = seed0) -> dict:
        return ensure_run(out / f"{name}-{way}way" / f"seed{seed}", "retrain", config, f"seed={seed}",
                          f"train.episode.n_way={way}", *evals(way), *common, *overrides, threads=threads)

    def choose_inner_steps(job: tuple, summary: dict) -> tuple[int, dict, dict]:
        """Test-time inner steps by validation accuracy (ties: fewer steps), then the test episodes with them."""
        run, way = Path(summary["run"]), job[1]
        trained_steps = yaml.safe_load((run / "config.yaml").read_text())["train"]["options"]["steps"]
        choices = sorted(set(args.inner_steps) | {int(trained_steps)})
        task = [f"eval.tasks=[{{n_way: {way}, k_shot: 1, n_query: 15}}]"]
        val = {n: ensure_eval(run.parent / f"{run.name}-val-steps{n}", run, "eval.split=val",
                              f"eval.episodes={args.val_episodes}", f"eval.inner_steps={n}", *task,
                              threads=threads)["accuracy"] for n in choices}
        best = max(choices, key=lambda n: (val[n], -n))
        own = summary["results"][0]
        if own.get("inner_steps") == best and own["episodes"] == args.eval_episodes:
            return best, summary, val  # the run's own test used these steps on the same seeded episodes
        test = ensure_eval(run.parent / f"{run.name}-test-steps{best}", run, f"eval.episodes={args.eval_episodes}",
                           f"eval.inner_steps={best}", *task, threads=threads)
        return best, test, val

    maml = [f"train.steps={args.maml_steps}", "train.checkpoint_every=50"]
    mtl = [f"train.steps={args.mtl_steps}", "pretrain.steps=0"]
    jobs = {
        "protonet": lambda w, s: episodic("protonet", "configs/omniglot_protonet.yaml", w,
                                          f"train.steps={args.protonet_steps}", "train.episode.n_query=5",
                                          f"train.options.lr_step={max(args.protonet_steps // 2, 1)}", seed=s),
        "maml": lambda w, s: episodic("maml", "configs/omniglot_maml.yaml", w, *maml, seed=s),
        "fomaml": lambda w, s: episodic("fomaml", "configs/omniglot_maml.yaml", w, *maml,
                                        "train.options.order=first", f"train.options.steps={args.fomaml_inner_steps}",
                                        f"train.options.test_steps={args.fomaml_inner_steps}", seed=s),
        "anil": lambda w, s: episodic("anil", "configs/omniglot_maml.yaml", w, *maml, "train.options.anil=true",
                                      seed=s),
        "mtl": lambda w, s: episodic("mtl", "configs/omniglot_mtl.yaml", w, *mtl, "train.meta_batch=2",
                                     "train.hard_tasks=1", f"model.weights={out}/pretrain-seed{s}/model.pt", seed=s),
        "mtl-noht": lambda w, s: episodic("mtl-noht", "configs/omniglot_mtl.yaml", w, *mtl, "train.meta_batch=3",
                                          "train.hard_tasks=0", f"model.weights={out}/pretrain-seed{s}/model.pt",
                                          seed=s),
    }
    mtl_on = "mtl" in args.methods
    pretrain_seeds = args.seeds if mtl_on else [seed0] if "finetune" in args.methods else []
    todo = [(m, w, seed0) for m in args.methods if m in jobs for w in ways]
    if mtl_on and 5 in ways:
        todo += [(m, 5, s) for m in ("mtl", "mtl-noht") for s in args.seeds if (m, 5, s) not in todo]
    if not all((out / f"pretrain-seed{s}" / "summary.json").is_file() for s in pretrain_seeds):
        todo.sort(key=lambda job: job[0].startswith("mtl"))  # what needs no pretraining runs beside it

    with ThreadPoolExecutor(args.jobs) as pool:
        # Pretraining is queued first, so an MTL job waiting on it never holds back the worker it needs.
        pretrained = {s: pool.submit(pretrain, s) for s in pretrain_seeds}

        def run(job: tuple) -> dict:
            method, way, seed = job
            if method.startswith("mtl"):
                pretrained[seed].result()
            summary = jobs[method](way, seed)
            if method not in MAML_FAMILY:
                return summary
            steps, test, val = choose_inner_steps(job, summary)
            return {**test, "as_configured": summary["results"][0], "inner_steps_val": val, "inner_steps": steps,
                    "train": summary["train"]}

        results = dict(zip(todo, pool.map(run, todo)))
        for future in pretrained.values():
            future.result()

    rows = []
    if "finetune" in args.methods:
        summary = pretrain(seed0)
        rows.append({"method": "finetune", "seed": seed0, "train_seconds": 0.0,
                     "pretrain_seconds": summary["pretrain"]["seconds"],
                     **{f"{r['n_way']}way": r for r in summary["results"] if r["n_way"] in ways}})
    for m in args.methods:
        if m in jobs:
            rows.append({"method": m, "seed": seed0, **{f"{w}way": results[(m, w, seed0)]["results"][0] for w in ways},
                         "train_seconds": sum(results[(m, w, seed0)]["train"]["seconds"] for w in ways),
                         "pretrain_seconds": pretrain(seed0)["pretrain"]["seconds"] if m.startswith("mtl") else 0.0,
                         **{f"{w}way_{k}": results[(m, w, seed0)][k] for w in ways
                            for k in ("inner_steps_val", "as_configured") if k in results[(m, w, seed0)]}})
    ht = []
    if mtl_on and 5 in ways:
        for s in args.seeds:
            a, b = (results[(m, 5, s)] for m in ("mtl", "mtl-noht"))
            ht.append({"seed": s, "with": a["accuracy"], "with_ci95": a["ci95"], "without": b["accuracy"],
                       "without_ci95": b["ci95"], "difference": a["accuracy"] - b["accuracy"],
                       "difference_ci95": math.hypot(a["ci95"], b["ci95"])})  # independent-CI bound
    report = {"budgets": vars(args) | {"out": str(out), "model_genotype": str(args.model_genotype)},
              "rows": rows, "hard_tasks": ht}
    (out / "learners.json").write_text(json.dumps(report, indent=2, default=str))
    lines = ["| method | " + " | ".join(f"{w}-way 1-shot" for w in ways) +
             f" | meta-training seconds ({' + '.join(f'{w}-way' for w in ways)}) | pretraining seconds |",
             "| --- " * (len(ways) + 3) + "|"]
    for r in rows:
        cells = [f"{100 * r[f'{w}way']['accuracy']:.2f} ± {100 * r[f'{w}way']['ci95']:.2f}" +
                 (f" ({r[f'{w}way']['inner_steps']} test steps)" if r["method"] in MAML_FAMILY else "")
                 for w in ways]
        lines.append(f"| {r['method']} | {' | '.join(cells)} | {r['train_seconds']:.0f} | "
                     f"{r['pretrain_seconds']:.0f} |")
    if ht:
        lines += ["", "| seed | MTL with hard tasks | without | difference |", "| --- | --- | --- | --- |"]
        for h in ht:
            lines.append(f"| {h['seed']} | {100 * h['with']:.2f} ± {100 * h['with_ci95']:.2f} | "
                         f"{100 * h['without']:.2f} ± {100 * h['without_ci95']:.2f} | "
                         f"{100 * h['difference']:+.2f} ± {100 * h['difference_ci95']:.2f} |")
        diffs = [h["difference"] for h in ht]
        if len(diffs) > 1:
            t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(len(diffs), 2.0)
            half = t * statistics.stdev(diffs) / math.sqrt(len(diffs))
            lines.append(f"\nMean difference over {len(diffs)} seeds: {100 * statistics.mean(diffs):+.2f} ± "
                         f"{100 * half:.2f} (95% t-interval over seeds).")
    (out / "learners.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
