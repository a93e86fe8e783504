"""Decode image files into one uint8 tensor, resized to a square size."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

log = logging.getLogger(__name__)


def decode_image(path: Path, size: int, mode: str) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert(mode)
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_images(files: list[Path], size: int, mode: str = "RGB") -> torch.Tensor:
    """uint8 [N, C, size, size] from image files; ``mode`` 'L' gives one channel, 'RGB' three."""
    channels = 1 if mode == "L" else 3
    out = np.empty((len(files), channels, size, size), dtype=np.uint8)
    for i, f in enumerate(tqdm(files, desc="decoding images", unit="img", leave=False,
                               disable=len(files) < 2000 or not log.isEnabledFor(logging.INFO))):
        out[i] = decode_image(f, size, mode)
    return torch.from_numpy(out)
