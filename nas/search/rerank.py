"""Re-ranking evolution's shortlist by a short stand-alone training.

A supernet's inherited-weight score ranks the networks of a space only loosely (docs/benchmarks.md measures
Kendall tau of -0.2 to 0.3 on the elastic space at this machine's budgets), too loosely to choose between
networks a point apart.  So the one-shot score shortlists and a proxy decides: each of the best
``rerank.top`` candidates is trained from scratch for ``rerank.steps`` steps with the run's own learner and
options, then scored on fixed validation episodes; the best proxy accuracy is chosen.  Each result is
written to ``rerank.json`` as it is made, so a killed search resumes without training a candidate twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import torch
from tqdm import tqdm

from meta.data import FewShotDataset
from meta.episodes import EpisodeSampler
from meta.evaluation import evaluate
from search_spaces import build_network, genotype_from_dict

from ..config import RunConfig
from ..files import write_json
from ..pipeline import build_learner
from ..runs import RunDir
from .evolution import Candidate
from .shortlist import pick_shortlist

log = logging.getLogger(__name__)

RERANK_FILE = "rerank.json"


def proxy_config(cfg: RunConfig) -> RunConfig:
    """The run's config with the training section cut to the proxy: its episodes and steps, and a learning
    rate step (an option of the learner, where it has one) scaled by the same factor as the steps."""
    rc, tc = cfg.search.evolution.rerank, cfg.train
    options = dict(tc.options)
    if "lr_step" in options and tc.steps:
        options["lr_step"] = max(1, round(options["lr_step"] * rc.steps / tc.steps))
    train = dataclasses.replace(tc, steps=rc.steps, episode=rc.episode, options=options)
    return dataclasses.replace(cfg, train=train)


def rerank(cfg: RunConfig, run: RunDir, ds: FewShotDataset, device: torch.device, candidates: list[Candidate],
           reference: Candidate | None = None, progress: bool = True, accept=None) -> list[Candidate]:
    """The shortlist of ``candidates`` (best one-shot first; ``pick_shortlist``), each with its proxy accuracy,
    best proxy first; the rest follow in their order.  ``reference`` (the network the user would pick by hand,
    rerank.with_reference) is trained and scored alongside, and returned first when nothing beats it.
    ``accept``: a measured latency check the shortlist's networks must pass (nas.search.confirm)."""
    rc = cfg.search.evolution.rerank
    shortlist, rest = pick_shortlist(candidates, rc.top, rc.spread_over, accept)
    if reference is not None and all(c.genotype != reference.genotype for c in shortlist):
        rest = [c for c in rest if c.genotype != reference.genotype]
        shortlist.append(reference)
    pcfg = proxy_config(cfg)
    ep = rc.episode
    train = EpisodeSampler(ds, cfg.train.split, ep.n_way, ep.k_shot, ep.n_query, seed=cfg.seed, device=device)
    val = EpisodeSampler(ds, cfg.search.val_split, ep.n_way, ep.k_shot, rc.eval_query, seed=cfg.seed + 3,
                         device=device)
    path = run.path / RERANK_FILE
    done = {genotype_from_dict(r["genotype"]): r for r in (json.loads(path.read_text()) if path.is_file() else [])}
    in_channels = ds.image_shape[0]
    for k, c in enumerate(tqdm(shortlist, desc="re-rank", disable=not progress, leave=False)):
        key = c.genotype
        if key not in done:
            torch.manual_seed(cfg.seed)  # a candidate's proxy does not depend on its place in the shortlist
            learner = build_learner(pcfg, build_network(c.genotype, in_channels), device, ds.image_shape)
            t0 = time.perf_counter()
            for step in range(rc.steps):
                learner.set_progress(step, rc.steps)
                learner.meta_train_step([train.episode(step).to(device)])
            res = evaluate(learner, val, rc.eval_episodes, device, progress=False)
            done[key] = {"genotype": c.genotype.to_dict(), "one_shot": c.score, "proxy_accuracy": res.accuracy,
                         "proxy_ci95": res.ci95, "train_seconds": round(time.perf_counter() - t0, 1)}
            with run.writing():
                write_json(path, list(done.values()))
            run.log({"phase": "rerank", "candidate": k + 1, "one_shot": c.score, "proxy_accuracy": res.accuracy})
            log.info("re-rank %d/%d: proxy %.4f (one-shot %.4f)", k + 1, len(shortlist), res.accuracy, c.score)
        c.proxy = done[key]["proxy_accuracy"]
    return sorted(shortlist, key=lambda c: -c.proxy) + rest
