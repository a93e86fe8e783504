"""Typed run configuration: YAML file + ``key.sub=value`` overrides -> ``RunConfig``.

Everything that can be checked without data is checked here (keys, types, registry names, option
names, value ranges); checks that need the dataset (n_way against the classes of a split, shots against
the images of a class) run in ``nas.validate`` right after the dataset is loaded, still before any work.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meta.data import DATASETS, loader_options
from meta.learners import LEARNERS
from meta.losses import LOSSES
from search_spaces import MODELS, GenotypeError, load_genotype

from .errors import ConfigError
from .typed import from_dict, to_dict

DATA_ROOT_ENV = "FSNAS_DATA_ROOT"


@dataclass
class EpisodeConfig:
    n_way: int = 5
    k_shot: int = 1  # support images per class (the most, with an imbalanced profile)
    n_query: int = 15
    shot_profile: str = "balanced"  # balanced | linear | step | random (meta.shot_profiles): imbalanced supports
    min_shot: int = 1  # the fewest support images of a class under an imbalanced profile


@dataclass
class LongTailConfig:
    """A long-tailed version of one split (exponential profile); its dropped images form <split>_heldout."""
    imbalance: float | None = None  # n_max / n_min; null: the split as it is
    split: str = "train"
    seed: int = 0
    heldout: int = 0  # images per class set aside first, as the balanced <split>_heldout (base-class accuracy)
    many: int = 100  # base-class accuracy groups: many > many training images, few < few, medium between
    few: int = 20


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    root: str | None = None  # folder holding omniglot-py/, mini-imagenet/, ...; FSNAS_DATA_ROOT when null
    split_dir: str | None = None  # class-split files; the dataset's default under root when null
    image_size: int | None = None  # the dataset's default when null
    download: bool = False
    cache: bool = True  # keep decoded images under FSNAS_CACHE_DIR (~/.cache/fsnas)
    options: dict = field(default_factory=dict)  # dataset-specific, see `fsnas data list`
    long_tail: LongTailConfig = field(default_factory=lambda: LongTailConfig())


@dataclass
class ModelConfig:
    name: str = "conv4"  # a fixed backbone (conv4, resnet12) when no genotype is given
    options: dict = field(default_factory=dict)  # passed to the model factory; in_channels comes from the data
    genotype: str | None = None  # a genotype file (YAML/JSON, e.g. from fsnas search): overrides name/options
    weights: str | None = None  # start from these backbone weights (a run's model.pt, an export's weights.pt)


@dataclass
class TrainConfig:
    learner: str = "protonet"
    options: dict = field(default_factory=dict)  # learner options (lr, lr_step, ...)
    steps: int = 1000  # meta-train steps (outer updates); 0: none (a baseline, or a pretrained backbone as it is)
    meta_batch: int = 1  # episodes per step
    hard_tasks: int = 0  # extra tasks per step built from the step's failure classes (MTL's hard-task meta-batch)
    split: str = "train"
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    log_every: int = 50
    checkpoint_every: int = 200
    val_every: int = 0  # 0: no validation while training
    val_episodes: int = 100
    val_split: str = "val"


@dataclass
class EvalConfig:
    split: str = "test"
    episodes: int = 600
    tasks: list[EpisodeConfig] = field(default_factory=lambda: [EpisodeConfig(5, 1, 15)])
    bn_mode: str = "eval"  # eval: running statistics; transductive: the episode's own batch statistics
    seed: int = 2024  # fixed so that every method is tested on the same episodes
    # inner steps of a MAML-family learner at test time (None: its train.options.test_steps); an evaluation
    # setting, so `fsnas evaluate RUN eval.inner_steps=N` may change it (choose N on eval.split=val)
    inner_steps: int | None = None


@dataclass
class EvolutionConfig:
    population: int = 20
    generations: int = 10
    top_k: int = 5
    mutation_prob: float = 0.2
    crossover_share: float = 0.5  # share of each generation made by crossover, the rest by mutation
    eval_episodes: int = 20  # meta-val episodes scoring each candidate
    bn_batches: int = 4  # meta-train episodes recalibrating each candidate's BatchNorm
    max_tries: int = 1000  # draws before an infeasible constraint is reported


@dataclass
class LatencyConfig:
    """Latency on the target device in the search (tables: fsnas latency build)."""
    table: str | None = None  # a latency table measured on the device the search runs on
    target_ms: float | None = None  # DARTS/GDAS: the loss's target; SPOS: predicted latency must not exceed it
    form: str = "multiplicative"  # DARTS: CE * (LAT/target)^beta, or additive: CE + lam * (LAT - target)/target
    beta: float = 0.6
    lam: float = 0.1
    force: bool = False  # use a table whose device fingerprint differs from this machine's


@dataclass
class SearchConfig:
    enabled: bool = False  # fsnas run searches first when true (fsnas search always does)
    space: str = "darts"  # darts | blocks
    space_options: dict = field(default_factory=dict)  # e.g. channels, cells, nodes, ops, partial_channels, weighting
    sampler: str = "darts"  # darts | gdas | spos
    sampler_options: dict = field(default_factory=dict)  # e.g. order, arch_lr, w_lr, max_skip
    steps: int = 200
    episode: EpisodeConfig = field(default_factory=lambda: EpisodeConfig(5, 1, 5))
    val_split: str = "val"
    log_every: int = 20
    checkpoint_every: int = 50
    max_params: int | None = None  # constraint on candidates (SPOS evolution)
    # SPOS: a finished search run whose trained supernet this search evolves in (no supernet training): one
    # supernet serves many constraints, e.g. a sweep of latency targets
    supernet: str | None = None
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)


@dataclass
class ClassifierRetrainConfig:
    """cRT: after pretraining, a new classifier on the frozen backbone with class-balanced sampling (reported
    as base-class accuracy; the backbone that goes on is unchanged)."""
    steps: int = 0  # 0: no cRT
    lr: float = 0.1
    sampling: str = "class"


@dataclass
class PretrainConfig:
    """Many-way pretraining of the backbone before meta-training (MTL phase 1; 0 steps: none)."""
    steps: int = 0
    batch_size: int = 128
    split: str = "train"
    sampling: str = "instance"  # instance | class | sqrt | progressive (meta.pretrain.ImageBatches)
    tau_norm: float | None = None  # also report base-class accuracy with the τ-normalised classifier
    crt: ClassifierRetrainConfig = field(default_factory=ClassifierRetrainConfig)
    options: dict = field(default_factory=dict)  # meta.pretrain.Pretrainer: lr, momentum, weight_decay, loss, ...
    log_every: int = 100
    checkpoint_every: int = 500


@dataclass
class TrialResources:
    cpu: float = 1.0  # CPUs per trial (torch uses this many threads, at least 1)
    gpu: float = 0.0  # GPUs per trial; a fraction such as 0.25 lets small trials share one GPU


@dataclass
class AshaConfig:
    """ASHA early stopping on the meta-validation accuracy a trial reports (train.val_every, or a DARTS/GDAS
    search's validation); time is counted in reports."""
    enabled: bool = False
    grace_period: int = 1  # reports before a trial can be stopped
    reduction_factor: int = 2
    max_t: int = 100  # rungs up to this many reports (a trial that passes them all runs to its end)


@dataclass
class TuneConfig:
    """fsnas tune: many runs of this config through Ray Tune (nas.tuning)."""
    job: str = "retrain"  # what each trial runs: retrain | search | run
    space: dict = field(default_factory=dict)  # key.sub: {grid: [..]} | {choice: [..]} | {uniform|loguniform|randint: [lo, hi]}
    num_samples: int = 1  # samples of the random entries (each grid point is run num_samples times)
    resources: TrialResources = field(default_factory=TrialResources)
    max_concurrent: int = 0  # 0: as many as the resources allow
    asha: AshaConfig = field(default_factory=AshaConfig)
    max_failures: int = 0  # retries of a failed trial (from its last checkpoint)
    address: str | None = None  # a Ray cluster (ray start --head ...) to join; null: a local Ray
    metric: str = "accuracy"  # final figure the results are ranked by: accuracy (test), val_accuracy
    retime_latency: bool = True  # time every trial's network again after the trials, one at a time (nas.tuning.retime)


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    channels_last: bool = True  # NHWC convolutions: ~25% faster Conv-4 training on this CPU
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def to_dict(self) -> dict:
        return to_dict(self)

    def data_root(self) -> Path | None:
        root = self.data.root or os.environ.get(DATA_ROOT_ENV)
        return Path(root).expanduser() if root else None


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read ``path`` (or the defaults when None), apply overrides, convert and check; ConfigError on bad input."""
    where = str(path) if path else "command line"
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; give the path of a YAML config "
                              f"(see configs/)")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {exc}".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a mapping of keys to values")
    try:
        for item in overrides:
            apply_override(data, item)
        cfg = from_dict(RunConfig, data)
        check_config(cfg)
    except ConfigError as exc:
        raise exc.in_file(where) from None
    return cfg


def apply_override(data: dict, item: str) -> None:
    """Set ``a.b.c=value`` in nested ``data``; the value is parsed as YAML (``3``, ``0.1``, ``true``, ``[1,2]``)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{item}' has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = _child(node, part, item)
        if nxt is None:
            nxt = {}
            _set(node, part, nxt, item)
        node = nxt
    _set(node, parts[-1], value, item)


def _child(node: Any, part: str, item: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, item)]
    if not isinstance(node, dict):
        raise ConfigError(f"override '{item}': '{part}' is inside a value that is not a mapping")
    return node.get(part)


def _set(node: Any, part: str, value: Any, item: str) -> None:
    if isinstance(node, list):
        node[_index(node, part, item)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"override '{item}': '{part}' is inside a value that is not a mapping")


def _index(node: list, part: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"override '{item}': '{part}' is not an index of a list of {len(node)} items")
    return int(part)


def _positive(key: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}", key=key)


def _check_options(key: str, options: dict, params: dict[str, inspect.Parameter], owner: str) -> None:
    """Options must be parameters of the factory, with the type of their default."""
    for name, value in options.items():
        if name not in params:
            raise ConfigError(f"{key}.{name}: unknown option of {owner}; its options are "
                              f"{', '.join(params) or 'none'}", key=f"{key}.{name}")
        default = params[name].default
        if default is inspect.Parameter.empty or default is None:
            continue
        ok = (isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
              or isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
              or isinstance(default, (list, tuple)) and isinstance(value, list))
        if not ok:
            raise ConfigError(f"{key}.{name}: expected {type(default).__name__} like the default {default!r}, "
                              f"got {value!r}", key=f"{key}.{name}")


def factory_params(factory: Any, skip: tuple[str, ...]) -> dict[str, inspect.Parameter]:
    """Keyword parameters of a factory; for a class whose __init__ passes **options on to its base class,
    the base class's parameters too."""
    out: dict[str, inspect.Parameter] = {}
    for owner in (inspect.getmro(factory) if inspect.isclass(factory) else (factory,)):
        if owner is object:
            break
        params = inspect.signature(owner.__init__ if inspect.isclass(owner) else owner).parameters
        out.update({k: p for k, p in params.items()
                    if k not in skip and k not in out and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)})
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out


LEARNER_GIVEN = ("n_way", "in_shape")  # learner parameters the pipeline fills from train.episode and the data


def check_config(cfg: RunConfig) -> None:
    """Checks that need no data: names in registries, option names and types, value ranges."""
    for key, name, registry in (("data.dataset", cfg.data.dataset, DATASETS), ("model.name", cfg.model.name, MODELS),
                                ("train.learner", cfg.train.learner, LEARNERS)):
        if name not in registry:
            raise ConfigError(f"{key}: unknown name '{name}'; choose one of {', '.join(sorted(registry))}", key=key)
    _check_options("data.options", cfg.data.options, loader_options(cfg.data.dataset), f"dataset {cfg.data.dataset}")
    _check_options("model.options", cfg.model.options, factory_params(MODELS[cfg.model.name], ("in_channels",)),
                   f"model {cfg.model.name}")
    learner_params = factory_params(LEARNERS[cfg.train.learner], ("self", "model"))
    _check_options("train.options", cfg.train.options,
                   {k: v for k, v in learner_params.items() if k not in LEARNER_GIVEN}, f"learner {cfg.train.learner}")
    if "n_way" in learner_params:  # a learner with an n_way classifier head (MAML) tests the ways it learned
        for i, task in enumerate(cfg.eval.tasks):
            if task.n_way != cfg.train.episode.n_way:
                raise ConfigError(f"eval.tasks.{i}.n_way: learner {cfg.train.learner} meta-trains a "
                                  f"{cfg.train.episode.n_way}-way head and cannot test {task.n_way}-way tasks; "
                                  f"set train.episode.n_way={task.n_way} or test {cfg.train.episode.n_way}-way",
                                  key=f"eval.tasks.{i}.n_way")
    _check_search(cfg.search)
    if cfg.model.genotype is not None:
        _check_genotype_file(cfg.model.genotype)
    if cfg.model.weights is not None and not Path(cfg.model.weights).is_file():
        raise ConfigError(f"model.weights: {cfg.model.weights} does not exist; give a model.pt of a finished run or "
                          f"the weights.pt of an export folder", key="model.weights")
    loss = cfg.train.options.get("loss")
    if loss is not None and loss not in LOSSES:
        raise ConfigError(f"train.options.loss: unknown loss '{loss}'; choose one of {', '.join(LOSSES)}")
    if cfg.train.options.get("loss_options"):
        _check_options("train.options.loss_options", cfg.train.options["loss_options"],
                       factory_params(LOSSES[loss or "cross_entropy"], ("class_counts",)), f"loss {loss}")
    if "loss" in factory_params(LEARNERS[cfg.train.learner], ("self", "model")):
        from meta.losses import EpisodicLoss
        try:  # the episodic loss refuses what episodes cannot give it (ib) and bad values, before any run folder
            EpisodicLoss(loss or "cross_entropy", cfg.train.options.get("loss_options"))
        except ValueError as exc:
            raise ConfigError(f"train.options.loss: {exc}", key="train.options.loss") from None
    if cfg.data.image_size is not None:
        _positive("data.image_size", cfg.data.image_size, 8)
    _positive("train.steps", cfg.train.steps, 0)
    if cfg.train.steps and cfg.train.learner in LEARNERS and not LEARNERS[cfg.train.learner].meta_trains:
        raise ConfigError(f"train.steps: the {cfg.train.learner} learner does not meta-train; set train.steps=0 "
                          f"(its backbone comes from pretrain.steps or model.weights)", key="train.steps")
    for key, value in (("train.meta_batch", cfg.train.meta_batch),
                       ("train.log_every", cfg.train.log_every), ("train.checkpoint_every", cfg.train.checkpoint_every),
                       ("train.val_episodes", cfg.train.val_episodes), ("eval.episodes", cfg.eval.episodes)):
        _positive(key, value)
    _positive("train.val_every", cfg.train.val_every, 0)
    _positive("train.hard_tasks", cfg.train.hard_tasks, 0)
    _positive("pretrain.steps", cfg.pretrain.steps, 0)
    for key, value in (("pretrain.batch_size", cfg.pretrain.batch_size), ("pretrain.log_every", cfg.pretrain.log_every),
                       ("pretrain.checkpoint_every", cfg.pretrain.checkpoint_every)):
        _positive(key, value)
    from meta.pretrain import Pretrainer
    _check_options("pretrain.options", cfg.pretrain.options,
                   factory_params(Pretrainer, ("self", "backbone", "num_classes", "feature_dim", "steps",
                                               "class_counts")), "pretraining")
    loss = cfg.pretrain.options.get("loss")
    if loss is not None and loss not in LOSSES:
        raise ConfigError(f"pretrain.options.loss: unknown loss '{loss}'; choose one of {', '.join(LOSSES)}",
                          key="pretrain.options.loss")
    from meta.pretrain import SAMPLINGS
    if cfg.pretrain.sampling not in SAMPLINGS:
        raise ConfigError(f"pretrain.sampling: '{cfg.pretrain.sampling}' is not a sampling; choose one of "
                          f"{', '.join(SAMPLINGS)}", key="pretrain.sampling")
    if cfg.pretrain.crt.sampling not in SAMPLINGS or cfg.pretrain.crt.sampling == "progressive":
        raise ConfigError(f"pretrain.crt.sampling: '{cfg.pretrain.crt.sampling}' is not a fixed sampling; choose "
                          f"instance, class or sqrt", key="pretrain.crt.sampling")
    _positive("pretrain.crt.steps", cfg.pretrain.crt.steps, 0)
    lt = cfg.data.long_tail
    for key, wanted in (("pretrain.tau_norm", cfg.pretrain.tau_norm is not None), ("pretrain.crt.steps",
                                                                                 cfg.pretrain.crt.steps > 0)):
        if wanted and not (cfg.pretrain.steps and lt.imbalance is not None and lt.heldout
                           and lt.split == cfg.pretrain.split):
            raise ConfigError(f"{key}: reported on held-out base-class images, which need pretraining on a "
                              f"long-tailed split (pretrain.steps > 0, data.long_tail.imbalance, data.long_tail.heldout "
                              f"> 0, data.long_tail.split = pretrain.split)", key=key)
    if cfg.pretrain.crt.lr <= 0:
        raise ConfigError(f"pretrain.crt.lr: must be > 0, got {cfg.pretrain.crt.lr}", key="pretrain.crt.lr")
    if cfg.pretrain.options.get("loss_options"):
        _check_options("pretrain.options.loss_options", cfg.pretrain.options["loss_options"],
                       factory_params(LOSSES[loss or "cross_entropy"], ("class_counts",)), f"loss {loss}")
    if not cfg.eval.tasks:
        raise ConfigError("eval.tasks: empty; give at least one task such as {n_way: 5, k_shot: 1, n_query: 15}")
    for key, ep in [("train.episode", cfg.train.episode)] + [(f"eval.tasks.{i}", t) for i, t in enumerate(cfg.eval.tasks)]:
        _positive(f"{key}.n_way", ep.n_way, 2)
        _positive(f"{key}.k_shot", ep.k_shot)
        _positive(f"{key}.n_query", ep.n_query)
        from meta.shot_profiles import SHOT_PROFILES
        if ep.shot_profile not in SHOT_PROFILES:
            raise ConfigError(f"{key}.shot_profile: unknown profile '{ep.shot_profile}'; choose one of "
                              f"{', '.join(SHOT_PROFILES)}", key=f"{key}.shot_profile")
        if ep.shot_profile != "balanced" and not 1 <= ep.min_shot <= ep.k_shot:
            raise ConfigError(f"{key}.min_shot: {ep.min_shot} must be between 1 and k_shot ({ep.k_shot}) for an "
                              f"imbalanced support", key=f"{key}.min_shot")
    if cfg.eval.inner_steps is not None:
        if cfg.eval.inner_steps < 0:
            raise ConfigError(f"eval.inner_steps: {cfg.eval.inner_steps} must be >= 0 (or null: the learner's own)",
                              key="eval.inner_steps")
        if "test_steps" not in factory_params(LEARNERS[cfg.train.learner], ("self", "model")):
            raise ConfigError(f"eval.inner_steps: the {cfg.train.learner} learner has no inner loop at test time; "
                              f"leave eval.inner_steps null", key="eval.inner_steps")
    if cfg.eval.bn_mode not in ("eval", "transductive"):
        raise ConfigError(f"eval.bn_mode: '{cfg.eval.bn_mode}' is not a BatchNorm mode; use eval or transductive")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device: '{cfg.device}' is not a device; use auto, cpu, cuda or cuda:N")
    if not cfg.name or "/" in cfg.name:
        raise ConfigError(f"name: '{cfg.name}' cannot name a run folder; use letters, digits, '-' and '_'")


def _check_search(sc: SearchConfig) -> None:
    from search_spaces import SPACES
    from .search.samplers import SAMPLERS
    for key, name, registry in (("search.space", sc.space, SPACES), ("search.sampler", sc.sampler, SAMPLERS)):
        if name not in registry:
            raise ConfigError(f"{key}: unknown name '{name}'; choose one of {', '.join(sorted(registry))}", key=key)
    _check_options("search.space_options", sc.space_options, factory_params(SPACES[sc.space], ("self", "in_channels")),
                   f"space {sc.space}")
    _check_options("search.sampler_options", sc.sampler_options,
                   factory_params(SAMPLERS[sc.sampler], ("self", "supernet", "steps", "seed")), f"sampler {sc.sampler}")
    if sc.sampler == "gdas" and sc.space_options.get("weighting", "softmax") != "gumbel":
        raise ConfigError("search.space_options.weighting: the gdas sampler needs weighting: gumbel")
    ev = sc.evolution
    for key, value in (("search.steps", sc.steps), ("search.log_every", sc.log_every),
                       ("search.checkpoint_every", sc.checkpoint_every), ("search.evolution.population", ev.population),
                       ("search.evolution.top_k", ev.top_k), ("search.evolution.eval_episodes", ev.eval_episodes),
                       ("search.evolution.bn_batches", ev.bn_batches), ("search.evolution.max_tries", ev.max_tries)):
        _positive(key, value)
    _positive("search.evolution.generations", ev.generations, 0)
    _positive("search.episode.n_way", sc.episode.n_way, 2)
    if not 0.0 <= ev.mutation_prob <= 1.0 or not 0.0 <= ev.crossover_share <= 1.0:
        raise ConfigError("search.evolution: mutation_prob and crossover_share must lie in [0, 1]")
    lc = sc.latency
    if lc.target_ms is not None and lc.table is None:
        raise ConfigError("search.latency.target_ms needs search.latency.table: build one on this device with "
                          "fsnas latency build --space CONFIG --out TABLE", key="search.latency.table")
    if lc.target_ms is not None and lc.target_ms <= 0:
        raise ConfigError(f"search.latency.target_ms: must be positive, got {lc.target_ms}", key="search.latency.target_ms")
    from .search.latency import FORMS
    if lc.form not in FORMS:
        raise ConfigError(f"search.latency.form: '{lc.form}' is not a form; use {' or '.join(FORMS)}",
                          key="search.latency.form")
    if lc.beta < 0 or lc.lam < 0:
        raise ConfigError("search.latency: beta and lam must be >= 0", key="search.latency")
    if lc.table is not None and not Path(lc.table).is_file():
        raise ConfigError(f"search.latency.table: {lc.table} does not exist; build it on this device with fsnas "
                          f"latency build --space CONFIG --out {lc.table}", key="search.latency.table")
    if sc.supernet is not None:
        _check_supernet_source(sc)


def _check_supernet_source(sc: SearchConfig) -> None:
    """search.supernet: a finished SPOS search of the same space whose supernet training is complete."""
    key, src = "search.supernet", Path(sc.supernet)
    if sc.sampler != "spos":
        raise ConfigError(f"{key}: only the spos sampler evolves in a trained supernet; {sc.sampler} trains its "
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
    import torch
    trained = int(torch.load(src / "checkpoints" / "search.pt", map_location="cpu", weights_only=True)["step"])
    if trained < int(theirs.get("steps", 0)):
        raise ConfigError(f"{key}: {src} has trained its supernet for {trained} of {theirs.get('steps')} steps; "
                          f"finish it first with fsnas search --resume {src}", key=key)


def _check_genotype_file(path: str) -> None:
    try:
        load_genotype(path)
    except FileNotFoundError:
        raise ConfigError(f"model.genotype: {path} does not exist; give the path of a genotype.yaml",
                          key="model.genotype") from None
    except (GenotypeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model.genotype: {path} is not a valid genotype: {exc}".replace("\n", " "),
                          key="model.genotype") from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
