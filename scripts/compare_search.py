"""Searched architectures against random ones and Conv-4 on Omniglot, at the same retraining budget.

    FSNAS_DATA_ROOT=../shared/data python scripts/compare_search.py --out /tmp/compare \
        --samplers spos darts gdas --seeds 0 1 2

1. search: ``fsnas search configs/search/omniglot_<sampler>_cpu.yaml seed=<seed>`` for every sampler and seed;
2. random: ``--random`` architectures drawn uniformly from the same space under the same ``search.max_params``;
3. retrain: every searched and random architecture, and Conv-4, with ProtoNet for the same budget
   (``--retrain-config`` with ``--retrain-steps`` 20-way 1-shot episodes), then tested on the same
   ``--eval-episodes`` 20-way 1-shot test episodes (95% CI; the final weights, no validation-based choice);
4. latency: parameters and the measured CPU latency of each backbone (batch 1 and one 20-way test episode);
5. rank check: for every SPOS run, Kendall's tau between the one-shot score of the random architectures
   (inherited weights, BN recalibrated, the run's own meta-val episodes) and their stand-alone test accuracy.

Every stage is an ordinary fsnas run folder under ``--out``; a killed script, run again with the same
arguments, resumes killed runs and skips finished ones.  Results: ``--out``/compare.json and compare.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from fsnas_runs import REPO, ensure_run


def random_architectures(space_config: Path, n: int, seed: int, out: Path) -> list[Path]:
    from nas.checks import load_config
    from search_spaces import create_supernet
    cfg = load_config(space_config)
    shape = (1, cfg.data.image_size, cfg.data.image_size)
    supernet = create_supernet(cfg.search.space, shape[0], **cfg.search.space_options)
    gen, archs = torch.Generator().manual_seed(seed), []
    for _ in range(100 * n):  # distinct, within the constraint; bounded
        g = supernet.sample_path(gen)
        if g not in archs and (cfg.search.max_params is None or g.params(shape) <= cfg.search.max_params):
            archs.append(g)
        if len(archs) == n:
            break
    else:
        raise SystemExit(f"only {len(archs)} distinct architectures within search.max_params in {100 * n} draws")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, g in enumerate(archs):
        paths.append(out / f"random{k}.yaml")
        g.save(paths[-1])
    return paths


def latency(genotype_path: Path | None, n_query: int, n_way: int) -> dict:
    from nas.latency import measure_latency
    from search_spaces import FixedGenotype, build_network, load_genotype
    g = load_genotype(genotype_path) if genotype_path else FixedGenotype("conv4", {"hidden": 64})
    net = build_network(g, 1)
    one = measure_latency(net, (1, 1, 28, 28), repeats=100, channels_last=True)
    episode = measure_latency(net, (n_way * (1 + n_query), 1, 28, 28), repeats=20, channels_last=True)
    return {"params": sum(p.numel() for p in net.parameters()), "latency_ms_batch1": round(one.median_ms, 3),
            f"latency_ms_batch{n_way * (1 + n_query)}": round(episode.median_ms, 2),
            "threads": torch.get_num_threads()}


def rank_check(search_run: Path, random_paths: list[Path], stand_alone: list[float], episodes: int) -> dict:
    from nas.checks import load_config
    from nas.pipeline import prepare
    from nas.runs import RunDir
    from nas.search.evolution import score_path
    from nas.search.loop import search_samplers
    from nas.search.ranking import kendall_tau
    from search_spaces import load_genotype
    run = RunDir.open(search_run)
    cfg = load_config(run.config_path)
    prepared = prepare(cfg, train=False, test=False, search=True)
    ds, device, supernet = prepared.ds, prepared.device, prepared.search.supernet
    supernet.load_state_dict(run.load_checkpoint("search")["supernet"])
    train, val = search_samplers(cfg, ds)
    eps = [val.episode(i).to(device) for i in range(episodes)]
    batches = [torch.cat([e.support_x, e.query_x]) for e in
               (train.episode(10**6 + i).to(device) for i in range(cfg.search.evolution.bn_batches))]
    one_shot = [score_path(supernet, load_genotype(p), batches, eps) for p in random_paths]
    return {"search_run": str(search_run), "val_episodes": episodes, "one_shot": one_shot,
            "stand_alone": stand_alone, "kendall_tau": kendall_tau(one_shot, stand_alone)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--samplers", nargs="+", default=["spos", "darts", "gdas"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--random", type=int, default=10, help="random architectures (default 10)")
    p.add_argument("--random-seed", type=int, default=7)
    p.add_argument("--retrain-config", type=Path, default=REPO / "configs/omniglot_protonet.yaml")
    p.add_argument("--retrain-steps", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=1000)
    p.add_argument("--rank-episodes", type=int, default=200)
    p.add_argument("--search-overrides", nargs="*", default=[], help="extra overrides for every search")
    p.add_argument("--jobs", type=int, default=1,
                   help="searches and retrains at once, one thread each when > 1 (on 2 cores, "
                        "two 1-thread jobs beat one 2-thread job on these small nets)")
    args = p.parse_args()
    out = args.out.resolve()
    steps = args.retrain_steps
    retrain_overrides = [f"train.steps={steps}", "train.episode.n_way=20", "train.episode.n_query=5",
                         f"train.options.lr_step={max(steps // 2, 1)}", "train.val_every=0",
                         f"train.checkpoint_every={max(steps // 10, 1)}", f"eval.episodes={args.eval_episodes}",
                         "eval.tasks=[{n_way: 20, k_shot: 1, n_query: 15}]"]

    def train(name: str, genotype: Path | None) -> dict:
        model = [f"model.genotype={genotype}"] if genotype else ["model.name=conv4"]
        return ensure_run(out / "retrain" / name, "retrain", str(args.retrain_config), *retrain_overrides, *model,
                          threads=1 if args.jobs > 1 else None)

    def retrain(name: str, genotype: Path | None) -> dict:
        r = train(name, genotype)["results"][0]  # finished runs are read, not rerun
        return {"name": name, "genotype": str(genotype) if genotype else "conv4", "accuracy": r["accuracy"],
                "ci95": r["ci95"], "episodes": r["episodes"], "run": str(out / "retrain" / name),
                **latency(genotype, 15, 20)}

    def search(sampler: str, seed: int) -> dict:
        run = out / "search" / f"{sampler}-seed{seed}"
        found = ensure_run(run, "search", f"configs/search/omniglot_{sampler}_cpu.yaml", f"seed={seed}",
                           *args.search_overrides, threads=1 if args.jobs > 1 else None)
        return {"sampler": sampler, "seed": seed, "run": str(run), "val_score": found["score"],
                "search_seconds": found.get("search_seconds")}

    with ThreadPoolExecutor(args.jobs) as pool:
        searches = list(pool.map(lambda job: search(*job), [(a, s) for a in args.samplers for s in args.seeds]))
    random_paths = random_architectures(REPO / "configs/search/omniglot_spos_cpu.yaml", args.random,
                                        args.random_seed, out / "random")
    # all retrains first (in parallel with --jobs), then latency, measured one model at a time
    todo = [(f"{s['sampler']}-seed{s['seed']}", Path(s["run"]) / "genotype.yaml") for s in searches]
    todo += [(p.stem, p) for p in random_paths] + [("conv4", None)]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda item: train(*item), todo))
    rows = [{"group": s["sampler"], "seed": s["seed"],
             **retrain(f"{s['sampler']}-seed{s['seed']}", Path(s["run"]) / "genotype.yaml")} for s in searches]
    random_rows = [{"group": "random", **retrain(path.stem, path)} for path in random_paths]
    rows += random_rows + [{"group": "conv4", **retrain("conv4", None)}]
    median = statistics.median(r["accuracy"] for r in random_rows)
    ranks = [rank_check(Path(s["run"]), random_paths, [r["accuracy"] for r in random_rows], args.rank_episodes)
             for s in searches if s["sampler"] == "spos"]
    result = {"retrain_config": str(args.retrain_config), "retrain_overrides": retrain_overrides,
              "random_seed": args.random_seed, "random_median_accuracy": median, "searches": searches,
              "rows": rows, "rank_checks": ranks, "torch": torch.__version__}
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    lines = ["| model | seed | params | CPU ms (batch 1) | CPU ms (20-way episode, 320 images) | "
             "20-way 1-shot | beats random median |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        beat = "" if r["group"] == "random" else ("yes" if r["accuracy"] - r["ci95"] > median else
                                                  "mean only" if r["accuracy"] > median else "no")
        lines.append(f"| {r['name']} | {r.get('seed', '')} | {r['params']:,} | {r['latency_ms_batch1']} | "
                     f"{r['latency_ms_batch320']} | {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f} | {beat} |")
    lines.append(f"\nRandom median: {100 * median:.2f}%.")
    for rc in ranks:
        lines.append(f"Rank check ({rc['search_run']}): Kendall tau {rc['kendall_tau']:.3f} over "
                     f"{len(rc['one_shot'])} architectures.")
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
