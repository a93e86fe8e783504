"""What an export starts from: a retrain run (trained weights), a search run (the supernet's inherited
weights, BatchNorm recalibrated on meta-train batches) or a bare architecture (a genotype file or a
registered backbone name: initial weights).  Each becomes one or more ``Exportable``s."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from search_spaces import MODELS, FixedGenotype, Genotype, GenotypeError, build_network, load_genotype

from ..errors import UserError
from ..files import load_torch_file

class ExportError(UserError):
    """An export source or an export folder that cannot be used; the message names the fix."""


@dataclass
class Exportable:
    genotype: Genotype
    network: nn.Module  # the backbone with its final weights, affine BatchNorm (what load_backbone rebuilds)
    input: dict  # shape [C, H, W], mean, std, dataset
    weights_origin: str
    provenance: dict = field(default_factory=dict)
    accuracy: list[dict] = field(default_factory=list)  # test results with CI, if the run was evaluated
    search_score: float | None = None  # one-shot meta-val score of a search candidate
    rank: int = 1


def as_affine_network(genotype: Genotype, in_channels: int, state: dict) -> nn.Module:
    """``build_network(genotype)`` holding ``state``; BatchNorms that had no affine parameters (supernet
    subnets) get weight 1 and bias 0, which computes the same function."""
    net = build_network(genotype, in_channels)
    missing, unexpected = net.load_state_dict(state, strict=False)
    not_affine = [k for k in missing if k.rsplit(".", 1)[-1] in ("weight", "bias")
                  and isinstance(net.get_submodule(k.rsplit(".", 1)[0]), nn.modules.batchnorm._BatchNorm)]
    if unexpected or set(missing) - set(not_affine):
        raise ExportError(f"the weights do not fit the {genotype.kind} backbone of the genotype "
                          f"(missing: {sorted(set(missing) - set(not_affine))[:3]}, unexpected: {unexpected[:3]})")
    with torch.no_grad():
        for k in not_affine:
            net.get_parameter(k).fill_(1.0 if k.endswith("weight") else 0.0)
    return net.eval()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not readable JSON ({type(exc).__name__}); the run folder is damaged") from None


def _genotype(path: Path) -> Genotype:
    try:
        return load_genotype(path)
    except (OSError, GenotypeError, ValueError, TypeError, AttributeError) as exc:
        raise ExportError(f"{path} is not a valid genotype ({str(exc).splitlines()[0][:200]})") from None


def _provenance(run_path: Path, summary: dict, config: dict) -> dict:
    search = config.get("search") or {}
    return {"run": str(run_path.resolve()), "run_id": run_path.resolve().name, "command": summary.get("command"),
            "seed": config.get("seed"), "dataset": (config.get("data") or {}).get("dataset"),
            "sampler": search.get("sampler") if search.get("enabled") else None,
            "space": search.get("space") if search.get("enabled") else None,
            "learner": (config.get("train") or {}).get("learner") if summary.get("command") != "search" else None,
            "config": config}


def _input_spec(summary: dict, cfg) -> dict:
    if "input" in summary:
        return summary["input"]
    from ..pipeline import build_dataset, input_spec
    return input_spec(build_dataset(cfg))  # runs written before summaries carried their input: ask the data


def from_retrain_run(run_path: Path, overrides: list[str]) -> list[Exportable]:
    from ..checks import load_config
    from ..runs import GENOTYPE_FILE, MODEL_FILE
    summary, config = _read_json(run_path / "summary.json"), _load_yaml(run_path / "config.yaml")
    cfg = load_config(run_path / "config.yaml", overrides)
    spec = _input_spec(summary, cfg)
    genotype = _genotype(run_path / GENOTYPE_FILE)
    state = load_torch_file(run_path / MODEL_FILE, "state dict", "Use the model.pt fsnas wrote, or retrain the "
                            "run", error=ExportError)
    net = as_affine_network(genotype, spec["shape"][0], state)
    train = summary.get("train", {})
    origin = (f"trained with {summary.get('learner')} for {train.get('steps')} episodes "
              f"({train.get('weights', 'last step')} weights)")
    folded = _fold_learned_state(run_path, net, spec["shape"], summary.get("learner") or cfg.train.learner)
    if folded:
        origin += f"; {folded}"
    accuracy = list(summary.get("results", []))
    for ev in sorted(run_path.glob("eval-*/summary.json")):  # later fsnas evaluate runs inside the folder
        accuracy += _read_json(ev).get("results", [])
    return [Exportable(genotype, net, spec, origin, _provenance(run_path, summary, config), accuracy)]


def _fold_learned_state(run_path: Path, net: nn.Module, shape: list[int], learner: str) -> str | None:
    """A run keeps its backbone in model.pt and what its learner (the one that trained it) learned besides in
    learner.pt: where the learner can (MTL's scale/shift), write that into the exported weights, so the plain
    backbone computes what was evaluated.  Returns what was folded (None: nothing)."""
    from meta.learners import LEARNERS
    from meta.scale_shift import FoldError
    from ..runs import LEARNER_FILE
    path = run_path / LEARNER_FILE
    if not path.is_file():
        return None
    learned = load_torch_file(path, "learner state", "Use the learner.pt fsnas wrote, or retrain the run",
                              error=ExportError)
    try:
        return LEARNERS[learner].fold_into_backbone(net, learned, shape)
    except FoldError as exc:
        raise ExportError(f"{run_path}: the run's {exc}; evaluate the run itself (fsnas evaluate) instead of an "
                          f"export") from None


def from_search_run(run_path: Path, overrides: list[str], ranks: list[int] | None) -> list[Exportable]:
    """Candidates of a search run (``ranks``: 1-based positions in candidates.json; None: the result)."""
    from ..checks import load_config
    from ..pipeline import input_spec, prepare
    from ..runs import RunDir
    from ..search.evolution import recalibrate_bn
    from ..search.loop import search_samplers
    summary, config = _read_json(run_path / "summary.json"), _load_yaml(run_path / "config.yaml")
    cfg = load_config(run_path / "config.yaml", overrides)
    table = _read_json(run_path / "candidates.json") if (run_path / "candidates.json").is_file() else []
    if not table:
        raise ExportError(f"{run_path} has no candidates.json: the search did not finish. Resume it with "
                          f"fsnas search --resume {run_path}")
    from search_spaces import genotype_from_dict
    picked = [table[r - 1] for r in (ranks or [1])]
    # the data: for BatchNorm recalibration and the input normalisation
    prepared = prepare(cfg, train=False, test=False, search=True)
    ds, device = prepared.ds, prepared.device
    supernet = prepared.search.supernet.cpu()  # the run's supernet, its trained weights loaded below
    state = RunDir(run_path).load_checkpoint("search", fix="Export a search run whose checkpoint fsnas wrote")
    if state is None:
        raise ExportError(f"{run_path} has no checkpoints/search.pt: the supernet weights are gone, so the "
                          f"candidates cannot inherit them. Retrain the genotype instead (fsnas retrain --arch)")
    supernet.load_state_dict(state["supernet"])
    train, _ = search_samplers(cfg, ds)
    n = cfg.search.evolution.bn_batches
    batches = [torch.cat([e.support_x, e.query_x]) for e in (train.episode(10**6 + i) for i in range(n))]
    out = []
    for rank, row in zip(ranks or [1], picked):
        genotype = genotype_from_dict(row["genotype"])
        subnet = supernet.subnet(genotype)
        recalibrate_bn(subnet, batches)
        net = as_affine_network(genotype, ds.image_shape[0], subnet.state_dict())
        spec = input_spec(ds)
        origin = (f"inherited from the {cfg.search.sampler} supernet after {cfg.search.steps} search steps, "
                  f"BatchNorm recalibrated on {n} meta-train episodes (not retrained)")
        out.append(Exportable(genotype, net, spec, origin, _provenance(run_path, summary, config),
                              search_score=row.get("score"), rank=rank))
    return out


def from_architecture(source: str, in_channels: int, image_size: int, seed: int) -> list[Exportable]:
    """A genotype file or a registered backbone name, with its seeded initial weights."""
    path = Path(source)
    genotype = _genotype(path) if path.is_file() else FixedGenotype(source, {}) if source in MODELS else None
    if genotype is None:
        raise ExportError(f"{source} is neither a run folder, a genotype file nor a known backbone "
                          f"({', '.join(sorted(MODELS))}); give what fsnas search/retrain wrote")
    torch.manual_seed(seed)
    net = build_network(genotype, in_channels).eval()
    spec = {"shape": [in_channels, image_size, image_size], "mean": [0.0] * in_channels,
            "std": [1.0] * in_channels, "dataset": None}
    return [Exportable(genotype, net, spec, f"initial (untrained, seed {seed})",
                       {"source": str(source), "seed": seed})]


def candidate_scores(run_path: Path) -> list[dict]:
    path = run_path / "candidates.json"
    return _read_json(path) if path.is_file() else []


def _load_yaml(path: Path) -> dict:
    import yaml
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExportError(f"{path} is not readable YAML ({type(exc).__name__}); the run folder is damaged") from None
