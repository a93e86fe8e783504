"""The search section: space and strategy by name with their options, what the strategy's traits require,
evolution's sizes, the latency objective, and a trained supernet to evolve in."""

from __future__ import annotations

from pathlib import Path

import yaml

from fsnas_core.options import OptionError
from search_spaces import SPACES, load_genotype

from ..config import SearchConfig
from ..errors import ConfigError, UserError
from ..files import load_torch_file
from ..search.latency import FORMS
from ..search.strategies import FILLED, STRATEGIES
from .episodes import check_episode
from .options import check_factory_options, known, positive


def check_search(sc: SearchConfig) -> None:
    known("search.space", sc.space, SPACES)
    known("search.sampler", sc.sampler, STRATEGIES)
    strategy = STRATEGIES[sc.sampler]
    check_fit(sc.sampler, sc.space)
    check_factory_options("search.space_options", sc.space_options, SPACES[sc.space], ("self", "in_channels"),
                          f"space {sc.space}")
    options = check_factory_options("search.sampler_options", sc.sampler_options, strategy, ("self", *FILLED),
                                    f"sampler {sc.sampler}")
    check_strategy_on_space(sc, options)
    if strategy.needs_weighting and sc.space_options.get("weighting", "softmax") != strategy.needs_weighting:
        raise ConfigError(f"search.space_options.weighting: the {sc.sampler} sampler needs weighting: "
                          f"{strategy.needs_weighting}")
    ev = sc.evolution
    for key, value in (("search.steps", sc.steps), ("search.meta_batch", sc.meta_batch),
                       ("search.log_every", sc.log_every),
                       ("search.checkpoint_every", sc.checkpoint_every), ("search.evolution.population", ev.population),
                       ("search.evolution.top_k", ev.top_k), ("search.evolution.eval_episodes", ev.eval_episodes),
                       ("search.evolution.bn_batches", ev.bn_batches), ("search.evolution.max_tries", ev.max_tries)):
        positive(key, value)
    positive("search.evolution.generations", ev.generations, 0)
    check_episode("search.episode", sc.episode)
    if not 0.0 <= ev.mutation_prob <= 1.0 or not 0.0 <= ev.crossover_share <= 1.0:
        raise ConfigError("search.evolution: mutation_prob and crossover_share must lie in [0, 1]")
    check_latency(sc)
    check_rerank(sc)
    if sc.supernet is not None:
        check_supernet_source(sc)


def check_fit(sampler: str, space: str) -> None:
    """The strategy's ``space_needs`` must be true attributes of the space's supernet class."""
    def lacks(name: str) -> list[str]:
        return [n for n in STRATEGIES[name].space_needs if not getattr(SPACES[space], n, False)]
    missing = lacks(sampler)
    if missing:
        fitting = [n for n in STRATEGIES if not lacks(n)]
        raise ConfigError(f"search.sampler: space {space} cannot be searched by the {sampler} sampler (its supernet "
                          f"lacks {', '.join(missing)}); for this space use {' or '.join(fitting) or 'another space'}",
                          key="search.sampler")


def check_strategy_on_space(sc: SearchConfig, options: dict) -> None:
    """A strategy whose options depend on the space (``check_space(space_class, options)``, e.g. progressive
    shrinking's phases name the space's dimensions) checks them against it; ``options`` with the defaults."""
    check_space = getattr(STRATEGIES[sc.sampler], "check_space", None)
    if not callable(check_space):
        return
    try:
        check_space(SPACES[sc.space], options)
    except OptionError as exc:
        key = f"search.sampler_options.{exc.option}"
        raise ConfigError(f"{key}: {exc.message}", key=key) from None


def check_latency(sc: SearchConfig) -> None:
    lc = sc.latency
    if lc.target_ms is not None and lc.table is None:
        raise ConfigError("search.latency.target_ms needs search.latency.table: build one on this device with "
                          "fsnas latency build --space CONFIG --out TABLE", key="search.latency.table")
    if lc.target_ms is not None and lc.target_ms <= 0:
        raise ConfigError(f"search.latency.target_ms: must be positive, got {lc.target_ms}", key="search.latency.target_ms")
    if lc.form not in FORMS:
        raise ConfigError(f"search.latency.form: '{lc.form}' is not a form; use {' or '.join(FORMS)}",
                          key="search.latency.form")
    if lc.beta < 0 or lc.lam < 0:
        raise ConfigError("search.latency: beta and lam must be >= 0", key="search.latency")
    tables = [("search.latency.table", lc.table)] + [(f"search.latency.also.{i}.table", a.table)
                                                     for i, a in enumerate(lc.also)]
    for key, table in tables:
        if table is not None and not Path(table).is_file():
            raise ConfigError(f"{key}: {table} does not exist; build it on this device with fsnas latency build "
                              f"--space CONFIG --out {table}", key=key)
    for i, extra in enumerate(lc.also):
        if extra.target_ms is not None and extra.target_ms <= 0:
            key = f"search.latency.also.{i}.target_ms"
            raise ConfigError(f"{key}: must be positive, got {extra.target_ms}", key=key)
    if lc.also and not STRATEGIES[sc.sampler].chooses_by_evolution:
        raise ConfigError(f"search.latency.also: only a sampler that chooses by evolution meets several tables; "
                          f"{sc.sampler} takes one (search.latency.table)", key="search.latency.also")
    check_target_of(lc)
    check_confirm(sc)


def check_confirm(sc: SearchConfig) -> None:
    cc, key = sc.latency.confirm, "search.latency.confirm"
    if cc.rounds < 0:
        raise ConfigError(f"{key}.rounds: must be >= 0 (0 trusts the tables), got {cc.rounds}", key=f"{key}.rounds")
    if not cc.rounds:
        return
    positive(f"{key}.max_networks", cc.max_networks)
    if not STRATEGIES[sc.sampler].chooses_by_evolution:
        raise ConfigError(f"{key}: the {sc.sampler} sampler derives one architecture, there are no candidates to "
                          f"time; set {key}.rounds: 0", key=f"{key}.rounds")
    if sc.latency.target_of is None:
        raise ConfigError(f"{key}: candidates are timed against search.latency.target_of's network; give it a "
                          f"genotype file such as configs/genotypes/conv4.yaml", key="search.latency.target_of")


def check_target_of(lc) -> None:
    key = "search.latency.target_of"
    if lc.target_factor <= 0:
        raise ConfigError(f"search.latency.target_factor: must be positive, got {lc.target_factor}",
                          key="search.latency.target_factor")
    if lc.target_of is None:
        return
    if lc.table is None:
        raise ConfigError(f"{key} needs search.latency.table: build one on this device with fsnas latency build "
                          f"--space CONFIG --out TABLE", key="search.latency.table")
    try:
        load_genotype(lc.target_of)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {lc.target_of} ({exc.strerror}); give a genotype file such as "
                          f"configs/genotypes/conv4.yaml", key=key) from None
    except (ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{key}: {lc.target_of} is not a genotype ({str(exc).splitlines()[0][:120]}); give a "
                          f"genotype file such as configs/genotypes/conv4.yaml", key=key) from None


def check_rerank(sc: SearchConfig) -> None:
    rc = sc.evolution.rerank
    if rc.top < 0:
        raise ConfigError(f"search.evolution.rerank.top: must be >= 0, got {rc.top}", key="search.evolution.rerank.top")
    if not rc.top:
        return
    if not STRATEGIES[sc.sampler].chooses_by_evolution:
        raise ConfigError(f"search.evolution.rerank: the {sc.sampler} sampler derives one architecture, there is no "
                          f"shortlist to re-rank; set rerank.top: 0", key="search.evolution.rerank.top")
    for key, value in (("steps", rc.steps), ("eval_episodes", rc.eval_episodes), ("eval_query", rc.eval_query)):
        positive(f"search.evolution.rerank.{key}", value)
    check_episode("search.evolution.rerank.episode", rc.episode)
    if rc.with_reference and sc.latency.target_of is None:
        raise ConfigError("search.evolution.rerank.with_reference: the reference is search.latency.target_of; give "
                          "it a genotype file such as configs/genotypes/conv4.yaml", key="search.evolution.rerank")


SUPERNET_FIX = "Give search.supernet the folder of a finished fsnas search with search.sampler: spos"


def check_supernet_source(sc: SearchConfig) -> None:
    """search.supernet: a finished search of the same space, by a strategy that chooses by evolution, whose
    supernet training is complete."""
    key, src = "search.supernet", Path(sc.supernet)
    if not STRATEGIES[sc.sampler].chooses_by_evolution:
        evolving = " or ".join(n for n, s in STRATEGIES.items() if s.chooses_by_evolution)
        raise ConfigError(f"{key}: only the {evolving} sampler evolves in a trained supernet; {sc.sampler} trains its "
                          f"architecture parameters with the weights", key=key)
    if not (src / "config.yaml").is_file() or not (src / "checkpoints" / "search.pt").is_file():
        raise ConfigError(f"{key}: {src} is not a search run with a trained supernet (config.yaml and "
                          f"checkpoints/search.pt); give the folder of an fsnas search with search.sampler: spos",
                          key=key)
    theirs = (yaml.safe_load((src / "config.yaml").read_text()) or {}).get("search", {})
    mine = {"sampler": sc.sampler, "space": sc.space, "space_options": sc.space_options}
    for field_name, value in mine.items():
        if theirs.get(field_name, {} if field_name == "space_options" else None) != value:
            raise ConfigError(f"{key}: {src} searched with search.{field_name} {theirs.get(field_name)!r}, this "
                              f"config has {value!r}; the supernet must be of the same space", key=key)
    try:
        state = load_torch_file(src / "checkpoints" / "search.pt", "fsnas search checkpoint", SUPERNET_FIX,
                                mmap=True, keys=("step", "supernet"))
    except UserError as exc:
        raise ConfigError(f"{key}: {exc}", key=key) from None
    trained = int(state["step"])
    if trained < int(theirs.get("steps", 0)):
        raise ConfigError(f"{key}: {src} has trained its supernet for {trained} of {theirs.get('steps')} steps; "
                          f"finish it first with fsnas search --resume {src}", key=key)
