"""A data-parallel search step (search.meta_batch on several ranks): two ranks with B episodes each take the step
one process takes with 2B, for SPOS (its paths drawn per episode as one process draws them; the supernet's
weights) and DARTS (first and second order: the architecture weights and the derived genotype); run as two gloo
processes on this machine, as tests/meta/test_parallel.py does for the learners."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from meta.data import load_dataset
from meta.episodes import EpisodeSampler
from meta.parallel import Ranks
from nas.search.strategies import STRATEGIES
from search_spaces import DartsSupernet, create_supernet

from .test_elastic_search import OPTIONS

STEPS = {"spos": 20, "darts": 20, "darts2": 6, "gdas": 4}
PER_RANK = 1


def supernet(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "spos":
        return create_supernet("elastic", 1, **OPTIONS)
    return DartsSupernet(in_channels=1, channels=4, cells=3, nodes=2, **({"weighting": "gumbel"} if kind == "gdas"
                                                                          else {}))


def strategy(kind: str, net: nn.Module):
    if kind == "spos":
        return STRATEGIES["spos"](net, steps=STEPS[kind], w_lr=0.05, seed=0)
    if kind == "gdas":
        return STRATEGIES["gdas"](net, steps=STEPS[kind])
    return STRATEGIES["darts"](net, steps=STEPS[kind], arch_lr=0.01, order="second" if kind == "darts2" else "first")


def search(kind: str, ranks: Ranks, per_rank: int) -> dict:
    torch.set_num_threads(1)
    size = 16 if kind == "spos" else 28
    ds = load_dataset("synthetic", train_classes=20, val_classes=10, test_classes=5, images_per_class=10,
                      image_size=size)
    train, val = EpisodeSampler(ds, "train", 5, 1, 3, seed=0), EpisodeSampler(ds, "val", 5, 1, 3, seed=1)
    net = supernet(kind)
    s = strategy(kind, net)
    s.ranks = ranks
    ran, forward = [], net.forward
    net.forward = lambda x, path=None: (ran.append(path), forward(x, path=path))[1]
    losses, paths = [], []
    for step in range(STEPS[kind]):
        torch.manual_seed(1000 * step + ranks.rank)  # GDAS's Gumbel draws: each rank its own, as the search loop
        share = ranks.episode_indices(step, per_rank)
        ran.clear()
        out = s.step([train.episode(i) for i in share], [val.episode(i) for i in share])
        ranks.average_buffers(net)
        losses.append((out["loss"], out.get("val_loss")))
        paths.append(list(ran))
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    stats = {n: b.clone() for n, b in net.named_buffers() if "running_" in n}
    derived = s.result().to_dict() if kind != "spos" else None
    return {"losses": losses, "paths": paths, "weights": weights, "stats": stats, "genotype": derived}


def worker(rank: int, kind: str, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        result = search(kind, Ranks(rank, 2), PER_RANK)
        result["paths"] = [[repr(p) for p in ps] for ps in result["paths"]]
        torch.save(result, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def on_two_ranks(tmp_path, kind: str) -> tuple[dict, dict]:
    out = str(tmp_path / "rank")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(worker, args=(kind, f"file://{tmp_path / 'rendezvous'}", out), nprocs=2, join=True)
    return tuple(torch.load(f"{out}.{r}", weights_only=False) for r in range(2))


def learned(net_weights: dict, kind: str) -> dict:
    """The weights, less the conv biases that BatchNorm cancels: their gradient is rounding noise, which SGD's
    momentum carries into different weights in any two runs that round differently."""
    cancelled = {f"{n}.bias" for n, m in supernet(kind).named_modules() if isinstance(m, nn.Conv2d)}
    return {k: v for k, v in net_weights.items() if k not in cancelled and not k.startswith("alpha")}


def test_spos_on_two_ranks_draws_and_trains_as_one_process_of_twice_the_meta_batch(tmp_path):
    two = on_two_ranks(tmp_path, "spos")
    one = search("spos", Ranks(), 2 * PER_RANK)
    # every rank draws the paths one process draws for its episodes: rank r the r-th of each step's pair
    drawn = [[repr(p) for p in ps] for ps in one["paths"]]
    assert [ps[:1] for ps in drawn] == two[0]["paths"] and [ps[1:] for ps in drawn] == two[1]["paths"]
    assert len({p for ps in drawn for p in ps}) > 10  # the paths vary
    assert [l for l, _ in two[0]["losses"]] == pytest.approx([l for l, _ in one["losses"]], rel=1e-5)
    a, b = learned(one["weights"], "spos"), learned(two[0]["weights"], "spos")
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
        assert torch.equal(two[1]["weights"][k], b[k]), k  # both ranks hold the same supernet
    # BatchNorm running statistics: averaged over the ranks after every step (not one process's running average)
    assert len(two[0]["stats"]) > 20 and all(torch.equal(two[1]["stats"][k], v) for k, v in two[0]["stats"].items())
    start = learned({n: p.detach() for n, p in supernet("spos").named_parameters()}, "spos")
    assert sum(not torch.equal(start[k], a[k]) for k in a) > 20  # the steps moved the weights


@pytest.mark.parametrize("kind", ["darts", "darts2"])
def test_darts_on_two_ranks_learns_the_architecture_of_one_process_of_twice_the_meta_batch(tmp_path, kind):
    two = on_two_ranks(tmp_path, kind)
    one = search(kind, Ranks(), 2 * PER_RANK)
    flat = [[x for pair in run["losses"] for x in pair] for run in (two[0], one)]
    assert flat[0] == pytest.approx(flat[1], rel=1e-5)
    for name in ("alpha_normal", "alpha_reduce"):
        torch.testing.assert_close(two[0]["weights"][name], one["weights"][name], rtol=1e-4, atol=1e-6, msg=name)
        assert torch.equal(two[1]["weights"][name], two[0]["weights"][name])
        assert (one["weights"][name] - supernet(kind).state_dict()[name]).abs().max() > 1e-3  # alpha moved
    assert two[0]["genotype"] == two[1]["genotype"] == one["genotype"]


def test_gdas_on_two_ranks_keeps_one_architecture(tmp_path):
    """GDAS's Gumbel draws are each rank's own (not one process's): the ranks still step the same alphas."""
    two = on_two_ranks(tmp_path, "gdas")
    for name in ("alpha_normal", "alpha_reduce"):
        assert torch.equal(two[0]["weights"][name], two[1]["weights"][name])
    assert two[0]["genotype"] == two[1]["genotype"]
