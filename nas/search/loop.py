"""The search loop: trains the supernet of a ``SearchSetup`` with its strategy on seeded episodes, logs,
checkpoints, resumes, and writes the chosen genotype with its candidates table and pictures.

Run folder additions: ``genotype.yaml`` (the result), ``candidates.json`` (top candidates and scores),
``alpha_history.jsonl`` and ``alpha_history.png`` (differentiable strategies), ``cells/*.png``,
``checkpoints/search.pt``.  A resumed search (SIGKILL included) ends with the same genotype on CPU.

On several ranks (``nas.distributed``) every rank trains the same supernet on its share of each step's
``search.meta_batch`` episodes, the strategy averaging its gradients; only rank 0 logs, checkpoints, evolves,
reranks and writes the results.  BatchNorm: every episode is normalised by its own batch statistics in
training, on any number of ranks; the running statistics are averaged over the ranks after every step (close
to, not equal to, one process's running average), and neither evolution nor DARTS's derived genotype reads
them: evolution recalibrates each candidate's statistics on its own batches.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from meta.data import FewShotDataset
from meta.episodes import EpisodeSampler
from meta.parallel import Ranks
from meta.precision import autocast
from search_spaces import PARAMETER_FREE, DartsGenotype, load_genotype

from ..checks.search import SUPERNET_FIX
from ..config import RunConfig
from ..divergence import DivergenceGuard
from ..errors import UserError
from ..files import atomic_write_bytes, write_json
from ..runs import GENOTYPE_FILE, RunDir
from ..train import episode_sampler
from .confirm import confirmed, confirmer
from .evolution import Candidate, evolve, score_path, scoring_data
from .latency import latency_report
from .rerank import rerank
from .setup import SearchSetup
from .shortlist import pick_shortlist
from .strategies import alpha_entropy

log = logging.getLogger(__name__)

ALPHA_FILE = "alpha_history.jsonl"


def skip_share(genotype) -> float:
    """Share of parameter-free ops (skip, pools) in a genotype: the DARTS collapse alarm."""
    if not isinstance(genotype, DartsGenotype):
        return 0.0
    ops = [op for cell in (genotype.normal, genotype.reduce) for node in cell.nodes for op, _ in node]
    return sum(op in PARAMETER_FREE for op in ops) / len(ops)


def search_samplers(cfg: RunConfig, ds: FewShotDataset,
                    device: torch.device | None = None) -> tuple[EpisodeSampler, EpisodeSampler]:
    ep = cfg.search.episode
    return (episode_sampler(ds, cfg.train.split, ep, cfg.seed, device),
            episode_sampler(ds, cfg.search.val_split, ep, cfg.seed + 1, device))


def run_search(cfg: RunConfig, run: RunDir, ds: FewShotDataset, device: torch.device, setup: SearchSetup,
               progress: bool = True, ranks: Ranks = Ranks()) -> dict:
    """Train ``setup``'s supernet (built by ``build_search`` for this config, before the run folder) and choose.
    ``ranks``: this process's place among data-parallel workers; all but the first return {} after training."""
    sc, lc = cfg.search, cfg.search.latency
    supernet, predictor = setup.supernet, setup.predictor
    strategy = setup.strategy()
    strategy.ranks = ranks
    train, val = search_samplers(cfg, ds, device)
    differentiable, evolves = strategy.differentiable, strategy.chooses_by_evolution

    start = 0
    state = run.load_checkpoint("search")
    if state is None and sc.supernet is not None:
        state = trained_supernet(sc.supernet, device)
        try:
            supernet.load_state_dict(state["supernet"])
        except RuntimeError:
            raise UserError(f"search.supernet: the supernet of {sc.supernet} does not fit this one (another "
                            f"dataset's channels or image size?); search it anew") from None
        start = sc.steps  # no training: the evolution runs in the given supernet
        log.info("evolving in the trained supernet of %s", sc.supernet)
    elif state is not None:
        supernet.load_state_dict(state["supernet"])
        strategy.load_state_dict(state["sampler"])  # the key predates the rename: old runs resume
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
        run.truncate_metrics("search", start)
        run.truncate_metrics("alpha", start, ALPHA_FILE)
        log.info("resuming search in %s from step %d", run.path, start)

    t0 = time.perf_counter()
    window: list[dict] = []
    bar = tqdm(range(start, sc.steps), initial=start, total=sc.steps, desc=f"search ({sc.sampler})", unit="step",
               disable=not progress, dynamic_ncols=True)
    guard = DivergenceGuard("search", f"Lower the weight learning rate (search.sampler_options.w_lr in "
                                      f"{run.config_path}) or clip gradients harder (grad_clip)")
    for step in bar:
        share = ranks.episode_indices(step, sc.meta_batch)  # with one rank and meta_batch 1: episode ``step``
        if ranks.parallel:  # torch's generator (GDAS's Gumbel draws): each rank its own, drawn alike on resume
            torch.manual_seed(cfg.seed * 1_000_003 + share.start)
        with autocast(device, sc.amp):  # losses and distances stay float32 (meta.precision)
            window.append(strategy.step([train.episode(i).to(device) for i in share],
                                        [val.episode(i).to(device) for i in share]))
        if ranks.parallel:
            ranks.average_buffers(supernet)  # BatchNorm running statistics
        done = step + 1
        guard.loss(done, window[-1]["loss"])
        if done % sc.log_every == 0 or done == sc.steps:  # a follower's run folder writes nothing
            record = {"phase": "search", "step": done,
                      **{k: sum(m[k] for m in window) / len(window) for k in window[-1]}}
            if differentiable:
                derived = strategy.result()
                record |= {"alpha_entropy": sum(alpha_entropy(a) for a in supernet.arch_parameters())
                           / len(supernet.arch_parameters()), "skip_share": skip_share(derived),
                           "genotype": derived.to_dict()}
                run.log({"phase": "alpha", "step": done,
                         "alphas": [a.detach().cpu().tolist() for a in supernet.arch_parameters()]}, ALPHA_FILE)
            run.log(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}")
            window = []
        if done % sc.checkpoint_every == 0 or done == sc.steps:
            state = {"step": done, "supernet": supernet.state_dict(), "sampler": strategy.state_dict(),
                     "rng": torch.get_rng_state()}
            guard.state(done, state, "search checkpoint")
            run.save_checkpoint("search", state)
    train_seconds = time.perf_counter() - t0
    if not ranks.leader:
        return {}

    input_size = ds.image_shape
    ev = sc.evolution
    def one_shot(genotype) -> Candidate:  # scored as evolution scores its candidates
        batches, episodes = scoring_data(train, val, ev.eval_episodes, ev.bn_batches, device)
        return Candidate(genotype, score_path(supernet, genotype, batches, episodes), genotype.params(input_size),
                         predictor.predict(genotype) if predictor else None)

    check = None  # the measured latency check, for an evolving search that asks for one
    if not evolves:
        candidates = [one_shot(strategy.result())]
    else:
        candidates = evolve(supernet, train, val, population=ev.population, generations=ev.generations,
                            top_k=ev.top_k, mutation_prob=ev.mutation_prob, crossover_share=ev.crossover_share,
                            eval_episodes=ev.eval_episodes, bn_batches=ev.bn_batches, max_params=sc.max_params,
                            input_size=input_size, seed=cfg.seed, max_tries=ev.max_tries, progress=progress,
                            latency=predictor.predict if predictor else None, bounds=setup.latency_limits(),
                            on_generation=lambda g, top: run.log({"phase": "evolution", "generation": g + 1,
                                                                  "best": top[0].score,
                                                                  "top_mean": sum(c.score for c in top) / len(top)}))
        check = confirmer(cfg, setup, run, input_size, device)
        if ev.rerank.top:
            reference = one_shot(load_genotype(sc.latency.target_of)) if ev.rerank.with_reference else None
            candidates = rerank(cfg, run, ds, device, candidates, reference, progress, check)
        elif check is not None:
            first, rest = pick_shortlist(candidates, 1, [], check)
            candidates = first + rest
        if check is not None:
            candidates = confirmed(candidates, check, lambda: one_shot(load_genotype(lc.target_of)))
    genotype = candidates[0].genotype
    op_names = getattr(supernet, "op_names", None) or supernet.choices
    shown = max(ev.top_k, ev.rerank.top + ev.rerank.with_reference) if evolves else ev.top_k
    summary = write_results(run, genotype, candidates[:shown], sc, input_size, train_seconds, op_names)
    if sc.supernet is not None:
        summary["supernet_from"] = str(Path(sc.supernet).resolve())
    if predictor is not None:
        summary["latency"] = latency_report(lc.table, setup.target_ms, predictor, genotype, input_size, device)
        log.info("latency: predicted %.3f ms, measured %.3f ms, target %s ms", summary["latency"]["predicted_ms"],
                 summary["latency"]["measured_ms"], setup.target_ms)
    if check is not None:
        summary["latency_confirm"] = check.summary()
    extra = [b for b in setup.bounds if b.predictor is not predictor]
    if extra:
        summary["latency_also"] = [latency_report(b.table, b.limit_ms, b.predictor, genotype, input_size, device)
                                   for b in extra]
    return summary


def trained_supernet(source: str, device: torch.device) -> dict:
    """The final search checkpoint of a finished SPOS run (checked complete with the config)."""
    return RunDir.open(source).load_checkpoint("search", map_location=device, fix=SUPERNET_FIX)


def write_results(run: RunDir, genotype, candidates: list[Candidate], sc, input_size, seconds: float,
                  op_names) -> dict:
    with run.writing():
        atomic_write_bytes(run.path / GENOTYPE_FILE, genotype.to_yaml().encode())
    table = [{"rank": i + 1, "score": c.score, "params": c.params, "macs": c.genotype.macs(input_size),
              **({"predicted_latency_ms": c.latency_ms} if c.latency_ms is not None else {}),
              **({"proxy_accuracy": c.proxy} if c.proxy is not None else {}),
              **({"measured_ratio_to_reference": c.measured} if c.measured is not None else {}),
              "genotype": c.genotype.to_dict()} for i, c in enumerate(candidates)]
    with run.writing():
        write_json(run.path / "candidates.json", table)
    genotype.plot(run.path / "cells" / "genotype.png")
    history = run.read_metrics(ALPHA_FILE)
    if history:
        plot_alpha_history(history, run.path / "alpha_history.png", op_names)
    return {"sampler": sc.sampler, "space": sc.space, "steps": sc.steps, "search_seconds": round(seconds, 1),
            "genotype": genotype.to_dict(), "score": candidates[0].score, "params": candidates[0].params,
            **({"proxy_accuracy": candidates[0].proxy} if candidates[0].proxy is not None else {}),
            "macs": genotype.macs(input_size), "skip_share": skip_share(genotype)}


def plot_alpha_history(history: list[dict], path, op_names) -> None:
    """Softmax weight of every op, averaged over edges, against the search step (one panel per alpha)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [h["step"] for h in history]
    n = len(history[0]["alphas"])
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4), squeeze=False)
    for k, ax in enumerate(axes[0]):
        w = torch.stack([torch.softmax(torch.tensor(h["alphas"][k]), -1).mean(0) for h in history])
        for o in range(w.shape[1]):
            ax.plot(steps, w[:, o].tolist(), label=op_names[o])
        ax.set_xlabel("search step")
        ax.set_ylabel("mean op weight")
        ax.set_title(["normal cell", "reduction cell"][k] if n == 2 else "layers")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
