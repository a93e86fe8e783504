"""Decode image files into one uint8 tensor, resized to a square size: the one decoding path of every loader that
reads image files, so an unreadable file (truncated, corrupt, not an image) is reported the same way by all of
them, naming the file, or left out and counted (``skip_bad``: ``data.skip_bad_images``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .base import DatasetError

log = logging.getLogger(__name__)

SHOWN = 3  # unreadable files named in a message
KEPT_NAMES = 20  # unreadable files named in a dataset's info


class BadImage(DatasetError):
    """An image file that cannot be decoded."""


def decode_image(path: Path, size: int, mode: str) -> np.ndarray:
    """uint8 [C, size, size]; BadImage naming the file and why when it cannot be decoded."""
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise BadImage(f"{path} (not an image in a format PIL reads)") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib and struct errors for bad files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise BadImage(f"{path} ({reason})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


@dataclass
class Decoded:
    images: torch.Tensor  # uint8 [N, C, size, size]
    labels: torch.Tensor  # int64 [N]
    skipped: list[str] = field(default_factory=list)  # files left out as unreadable (skip_bad)

    def info(self) -> dict:
        """What a dataset's ``info`` records of the decoding: the files left out (none: nothing)."""
        if not self.skipped:
            return {"skipped_images": 0}
        return {"skipped_images": len(self.skipped), "skipped_files": self.skipped[:KEPT_NAMES]}


def decode_images(files: list[Path], labels: list[int], size: int, mode: str = "RGB",
                  skip_bad: bool = False) -> Decoded:
    """The images of ``files`` (``mode`` 'L': one channel, 'RGB': three) with their ``labels``.  Every file is
    tried; unreadable ones raise one DatasetError naming them, or with ``skip_bad`` are left out and listed."""
    channels = 1 if mode == "L" else 3
    out = np.empty((len(files), channels, size, size), dtype=np.uint8)
    good, bad, skipped = [], [], []
    for i, f in enumerate(tqdm(files, desc="decoding images", unit="img", leave=False,
                               disable=len(files) < 2000 or not log.isEnabledFor(logging.INFO))):
        try:
            out[len(good)] = decode_image(f, size, mode)
            good.append(i)
        except BadImage as exc:
            bad.append(str(exc))
            skipped.append(str(f))
    if bad and not skip_bad:
        shown = "; ".join(bad[:SHOWN]) + (f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
        raise DatasetError(f"{len(bad)} of {len(files)} image files cannot be decoded: {shown}. Replace or delete "
                           f"them, or set data.skip_bad_images: true to leave out every unreadable image (they are "
                           f"counted in the run's summary)")
    if bad:
        log.info("left out %d unreadable image files of %d (data.skip_bad_images); first: %s", len(bad),
                    len(files), bad[0])
    images = torch.from_numpy(out[: len(good)].copy() if bad else out)
    return Decoded(images, torch.as_tensor(labels, dtype=torch.long)[torch.as_tensor(good, dtype=torch.long)],
                   skipped)
