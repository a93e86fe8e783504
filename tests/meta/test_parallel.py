"""Data parallelism (meta.parallel): two ranks with B episodes each take the step one process takes with 2B,
for ProtoNet and second-order MAML; run as two gloo processes on this machine."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from meta.data import load_dataset
from meta.episodes import EpisodeSampler
from meta.learners import LEARNERS
from meta.parallel import Ranks

STEPS, PER_RANK = 6, 2
OPTIONS = {"protonet": {"lr": 0.01}, "maml": {"order": "second", "steps": 2, "inner_lr": 0.1}}


def backbone() -> nn.Module:
    # no conv bias before BatchNorm: its gradient is rounding noise, which Adam would scale up to full steps
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def train(name: str, ranks: Ranks, per_rank: int) -> tuple[list[float], dict]:
    torch.set_num_threads(1)
    ds = load_dataset("synthetic", train_classes=20, val_classes=5, test_classes=5, images_per_class=10,
                      image_size=12)
    sampler = EpisodeSampler(ds, "train", 5, 1, 3, seed=0)
    cls = LEARNERS[name]
    given = {"n_way": 5, "in_shape": (1, 12, 12)}
    learner = cls(backbone(), **{k: given[k] for k in cls.needs}, **OPTIONS[name])
    learner.ranks = ranks
    losses = []
    for step in range(STEPS):
        out = learner.meta_train_step([sampler.episode(i) for i in ranks.episode_indices(step, per_rank)])
        losses.append(out["loss"])
    params = {n: p.detach().clone() for n, p in (learner.meta if name == "maml" else learner.model).named_parameters()}
    return losses, params


def worker(rank: int, name: str, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        result = train(name, Ranks(rank, 2), PER_RANK)
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["protonet", "maml"])
def test_two_ranks_of_b_episodes_step_as_one_process_of_2b(tmp_path, name):
    out = str(tmp_path / "rank0.pt")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(worker, args=(name, f"file://{tmp_path / 'rendezvous'}", out), nprocs=2, join=True)
    two_losses, two_params = torch.load(out, weights_only=True)
    one_losses, one_params = train(name, Ranks(), 2 * PER_RANK)
    assert two_losses == pytest.approx(one_losses, rel=1e-5)
    for n, p in one_params.items():
        torch.testing.assert_close(two_params[n], p, rtol=1e-5, atol=1e-6, msg=n)
    assert one_losses[-1] != one_losses[0]  # the steps moved the weights


def test_a_rank_takes_its_share_of_the_global_meta_batch():
    shares = [list(Ranks(r, 3).episode_indices(2, 2)) for r in range(3)]
    assert shares == [[12, 13], [14, 15], [16, 17]]
    assert list(Ranks().episode_indices(2, 6)) == [12, 13, 14, 15, 16, 17]  # one process: the same episodes
