"""The elastic space: plain and residual conv stages of elastic depth, width, kernel and downsampling, with
a flatten or pooling head, in which Conv-4 and ResNet-12 are single points; weights shared by slicing."""

from .genotype import ElasticGenotype, ElasticStage
from .network import ElasticNetwork
from .supernet import ElasticSupernet

__all__ = ["ElasticGenotype", "ElasticNetwork", "ElasticStage", "ElasticSupernet"]
