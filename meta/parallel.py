"""Data parallelism over ranks (processes of one ``torch.distributed`` group, e.g. Ray Train's workers).

Each rank computes its share of a step's episodes and the ranks average their gradients before the optimiser
steps, so N ranks with B episodes each take exactly the step one process takes with N·B: the outer loss is the
mean over the meta-batch, and the mean of the ranks' means is that mean.  Gradients are averaged as computed,
never through DistributedDataParallel, whose hooks do not see the double-backward of second-order MAML
(pytorch#47562): each rank's meta-gradient is complete before it is averaged (as learn2learn's distributed
MAML does).  A parameter no rank used keeps no gradient, so Adam skips it as it would in one process.

BatchNorm: in training mode every episode is normalised by its own statistics, identically on any number of
ranks; the running statistics (what evaluation uses) are averaged over the ranks after every step, which is
not the same exponential average one process would keep over the same episodes in sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    device: str = "cpu"  # where scalars are reduced: the backend's device (cuda for nccl)

    @classmethod
    def of_process_group(cls, device: torch.device | str = "cpu") -> "Ranks":
        """This process's place in the initialised default process group (one rank without one)."""
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), str(device))
        return cls()

    @property
    def parallel(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        """The rank that writes (run folder, checkpoints, evaluation)."""
        return self.rank == 0

    def episode_indices(self, step: int, per_rank: int) -> range:
        """The indices of step ``step``'s episodes this rank computes: the global meta-batch of ``world *
        per_rank`` episodes is cut into consecutive shares, so any number of ranks sees the same episodes."""
        start = step * per_rank * self.world + self.rank * per_rank
        return range(start, start + per_rank)

    def average_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """Every parameter's gradient replaced by its mean over the ranks (a rank without one counts zeros);
        one without a gradient on every rank keeps none."""
        if not self.parallel:
            return
        params = [p for p in params if p.requires_grad]
        for p, g in zip(params, self.average_tensors([p.grad for p in params], params)):
            p.grad = g

    def average_tensors(self, tensors: Sequence[torch.Tensor | None],
                        like: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """Each tensor's mean over the ranks, in one all-reduce; ``None`` (shaped as its ``like``) counts zeros,
        and stays ``None`` where it is ``None`` on every rank."""
        if not self.parallel or not like:
            return list(tensors)
        import torch.distributed as dist
        device = like[0].device
        used = torch.tensor([t is not None for t in tensors], dtype=torch.float32, device=device)
        flat = torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1).float()
                          for t, p in zip(tensors, like)])
        dist.all_reduce(used)
        dist.all_reduce(flat)
        flat /= self.world
        out, offset = [], 0
        for p, any_rank in zip(like, used.tolist()):
            n = p.numel()
            out.append(flat[offset:offset + n].view_as(p).to(p.dtype).clone() if any_rank else None)
            offset += n
        return out

    def average(self, values: Sequence[float]) -> list[float]:
        """The mean over the ranks of each value (the same figures logged on every rank)."""
        if not self.parallel:
            return list(values)
        import torch.distributed as dist
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return (t / self.world).cpu().tolist()

    def average_buffers(self, module: nn.Module) -> None:
        """Floating-point buffers (BatchNorm running statistics) averaged over the ranks, in place."""
        if not self.parallel:
            return
        import torch.distributed as dist
        for b in module.buffers():
            if torch.is_floating_point(b):
                dist.all_reduce(b)
                b /= self.world
