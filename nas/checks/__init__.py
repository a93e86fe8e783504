"""Every check of a config that needs no data, one small check per section beside the registries it asks,
and ``load_config``: read + check.  (``nas.config`` holds the typed schema and imports none of these, so the
schema never depends on the search, the learners or the datasets.)  Checks that need the data run in
``nas.pipeline.prepare``, still before any run folder is made."""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig, read_config
from ..errors import ConfigError
from .data import check_data
from .distributed import check_distributed
from .eval import check_eval
from .model import check_model
from .pretrain import check_pretrain
from .search import check_search
from .train import check_train


def check_config(cfg: RunConfig) -> None:
    """Names in registries, option names and types, value ranges; ConfigError naming the key."""
    check_data(cfg.data)
    check_model(cfg.model)
    check_train(cfg.train)
    check_eval(cfg.eval, cfg.train)
    check_search(cfg.search)
    check_pretrain(cfg.pretrain, cfg.data.long_tail)
    check_distributed(cfg)
    check_run(cfg)


def check_run(cfg: RunConfig) -> None:
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device: '{cfg.device}' is not a device; use auto, cpu, cuda or cuda:N")
    if not cfg.name or "/" in cfg.name:
        raise ConfigError(f"name: '{cfg.name}' cannot name a run folder; use letters, digits, '-' and '_'")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read ``path`` (or the defaults when None), apply overrides, convert and check; ConfigError on bad input,
    naming the file."""
    cfg = read_config(path, overrides)
    try:
        check_config(cfg)
    except ConfigError as exc:
        raise exc.in_file(str(path) if path else "command line") from None
    return cfg


__all__ = ["check_config", "load_config"]
