"""Typed run configuration: YAML file + ``key.sub=value`` overrides -> ``RunConfig``.

The schema only: keys and types are checked while converting; names in registries, option names and
value ranges are checked by ``nas.checks`` (``load_config`` = ``read_config`` + ``check_config``), and
what needs the dataset (n_way against the classes of a split, shots against the images of a class) by
``nas.pipeline.prepare`` right after the dataset is loaded, still before any run folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    # leave out image files that cannot be decoded (truncated, corrupt, not images) instead of stopping; they are
    # counted in the run's summary.json (data.skipped_images)
    skip_bad_images: bool = False
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
    # bfloat16 autocast in meta-training's forward (meta.precision; learners that declare mixed_precision);
    # losses, distances, BatchNorm statistics and weights stay float32; evaluation runs in float32
    amp: bool = False


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
class RerankConfig:
    """A short stand-alone training of evolution's best candidates (the train section's learner and options,
    its learning-rate step scaled to ``steps``), scored on fixed validation episodes of ``episode``'s shape."""
    top: int = 0
    steps: int = 1000
    episode: EpisodeConfig = field(default_factory=lambda: EpisodeConfig(20, 1, 5))
    eval_episodes: int = 200
    eval_query: int = 15  # query images per class in the scoring episodes
    # genotype fields (e.g. [head, stages]) whose families the shortlist takes in turn, the best of each first
    spread_over: list[str] = field(default_factory=list)
    # also train search.latency.target_of's genotype (Conv-4): when nothing in the shortlist beats it on the
    # proxy, the search returns it, not a network worse than the one the user would have picked by hand
    with_reference: bool = False


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
    # the one-shot score only shortlists: the best ``rerank.top`` candidates are trained briefly from scratch
    # and the best of them on validation episodes is chosen (0: the one-shot best is chosen)
    rerank: RerankConfig = field(default_factory=RerankConfig)


@dataclass
class ExtraLatencyTable:
    table: str
    target_ms: float | None = None  # None: search.latency.target_of's prediction on this table


@dataclass
class ConfirmConfig:
    """Evolution's candidates timed before the shortlist takes them (nas.search.confirm): each network and
    search.latency.target_of's in turns, as each table was timed, so the machine's drift cancels in their ratio."""
    rounds: int = 0  # alternating rounds per table; 0 trusts the tables' predictions
    max_networks: int = 20  # networks timed at most; the shortlist is made of those that passed by then


@dataclass
class LatencyConfig:
    """Latency on the target device in the search (tables: fsnas latency build)."""
    table: str | None = None  # a latency table measured on the device the search runs on
    target_ms: float | None = None  # DARTS/GDAS: the loss's target; SPOS: predicted latency must not exceed it
    form: str = "multiplicative"  # DARTS: CE * (LAT/target)^beta, or additive: CE + lam * (LAT - target)/target
    beta: float = 0.6
    lam: float = 0.1
    force: bool = False  # use a table whose device fingerprint differs from this machine's
    # a genotype file (e.g. configs/genotypes/conv4.yaml): every target not given is target_factor times its
    # predicted latency on that table ("no slower than the network I would pick by hand")
    target_of: str | None = None
    target_factor: float = 1.0
    # more tables the chosen network must also meet, each {table: T, target_ms: MS}, e.g. batch 1 beside a
    # table of batch 80 (evolution; target_ms may be left to target_of)
    also: list[ExtraLatencyTable] = field(default_factory=list)
    # time each shortlisted network against target_of's before choosing: a predictor's error of a few percent
    # decides between networks near the bound (docs/benchmarks.md: the batch-1 table misjudged two of them)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)


@dataclass
class SearchConfig:
    enabled: bool = False  # fsnas run searches first when true (fsnas search always does)
    space: str = "darts"  # darts | blocks (search_spaces.SPACES)
    space_options: dict = field(default_factory=dict)  # e.g. channels, cells, nodes, ops, partial_channels, weighting
    # the search strategy: darts | gdas | spos (nas.search.strategies.STRATEGIES); the key keeps the name
    # users' configs know
    sampler: str = "darts"
    sampler_options: dict = field(default_factory=dict)  # e.g. order, arch_lr, w_lr, max_skip
    steps: int = 200
    # episodes per step (per worker on several workers): the mean loss over them; a single-path strategy
    # draws one path per episode
    meta_batch: int = 1
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
    amp: bool = False  # bfloat16 autocast in the supernet's training steps (as train.amp)


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
    wait_for_nodes_s: float = 60.0  # joining a cluster: how long to wait for a node that can run a trial (0: none)
    metric: str = "accuracy"  # final figure the results are ranked by: accuracy (test), val_accuracy
    retime_latency: bool = True  # time every trial's network again after the trials, one at a time (nas.tuning.retime)


@dataclass
class DistributedConfig:
    """One job on several workers through Ray Train (nas.distributed): each step's episodes shared among them,
    gradients averaged, so N workers of train.meta_batch (search.meta_batch) B step as one process of N*B."""
    workers: int = 1  # 1: this process alone
    use_gpu: bool = False  # one GPU per worker
    backend: str = "gloo"  # gloo (CPU or GPU) | nccl (GPUs)
    cpus_per_worker: float = 1.0  # also each worker's torch thread count
    address: str | None = None  # a Ray cluster to join (ray start --head ...); null: a local Ray


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
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def to_dict(self) -> dict:
        return to_dict(self)

    def data_root(self) -> Path | None:
        root = self.data.root or os.environ.get(DATA_ROOT_ENV)
        return Path(root).expanduser() if root else None


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; learning rates are written that way, so numbers in
    scientific notation are floats here, as in YAML 1.2 (files and overrides)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$"),
                              list("-+.0123456789"))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only, never objects


def read_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read ``path`` (or the defaults when None), apply overrides and convert to a typed ``RunConfig``;
    ConfigError on a bad file, key or type.  ``nas.checks.load_config`` reads and checks."""
    where = str(path) if path else "command line"
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; give the path of a YAML config "
                              f"(see configs/)")
        try:
            data = load_yaml(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {exc}".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p} must hold a mapping of keys to values")
    try:
        for item in overrides:
            apply_override(data, item)
        return from_dict(RunConfig, data)
    except ConfigError as exc:
        raise exc.in_file(where) from None


def apply_override(data: dict, item: str) -> None:
    """Set ``a.b.c=value`` in nested ``data``; the value is parsed as YAML (``3``, ``0.1``, ``true``, ``[1,2]``)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{item}' has an empty key part")
    try:
        value = load_yaml(raw) if raw.strip() else ""
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


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
