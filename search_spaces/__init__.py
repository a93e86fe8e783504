"""search_spaces: what can be searched (ops, spaces, supernets, genotypes) and fixed backbones.
Depends on torch (and networkx/matplotlib for drawing genotypes) only.

Every registry lives in ``registry``; importing the package imports the modules that fill them."""

from . import fixed, mbconv  # noqa: F401  (register conv4, resnet12 and the MBConv ops)
from .blocks import BlockNetwork, BlockSupernet
from .build import build_network, create_supernet
from .darts import DartsNetwork, DartsSupernet
from .elastic import ElasticGenotype, ElasticNetwork, ElasticStage, ElasticSupernet
from .genotypes import (BlockGenotype, CellGenotype, DartsGenotype, FixedGenotype, Genotype, GenotypeError, Stage,
                        genotype_from_dict, genotype_from_json, genotype_from_yaml, load_genotype)
from .ops import PARAMETER_FREE, create_op
from .recombine import recombine
from .registry import CROSSOVERS, GENOTYPES, GRAPHS, MODELS, NETWORKS, OP_SETS, OPS, SPACES, create_model

__all__ = ["BlockGenotype", "BlockNetwork", "BlockSupernet", "CROSSOVERS", "CellGenotype", "DartsGenotype",
           "DartsNetwork", "DartsSupernet", "ElasticGenotype", "ElasticNetwork", "ElasticStage", "ElasticSupernet", "FixedGenotype", "GENOTYPES", "GRAPHS", "Genotype", "GenotypeError",
           "MODELS", "NETWORKS", "OPS", "OP_SETS", "PARAMETER_FREE", "SPACES", "Stage", "build_network", "create_model",
           "create_op", "create_supernet", "genotype_from_dict", "genotype_from_json", "genotype_from_yaml",
           "load_genotype", "recombine"]
