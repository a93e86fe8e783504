"""The model section: a fixed backbone by name and its options, or a genotype file; starting weights."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from search_spaces import MODELS, GenotypeError, load_genotype

from ..config import ModelConfig
from ..errors import ConfigError
from .options import check_factory_options, known


def check_model(mc: ModelConfig) -> None:
    known("model.name", mc.name, MODELS)
    check_factory_options("model.options", mc.options, MODELS[mc.name], ("in_channels",), f"model {mc.name}")
    if mc.genotype is not None:
        check_genotype_file(mc.genotype)
    if mc.weights is not None and not Path(mc.weights).is_file():
        raise ConfigError(f"model.weights: {mc.weights} does not exist; give a model.pt of a finished run or "
                          f"the weights.pt of an export folder", key="model.weights")


def check_genotype_file(path: str) -> None:
    try:
        load_genotype(path)
    except FileNotFoundError:
        raise ConfigError(f"model.genotype: {path} does not exist; give the path of a genotype.yaml",
                          key="model.genotype") from None
    except (GenotypeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model.genotype: {path} is not a valid genotype: {exc}".replace("\n", " "),
                          key="model.genotype") from None
