"""Feature scale of backbones at initialisation, the quantity that sets the size of a MAML-family learner's
first inner step from a zero head (docs/benchmarks.md, "Why the MAML family lags at 20-way on the cell").

    python scripts/feature_scale.py configs/genotypes/omniglot_darts_cpu_seed1.yaml   # against Conv-4

Prints, for each backbone built with ``torch.manual_seed(0)``, the mean norm of its features on 20 random
1x28x28 images in train mode (BatchNorm with batch statistics), raw and centred over the batch.
"""
import sys
from pathlib import Path

import torch
from search_spaces import FixedGenotype, build_network, load_genotype

backbones = [(Path(sys.argv[1]).stem, load_genotype(sys.argv[1])), ("conv4", FixedGenotype("conv4", {"hidden": 64}))]
for name, g in backbones:
    torch.manual_seed(0)
    net = build_network(g, 1).train()
    x = torch.randn(20, 1, 28, 28)
    with torch.no_grad():
        f = net(x)
    c = f - f.mean(0)
    print(f"{name}: dim {f.shape[1]}, mean |f| {f.norm(dim=1).mean():.2f}, centred {c.norm(dim=1).mean():.2f}, "
          f"mean feature {f.mean():.3f}")
