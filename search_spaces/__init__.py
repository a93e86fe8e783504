"""search_spaces: what can be searched (ops, spaces, supernets, genotypes) and fixed backbones.
Depends on torch (and networkx/matplotlib for drawing genotypes) only."""

from . import fixed, mbconv  # noqa: F401  (register conv4, resnet12 and the MBConv ops)
from .blocks import BlockNetwork, BlockSupernet
from .build import SPACES, build_network, create_supernet
from .darts import DartsNetwork, DartsSupernet
from .genotypes import (GENOTYPES, BlockGenotype, CellGenotype, DartsGenotype, FixedGenotype, Genotype,
                        GenotypeError, Stage, genotype_from_dict, genotype_from_json, genotype_from_yaml,
                        load_genotype)
from .ops import OP_SETS, OPS, create_op
from .registry import MODELS, create_model, register_model

__all__ = ["BlockGenotype", "BlockNetwork", "BlockSupernet", "CellGenotype", "DartsGenotype", "DartsNetwork",
           "DartsSupernet", "FixedGenotype", "GENOTYPES", "Genotype", "GenotypeError", "MODELS", "OPS", "OP_SETS",
           "SPACES", "Stage", "build_network", "create_model", "create_op", "create_supernet", "genotype_from_dict",
           "genotype_from_json", "genotype_from_yaml", "load_genotype", "register_model"]
