"""Scaling and shifting (SS) of every convolution of a frozen backbone, as meta-transfer learning (Sun et
al., CVPR 2019) defines it: the kernel of output channel c is multiplied by scale[c] (init 1) and shift[c]
(init 0) is added to its bias.  Applied by forward hooks, so any backbone works, searched cells included,
and nothing in the model is rewritten: conv(x, W * s) + b + t = s * (conv(x, W) + b - b) + b + t."""

from __future__ import annotations

import torch
from torch import nn


def _key(name: str) -> str:
    return name.replace(".", "__") or "root"


class ScaleShift(nn.Module):
    """Per-output-channel scale and shift for every ``nn.Conv2d`` in ``backbone``; ``attach`` installs the
    hooks, ``detach`` removes them.  The parameters live here, so they are in this module's state_dict."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.convs = {name: m for name, m in backbone.named_modules() if isinstance(m, nn.Conv2d)}
        if not self.convs:
            raise ValueError("the backbone has no Conv2d for scaling and shifting")
        self.scale = nn.ParameterDict({_key(n): nn.Parameter(torch.ones(m.out_channels, device=m.weight.device))
                                       for n, m in self.convs.items()})
        self.shift = nn.ParameterDict({_key(n): nn.Parameter(torch.zeros(m.out_channels, device=m.weight.device))
                                       for n, m in self.convs.items()})
        self._hooks: list = []

    def _hook(self, name: str):
        def apply(conv: nn.Conv2d, inputs, out: torch.Tensor) -> torch.Tensor:
            s, t = self.scale[_key(name)].view(1, -1, 1, 1), self.shift[_key(name)].view(1, -1, 1, 1)
            if conv.bias is None:
                return out * s + t
            b = conv.bias.view(1, -1, 1, 1)
            return (out - b) * s + b + t
        return apply

    def attach(self) -> "ScaleShift":
        if not self._hooks:
            self._hooks = [m.register_forward_hook(self._hook(n)) for n, m in self.convs.items()]
        return self

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


class FoldError(ValueError):
    """A shift that cannot be folded exactly into the plain backbone."""


@torch.no_grad()
def fold_scale_shift(backbone: nn.Module, ss: "ScaleShift", example: torch.Tensor) -> None:
    """Write ``ss`` into ``backbone``'s own weights, so the plain backbone computes what the hooked one does.

    Scales multiply the kernels.  A shift goes into the conv's bias when it has one; otherwise it is carried
    forward as a per-channel constant, through 1x1 convolutions (exactly: W @ shift) and channel
    concatenations, into the next BatchNorm's running mean (exact in eval mode; in train mode a constant is
    removed by the batch mean anyway).  Anything else a shift would have to pass raises ``FoldError``; the
    hooks must be detached (``ss.detach()``) and the backbone is left unchanged then."""
    import copy

    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp
    if ss._hooks:
        raise FoldError("detach the scale/shift hooks before folding (ss.detach())")
    gm = symbolic_trace(backbone)
    ShapeProp(gm).propagate(example)
    modules = dict(gm.named_modules())
    originals = {n: m.weight.detach().clone() for n, m in ss.convs.items()}
    new_state = copy.deepcopy(backbone.state_dict())
    shifts: dict = {}  # node -> per-channel constant its tensor carries (None: none)

    def channels(node) -> int:
        return int(node.meta["tensor_meta"].shape[1])

    for node in gm.graph.nodes:
        inputs = [a for a in node.all_input_nodes]
        incoming = [(a, shifts.get(a)) for a in inputs]
        carried = [(a, s) for a, s in incoming if s is not None]
        out = None
        if node.op == "call_module" and node.target in ss.convs:
            conv, key = ss.convs[node.target], _key(node.target)
            scale, shift = ss.scale[key].detach(), ss.shift[key].detach()
            w = originals[node.target]
            const = shift.clone()
            if carried:
                if w.shape[2:] != (1, 1) or conv.padding not in ((0, 0), 0, "valid") or conv.groups != 1:
                    raise FoldError(f"a shift reaches {node.target}, a {tuple(w.shape[2:])} convolution with padding "
                                    f"{conv.padding} and groups {conv.groups}: only 1x1 convolutions pass it exactly")
                const += scale * (w[:, :, 0, 0] @ carried[0][1])
            new_state[f"{node.target}.weight"] = w * scale.view(-1, 1, 1, 1)
            if conv.bias is not None:
                new_state[f"{node.target}.bias"] = conv.bias.detach() + const
            else:
                out = const
        elif node.op == "call_module" and isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            if carried:
                bn = modules[node.target]
                if bn.running_mean is None:
                    raise FoldError(f"{node.target} keeps no running mean to take the shift")
                new_state[f"{node.target}.running_mean"] = bn.running_mean - carried[0][1]
        elif node.op == "call_function" and node.target is torch.cat and carried:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if dim not in (1, -3):
                raise FoldError(f"a shift reaches a concatenation along dim {dim}")
            parts = node.args[0]
            out = torch.cat([shifts.get(p) if shifts.get(p) is not None else
                             torch.zeros(channels(p), dtype=example.dtype) for p in parts])
        elif carried:
            raise FoldError(f"a convolution's shift reaches '{node.name}' ({node.op} {node.target}), which does not "
                            f"pass it exactly, so the plain backbone cannot hold this scale/shift")
        shifts[node] = out
    backbone.load_state_dict(new_state)
