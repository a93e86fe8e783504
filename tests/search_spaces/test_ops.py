import pytest
import torch

from search_spaces import OPS, create_op

SIZES = [(1, 28, 28), (3, 32, 32), (3, 84, 84)]


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_shapes(name, stride):
    for c_in, c_out in [(8, 8), (8, 12)]:
        op = create_op(name, c_in, c_out, stride, affine=False)
        for _, h, w in SIZES:
            x = torch.randn(2, c_in, h, w)
            y = op(x)
            assert y.shape == (2, c_out, -(-h // stride), -(-w // stride)), (name, stride, c_in, c_out, h)


def test_none_is_zero_and_skip_is_identity():
    x = torch.randn(2, 8, 9, 9)
    assert torch.equal(create_op("none", 8, 8, 1)(x), torch.zeros_like(x))
    assert torch.equal(create_op("skip_connect", 8, 8, 1)(x), x)


def test_affine_off_means_no_bn_parameters():
    op = create_op("sep_conv_3x3", 8, 8, 1, affine=False)
    bns = [m for m in op.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.weight is None for m in bns)


def test_unknown_op_and_bad_stride():
    with pytest.raises(KeyError, match="unknown op 'conv_9x9'"):
        create_op("conv_9x9", 8, 8)
    with pytest.raises(ValueError, match="stride"):
        create_op("conv_3x3", 8, 8, 3)
