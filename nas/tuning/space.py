"""``tune.space`` of a config: dotted config keys to value distributions, checked against the config before
any trial starts (every grid and choice value, both ends of a range), then handed to Ray Tune."""

from __future__ import annotations

import copy
import math

from ..checks import check_config
from ..config import RunConfig
from ..errors import ConfigError
from ..typed import from_dict

KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
JOBS = ("retrain", "search", "run")


def set_dotted(data: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        node = data.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"tune.space.{key}: {part} is not a section of the config", key=f"tune.space.{key}")
        data = node
    data[last] = copy.deepcopy(value)


def with_overrides(base: dict, overrides: dict) -> RunConfig:
    """The config ``base`` (a plain dict) with ``overrides`` (dotted key -> value), converted and checked."""
    data = copy.deepcopy(base)
    for key, value in overrides.items():
        set_dotted(data, key, value)
    cfg = from_dict(RunConfig, data)
    check_config(cfg)
    return cfg


def check_space(cfg: RunConfig) -> dict[str, tuple[str, list]]:
    """{key: (kind, values)} of ``cfg.tune.space``; ConfigError naming the entry for anything wrong."""
    tc = cfg.tune
    if tc.job not in JOBS:
        raise ConfigError(f"tune.job: '{tc.job}' is not a job; use one of {', '.join(JOBS)}", key="tune.job")
    if tc.num_samples < 1 or tc.max_concurrent < 0 or tc.max_failures < 0:
        raise ConfigError("tune.num_samples must be >= 1, tune.max_concurrent and tune.max_failures >= 0", key="tune")
    if tc.resources.cpu <= 0 or tc.resources.gpu < 0:
        raise ConfigError(f"tune.resources: cpu must be > 0 and gpu >= 0, got cpu {tc.resources.cpu}, gpu "
                          f"{tc.resources.gpu}", key="tune.resources")
    if not math.isfinite(tc.wait_for_nodes_s) or tc.wait_for_nodes_s < 0:
        raise ConfigError(f"tune.wait_for_nodes_s: seconds >= 0, got {tc.wait_for_nodes_s}",
                          key="tune.wait_for_nodes_s")
    if tc.metric not in ("accuracy", "val_accuracy"):
        raise ConfigError(f"tune.metric: '{tc.metric}'; use accuracy (test) or val_accuracy", key="tune.metric")
    if tc.asha.enabled and (tc.asha.grace_period < 1 or tc.asha.reduction_factor < 2 or
                            tc.asha.max_t < tc.asha.grace_period):
        raise ConfigError("tune.asha: grace_period >= 1, reduction_factor >= 2 and max_t >= grace_period",
                          key="tune.asha")
    base = cfg.to_dict()
    parsed = {}
    for key, spec in tc.space.items():
        where = f"tune.space.{key}"
        if key.startswith("tune.") or key in ("name", "out_dir"):
            raise ConfigError(f"{where}: a trial cannot change {key}", key=where)
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ConfigError(f"{where}: give one of {', '.join(KINDS)} with its values, e.g. {{grid: [1, 2]}} or "
                              f"{{loguniform: [0.0001, 0.01]}}", key=where)
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{kind}: give a non-empty list", key=where)
        if kind in ("uniform", "loguniform", "randint"):
            ok = (len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                  and values[0] < values[1] and (kind != "loguniform" or values[0] > 0)
                  and (kind != "randint" or all(isinstance(v, int) for v in values)))
            if not ok:
                raise ConfigError(f"{where}.{kind}: give [low, high] with low < high"
                                  f"{' > 0' if kind == 'loguniform' else ''}"
                                  f"{' (integers; high excluded)' if kind == 'randint' else ''}", key=where)
        for value in values:  # every value must make a valid config on its own
            try:
                with_overrides(base, {key: value})
            except ConfigError as exc:
                raise ConfigError(f"{where}: the value {value!r} does not fit the config: {exc}", key=where) from None
        parsed[key] = (kind, values)
    return parsed


def tune_space(parsed: dict[str, tuple[str, list]]) -> dict:
    """Ray Tune's param_space entries for ``check_space``'s result."""
    from ray import tune
    make = {"grid": tune.grid_search, "choice": tune.choice, "uniform": lambda v: tune.uniform(*v),
            "loguniform": lambda v: tune.loguniform(*v), "randint": lambda v: tune.randint(*v)}
    return {key: make[kind](values) for key, (kind, values) in parsed.items()}


def trial_count(parsed: dict[str, tuple[str, list]], num_samples: int) -> int:
    return num_samples * math.prod(len(v) for kind, v in parsed.values() if kind == "grid")
