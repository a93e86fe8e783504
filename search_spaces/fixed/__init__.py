"""Hand-designed backbones used as baselines."""

from .conv4 import Conv4
from .resnet12 import ResNet12

__all__ = ["Conv4", "ResNet12"]
