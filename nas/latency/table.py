"""Latency lookup tables: every candidate op of a space at every shape it runs, timed on one device, with the
device's fingerprint (its deployment mode included: entries are timed as the networks will run); and the
predictor built on a table (the plain sum of entries, a calibrated affine map of it, an intercept plus a scale
per op type, or the affine map plus a cost per kernel launch; ``fsnas latency validate`` fits and chooses one).

A table is a JSON file: ``fingerprint``, ``space`` (name, options, image shape), ``measure`` (warm-up,
repeats), ``entries`` and ``fixed`` (key -> median/mean/variance/count in ms), ``predictor``."""

from __future__ import annotations

import datetime
import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from search_spaces import SPACES, create_supernet

from ..errors import UserError
from ..files import write_json
from .fingerprint import DTYPES, device_fingerprint, differences_here, timing_mode
from .measure import cpu_threads, measure_latency

FORMAT = 1


class LatencyTableError(UserError):
    """A table that cannot be used here (bad file, other device, missing entries)."""


@dataclass
class LatencyTable:
    fingerprint: dict
    space: dict  # {"name", "options", "image_shape"}
    measure: dict  # {"warmup", "repeats"}
    entries: dict[str, dict]
    fixed: dict[str, dict]
    predictor: dict = field(default_factory=lambda: {"kind": "sum", "why": "not validated yet"})
    created: str = ""
    format: int = FORMAT

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Atomically: a killed write leaves the old file or none, never half a table."""
        write_json(Path(path), asdict(self), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        if not path.is_file():
            raise LatencyTableError(f"latency table {path} does not exist; build one with fsnas latency build")
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, this fsnas reads format {FORMAT}")
            return cls(**{k: data[k] for k in ("fingerprint", "space", "measure", "entries", "fixed", "predictor",
                                               "created", "format")})
        except (ValueError, KeyError, TypeError) as exc:
            raise LatencyTableError(f"{path} is not an fsnas latency table ({type(exc).__name__}: {exc}); "
                                    f"build one with fsnas latency build") from None

    # -- use -------------------------------------------------------------------------------------
    def supernet(self) -> nn.Module:
        return create_supernet(self.space["name"], self.space["image_shape"][0], **self.space["options"])

    def check_space(self, space: str, what: str, table: str | Path) -> None:
        """Refuse a table of another space than ``space``, the space of ``what`` (a genotype, a config)."""
        if space == self.space["name"]:
            return
        fix = (f"build a table of the {space} space with fsnas latency build --space CONFIG --out TABLE, CONFIG "
               f"a config with search.space: {space}" if space in SPACES else
               f"a {space} network has no latency table: measure it without one")
        raise LatencyTableError(f"{table} is a latency table of the {self.space['name']} space, but {what} is "
                                f"{space}; {fix}")

    def check_device(self, device: torch.device | str, threads: int | None = None, force: bool = False,
                     how_to_force: str = "pass --force", mode: str | None = None,
                     compile_mode: str | None = None) -> None:
        """Refuse a table measured elsewhere (device, software, dtype, batch, threads, deployment ``mode``: None
        for the table's own) unless forced; ``how_to_force``: what the calling command takes to force it."""
        diff = differences_here(self.fingerprint, device, threads, mode, compile_mode)
        if diff and not force:
            raise LatencyTableError("the latency table was measured on another setup (" + "; ".join(diff) +
                                    f"); build a table here with fsnas latency build, or {how_to_force} to use it "
                                    f"anyway")


def build_table(space: str, options: dict, image_shape: tuple[int, int, int], device: torch.device | str = "cpu",
                dtype: str = "float32", batch: int = 1, threads: int | None = None, warmup: int = 10,
                repeats: int = 50, channels_last: bool = False, progress: bool = True, mode: str = "eager",
                compile_mode: str | None = None) -> LatencyTable:
    """Time every distinct slot and fixed part of the space's ``latency_plan`` on ``device``, each module run
    in deployment ``mode`` (``measure.MODES``) as the whole network would be."""
    device = torch.device(device)
    with cpu_threads(threads if device.type == "cpu" else None):
        return _build_table(space, options, image_shape, device, dtype, batch, threads, warmup, repeats,
                            channels_last, progress, mode, compile_mode)


def _build_table(space: str, options: dict, image_shape: tuple[int, int, int], device: torch.device, dtype: str,
                 batch: int, threads: int | None, warmup: int, repeats: int, channels_last: bool,
                 progress: bool, mode: str, compile_mode: str | None) -> LatencyTable:
    fingerprint = device_fingerprint(device, dtype, batch, threads, channels_last, mode, compile_mode)
    mode, compile_mode = timing_mode(fingerprint)
    supernet = create_supernet(space, image_shape[0], **options)
    plan = supernet.latency_plan(tuple(image_shape))
    work = [(k, s.build, s.input_shape(), "entries") for k, s in plan.slots().items()]
    work += [(f.key, f.factory, f.shape, "fixed") for f in plan.fixed]
    out: dict[str, dict[str, dict]] = {"entries": {}, "fixed": {}}
    for key, factory, shape, kind in tqdm(work, desc="latency table", disable=not progress, leave=False):
        module = factory().to(device, DTYPES[dtype])
        stats = measure_latency(module, (batch, *shape), device, warmup, repeats, DTYPES[dtype], channels_last,
                                mode, compile_mode)
        out[kind][key] = stats.to_dict()
    return LatencyTable(fingerprint=fingerprint,
                        space={"name": space, "options": dict(options), "image_shape": list(image_shape)},
                        measure={"warmup": warmup, "repeats": repeats}, entries=out["entries"], fixed=out["fixed"],
                        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


PREDICTORS = ("sum", "calibrated", "per_op", "launch")


def kernel_launches(module: nn.Module) -> int:
    """The kernels an op launches in eager mode, as its leaf modules other than ``nn.Identity`` (a skip
    connection launches none); a proxy: functional calls inside a ``forward`` are not counted."""
    return sum(1 for m in module.modules() if not any(m.children()) and not isinstance(m, nn.Identity))


class LatencyPredictor:
    """Predicted latency (ms) of the genotypes of ``supernet`` from ``table``.

    ``raw``: fixed parts + the entries of the chosen ops.  ``predict`` applies the table's predictor:
    ``sum`` (raw), ``calibrated`` (intercept + scale * raw), ``per_op`` (intercept + the entries of each
    op type times that type's scale: corrects ops whose isolated timing misjudges their cost inside a
    network) or ``launch`` (intercept + scale * raw + launch_ms * the kernel launches of the chosen ops:
    the cost per launch that op-by-op timing misses or double counts, e.g. at batch 1 on a GPU, where
    launches, not arithmetic, bound the time).  ``expected`` is the differentiable version over the
    supernet's op weights (DARTS losses)."""

    def __init__(self, table: LatencyTable, supernet: nn.Module,
                 image_shape: tuple[int, int, int] | None = None) -> None:
        self.table, self.supernet = table, supernet
        plan = supernet.latency_plan(tuple(image_shape or table.space["image_shape"]))
        missing = [s.key for row in plan.positions for s in row if s is not None and s.key not in table.entries]
        missing += [f.key for f in plan.fixed if f.key not in table.fixed]
        if missing:
            sp = table.space
            raise LatencyTableError(f"the latency table lacks {len(missing)} entries of this space (e.g. {missing[0]}; "
                                    f"the table times {sp['name']} {sp['options']} at "
                                    f"{'x'.join(map(str, sp['image_shape']))}); build a table for this space with "
                                    f"fsnas latency build")
        stat = "median_ms"
        self.ops, self._positions = plan.ops, plan.positions
        self.costs = torch.tensor([[table.entries[s.key][stat] if s is not None else 0.0 for s in row]
                                   for row in plan.positions], dtype=torch.float64)
        self.fixed_ms = sum(table.fixed[f.key][stat] for f in plan.fixed)
        # every predictor as intercept + fixed_scale * fixed + sum over chosen ops of entry * op_scale[op]
        p = table.predictor
        if p["kind"] not in PREDICTORS:
            raise LatencyTableError(f"unknown latency predictor '{p['kind']}' in the table; validate it again")
        ones = torch.ones(len(self.ops), dtype=torch.float64)
        self.launch_ms = p["launch_ms"] if p["kind"] == "launch" else 0.0
        if p["kind"] in ("calibrated", "launch"):
            self.intercept, self.fixed_scale, self.op_scale = p["intercept_ms"], p["scale"], p["scale"] * ones
        elif p["kind"] == "per_op":
            self.intercept, self.fixed_scale = p["intercept_ms"], 0.0  # the intercept holds the fixed parts
            self.op_scale = torch.tensor([p["op_scales"].get(op, 1.0) for op in self.ops], dtype=torch.float64)
        else:
            self.intercept, self.fixed_scale, self.op_scale = 0.0, 1.0, ones

    def by_op(self, genotype) -> list[float]:
        """The table entries of the genotype's ops, summed per op type (in ``self.ops`` order)."""
        out = [0.0] * len(self.ops)
        for p, o in self.supernet.genotype_positions(genotype):
            out[o] += float(self.costs[p, o])
        return out

    @functools.cached_property
    def slot_launches(self) -> torch.Tensor:
        """[positions, ops]: the kernel launches of each op at each position (``kernel_launches``; 0 where
        none runs)."""
        counts: dict[str, int] = {}
        for row in self._positions:
            for s in row:
                if s is not None and s.key not in counts:
                    counts[s.key] = kernel_launches(s.build())
        return torch.tensor([[counts[s.key] if s is not None else 0 for s in row] for row in self._positions],
                            dtype=torch.float64)

    def launches(self, genotype) -> int:
        """The kernel launches of the genotype's chosen ops (the fixed parts are the same in every network)."""
        return int(sum(self.slot_launches[p, o] for p, o in self.supernet.genotype_positions(genotype)))

    def raw(self, genotype) -> float:
        return self.fixed_ms + sum(self.by_op(genotype))

    def predict(self, genotype) -> float:
        launch = self.launch_ms * self.launches(genotype) if self.launch_ms else 0.0
        return self.intercept + self.fixed_scale * self.fixed_ms + launch + float(
            (torch.tensor(self.by_op(genotype), dtype=torch.float64) * self.op_scale).sum())

    def expected(self) -> torch.Tensor:
        """Differentiable predicted latency of the supernet's current op weights (a scalar tensor): the
        launches are linear in the op weights too, a constant per slot."""
        w = self.supernet.position_weights()
        scaled = self.costs * self.op_scale
        if self.launch_ms:
            scaled = scaled + self.launch_ms * self.slot_launches
        return self.intercept + self.fixed_scale * self.fixed_ms + (w * scaled.to(w.device, w.dtype)).sum()
