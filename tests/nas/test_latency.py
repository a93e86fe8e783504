"""Timing a module: the statistics it reports and that it leaves the module as it found it."""

import pytest
import torch
from torch import nn

from nas.latency import measure_latency


def test_measure_latency_statistics_and_mode():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).train()
    stats = measure_latency(net, (2, 1, 8, 8), "cpu", warmup=1, repeats=5)
    assert stats.count == 5 and stats.median_ms > 0 and stats.mean_ms > 0 and stats.var_ms2 >= 0
    assert net.training  # restored
    assert torch.equal(net[1].running_mean, torch.zeros(4))  # timed in eval mode: no statistics updated
    cl = measure_latency(net, (2, 1, 8, 8), "cpu", warmup=0, repeats=1, channels_last=True)
    assert cl.count == 1 and cl.var_ms2 == 0.0
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(net, (1, 1, 8, 8), repeats=0)
