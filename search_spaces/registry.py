"""Every registry of ``search_spaces``, in a module that imports none of the others, so any module can
register into them without an import cycle (the package's ``__init__`` imports the modules that register).

- ``OPS``: op name -> ``factory(c_in, c_out, stride, affine) -> nn.Module`` (``ops.py``, ``mbconv.py``)
- ``OP_SETS``: op set name -> tuple of op names, what a space's ``ops`` option names (``ops.py``)
- ``MODELS``: fixed backbone name -> ``factory(in_channels, **options)`` (``fixed/``), built by ``create_model``
- ``SPACES``: search space name -> supernet class ``(in_channels, **options)`` (``darts.py``, ``blocks.py``)
- ``GENOTYPES``: genotype kind -> its dataclass (``genotypes.py``)
- ``NETWORKS``: genotype kind -> ``builder(genotype, in_channels, affine) -> nn.Module``, the stand-alone
  network (``darts.py``, ``blocks.py``, ``build.py`` for fixed backbones)
- ``GRAPHS``: genotype kind -> ``graph(genotype) -> networkx.DiGraph`` (``plotting.py``)
- ``CROSSOVERS``: genotype kind -> ``cross(a, b, take_b) -> genotype``, each choice of ``b`` where ``take_b()``
  (``recombine.py``): what evolution mutates and crosses over

A new genotype kind registers its dataclass, its network and its graph (and, if evolution may search it, its
crossover); parameter and MAC counts follow from its network.
"""

from __future__ import annotations

from fsnas_core.registry import Registry

OPS: Registry = Registry("op")
OP_SETS: Registry = Registry("op set")
MODELS: Registry = Registry("model")
SPACES: Registry = Registry("search space")
GENOTYPES: Registry = Registry("genotype kind")
NETWORKS: Registry = Registry("genotype network")
GRAPHS: Registry = Registry("genotype graph")
CROSSOVERS: Registry = Registry("genotype crossover")


def create_model(name: str, **kwargs):
    """A fixed backbone by name, as timm's ``create_model``."""
    return MODELS[name](**kwargs)
