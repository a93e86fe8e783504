"""Rank check (one-shot "rationality"): do supernets rank architectures as training them would?

Two steps, so that the stand-alone training (the expensive, supernet-free ground truth) is done once and
every supernet is compared on the same architectures and the same episodes:

    # 1. draw --archs architectures of a search config's space (seeded; --include adds genotype files such as
    #    configs/genotypes/conv4.yaml), train each from scratch with ProtoNet, test on fixed val episodes:
    FSNAS_DATA_ROOT=../shared/data python scripts/rank_check.py stand-alone CONFIG --archs 24 --out ranks.json
    # 2. score the same architectures with each trained supernet (inherited weights, BN recalibrated, the
    #    same val episodes) and print Kendall's tau against the stand-alone accuracy:
    FSNAS_DATA_ROOT=../shared/data python scripts/rank_check.py one-shot ranks.json RUN_DIR [RUN_DIR ...] [--way 5]

Step 1 writes ``--out`` after every architecture and, run again, skips the architectures already there (a
killed run resumes; ``--reverse`` into another file is a second worker from the other end, merged by
``one-shot --also``).  Step 2 writes its figures into the same file under ``one_shot``, one entry per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from meta.episodes import EpisodeSampler
from meta.evaluation import evaluate
from meta.learners import ProtoNet
from nas.checks import load_config
from nas.files import write_json
from nas.pipeline import prepare
from nas.runs import RunDir
from nas.search.evolution import score_path
from nas.search.ranking import kendall_tau
from search_spaces import build_network, create_supernet, genotype_from_dict, load_genotype


def samplers(cfg, ds, args) -> tuple[EpisodeSampler, EpisodeSampler]:
    """Training episodes from the training split and fixed evaluation episodes from the validation split."""
    train = EpisodeSampler(ds, cfg.train.split, args.train_way, 1, 5, seed=args.seed)
    val = EpisodeSampler(ds, cfg.search.val_split, args.eval_way, 1, 15, seed=args.seed + 1)
    return train, val


def draw(cfg, shape, n: int, seed: int, include: list[str]) -> list:
    supernet = create_supernet(cfg.search.space, shape[0], **cfg.search.space_options)
    archs = [load_genotype(p) for p in include]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(100 * n):  # distinct architectures; bounded
        if len(archs) >= n + len(include):
            break
        g = supernet.sample_path(gen)
        if g not in archs:
            archs.append(g)
    return archs


def stand_alone(args) -> None:
    cfg = load_config(args.config)
    prepared = prepare(cfg, train=False, test=False)
    ds, device = prepared.ds, prepared.device
    train, val = samplers(cfg, ds, args)
    episodes = [val.episode(10**5 + i).to(device) for i in range(args.eval_episodes)]
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else {}
    rows = done.get("rows", [])
    finished = {json.dumps(r["genotype"], sort_keys=True) for r in rows}
    settings = {"config": str(args.config), "archs": args.archs, "include": args.include, "seed": args.seed,
                "train_steps": args.train_steps, "train_way": args.train_way, "eval_way": args.eval_way,
                "eval_episodes": args.eval_episodes, "lr": args.lr, "threads": torch.get_num_threads()}
    if done and done.get("settings") != settings:
        raise SystemExit(f"{out} was made with other settings: {done.get('settings')}; give another --out")
    archs = list(enumerate(draw(cfg, ds.image_shape, args.archs, args.seed, args.include)))
    for k, g in reversed(archs) if args.reverse else archs:  # --reverse: a second worker from the other end
        if json.dumps(g.to_dict(), sort_keys=True) in finished:
            continue
        torch.manual_seed(args.seed + k)
        learner = ProtoNet(build_network(g, ds.image_shape[0]).to(device, memory_format=torch.channels_last),
                           lr=args.lr, lr_step=max(1, args.train_steps // 2), lr_gamma=0.5)
        t0 = time.perf_counter()
        for step in range(args.train_steps):
            learner.meta_train_step([train.episode(step).to(device)])
        acc = evaluate(learner, _Fixed(episodes), len(episodes), device, progress=False)
        rows.append({"index": k, "genotype": g.to_dict(), "params": g.params(ds.image_shape),
                     "stand_alone": acc.accuracy, "ci95": acc.ci95, "train_seconds": round(time.perf_counter() - t0, 1)})
        write_json(out, {"settings": settings, "rows": rows, "one_shot": done.get("one_shot", {})})
        print(f"arch {k}: stand-alone {100 * acc.accuracy:.2f} ± {100 * acc.ci95:.2f}%  ({rows[-1]['params']:,} "
              f"params, {rows[-1]['train_seconds']} s)", flush=True)


def one_shot(args) -> None:
    out = Path(args.ranks)
    data = json.loads(out.read_text())
    settings, rows = data["settings"], data["rows"]
    for other in args.also:  # rows of a second worker (--reverse) with the same settings
        more = json.loads(Path(other).read_text())
        if more["settings"] != settings:
            raise SystemExit(f"{other} was made with other settings than {out}")
        have = {json.dumps(r["genotype"], sort_keys=True) for r in rows}
        rows += [r for r in more["rows"] if json.dumps(r["genotype"], sort_keys=True) not in have]
    for run_dir in args.runs:
        run = RunDir.open(run_dir)
        cfg = load_config(run.config_path)
        prepared = prepare(cfg, train=False, test=False, search=True)
        ds, device, supernet = prepared.ds, prepared.device, prepared.search.supernet
        supernet.load_state_dict(run.load_checkpoint("search")["supernet"])
        way = args.way or settings["eval_way"]
        train, val = samplers(cfg, ds, argparse.Namespace(**{**settings, "eval_way": way}))
        n_eval = args.eval_episodes or settings["eval_episodes"]
        episodes = [val.episode(10**5 + i).to(device) for i in range(n_eval)]
        batches = [torch.cat([e.support_x, e.query_x]) for e in
                   (train.episode(10**6 + i).to(device) for i in range(cfg.search.evolution.bn_batches))]
        scores = [score_path(supernet, genotype_from_dict(r["genotype"]), batches, episodes) for r in rows]
        tau = kendall_tau(scores, [r["stand_alone"] for r in rows])
        key = str(run.path) if way == settings["eval_way"] else f"{run.path} ({way}-way)"
        data["one_shot"][key] = {"sampler": cfg.search.sampler, "steps": cfg.search.steps,
                                 "sampler_options": cfg.search.sampler_options, "way": way,
                                 "eval_episodes": n_eval, "scores": scores, "kendall_tau": tau}
        write_json(out, data)
        print(f"{run.path} ({cfg.search.sampler}, {cfg.search.steps} steps, {way}-way): Kendall tau {tau:.3f} over "
              f"{len(rows)} architectures", flush=True)


class _Fixed:
    """The same pre-drawn episodes for every evaluation (a sampler-like view)."""

    def __init__(self, episodes):
        self.episodes = episodes

    def episode(self, i):
        return self.episodes[i]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    s = sub.add_parser("stand-alone", help="train the drawn architectures from scratch")
    s.add_argument("config", help="a search config (its space and data)")
    s.add_argument("--out", required=True)
    s.add_argument("--archs", type=int, default=24)
    s.add_argument("--include", nargs="*", default=[], help="genotype files to rank too (e.g. Conv-4's)")
    s.add_argument("--train-steps", type=int, default=1500)
    s.add_argument("--train-way", type=int, default=20)
    s.add_argument("--eval-way", type=int, default=20)
    s.add_argument("--eval-episodes", type=int, default=300)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--seed", type=int, default=123)
    s.add_argument("--reverse", action="store_true", help="from the last architecture to the first (a 2nd worker)")
    o = sub.add_parser("one-shot", help="score the same architectures with trained supernets")
    o.add_argument("ranks", help="the file stand-alone wrote")
    o.add_argument("runs", nargs="+", help="finished fsnas search runs of the same space")
    o.add_argument("--also", nargs="*", default=[], help="other stand-alone files of the same settings")
    o.add_argument("--eval-episodes", type=int, help="the first N of the stand-alone episodes (default: all)")
    o.add_argument("--way", type=int, help="score on N-way episodes of the same split and seed (default: the "
                                           "stand-alone episodes' way; 5: as the search's evolution scores)")
    args = p.parse_args()
    stand_alone(args) if args.step == "stand-alone" else one_shot(args)


if __name__ == "__main__":
    main()
