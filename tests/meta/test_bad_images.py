"""Unreadable image files (truncated PNG/JPEG, a text file named .png): every loader that decodes files names
them, or leaves them out and counts them with skip_bad_images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from meta.data import DATASETS, DatasetError, decodes_image_files, load_dataset

from .test_folder_datasets import MINI_PER_CLASS, MINI_SPLITS, _fake_mini

CLASSES = [f"c{i}" for i in range(6)]
PER_CLASS = 4


def _folder(root: Path) -> tuple[Path, Path]:
    """An image_folder dataset with a truncated PNG, a truncated JPEG and a text file named .png."""
    rng = np.random.default_rng(0)
    images = root / "imgs"
    for cls in CLASSES:
        for i in range(PER_CLASS):
            path = images / cls / f"{i}.{'jpg' if i % 2 else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(path)
    for name in ("c0/0.png", "c1/1.jpg"):
        blob = (images / name).read_bytes()
        (images / name).write_bytes(blob[: len(blob) // 2])
    (images / "c2" / "notes.png").write_text("not an image")
    splits = root / "splits"
    splits.mkdir()
    for split, names in (("train", CLASSES[:3]), ("val", CLASSES[3:4]), ("test", CLASSES[4:])):
        (splits / f"{split}.txt").write_text("\n".join(names))
    return root, splits


BAD = ("c0/0.png", "c1/1.jpg", "c2/notes.png")


def test_unreadable_images_are_named_in_one_message(tmp_path):
    root, splits = _folder(tmp_path / "data")
    with pytest.raises(DatasetError) as info:
        load_dataset("image_folder", root, image_size=8, split_dir=splits, folder="imgs", cache_dir=tmp_path / "c")
    message = str(info.value)
    assert message.startswith(f"3 of {len(CLASSES) * PER_CLASS + 1} image files cannot be decoded")
    for name in BAD:
        assert str(root / "imgs" / name) in message
    assert "data.skip_bad_images: true" in message
    assert not list((tmp_path / "c").glob("*.pt"))  # nothing cached


def test_skip_bad_images_leaves_them_out_and_counts_them(tmp_path):
    root, splits = _folder(tmp_path / "data")
    cache = tmp_path / "c"
    ds = load_dataset("image_folder", root, image_size=8, split_dir=splits, folder="imgs", cache_dir=cache,
                      skip_bad_images=True)
    assert ds.images.shape[0] == len(CLASSES) * PER_CLASS - 2 == ds.labels.shape[0]
    assert ds.info["skipped_images"] == 3
    assert sorted(ds.info["skipped_files"]) == sorted(str(root / "imgs" / n) for n in BAD)
    assert ds.split("train").image_counts.tolist() == [PER_CLASS - 1, PER_CLASS - 1, PER_CLASS]
    assert ds.describe()["skipped_images"] == 3
    again = load_dataset("image_folder", root, image_size=8, split_dir=splits, folder="imgs", cache_dir=cache,
                         skip_bad_images=True)
    assert again.info["skipped_images"] == 3  # the count comes back with the cache
    with pytest.raises(DatasetError, match="cannot be decoded"):  # a skipping cache never serves a strict load
        load_dataset("image_folder", root, image_size=8, split_dir=splits, folder="imgs", cache_dir=cache)


def test_mini_imagenet_shares_the_error_path(tmp_path):
    root = tmp_path / "data"
    _fake_mini(root)
    bad = root / "mini-imagenet" / "images" / "n01_0000.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DatasetError, match=f"1 of {8 * MINI_PER_CLASS} image files cannot be decoded: {bad}"):
        load_dataset("mini_imagenet", root, image_size=8, cache_dir=None)
    ds = load_dataset("mini_imagenet", root, image_size=8, cache_dir=None, skip_bad_images=True)
    assert ds.info["skipped_images"] == 1 and ds.images.shape[0] == 8 * MINI_PER_CLASS - 1
    assert ds.split("train").num_classes == len(MINI_SPLITS["train"])


def test_skip_bad_images_is_refused_where_no_files_are_decoded():
    assert {n for n in DATASETS if decodes_image_files(n)} == {"image_folder", "mini_imagenet", "omniglot"}
    with pytest.raises(DatasetError, match="decodes no image files"):
        load_dataset("synthetic", None, skip_bad_images=True)


def test_a_full_disk_while_caching_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno
    import os

    from meta.data import cache as cache_module
    real = os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(cache_module.os, "replace", full)
    root, splits = _folder(tmp_path / "data")
    cache = tmp_path / "cache"
    ds = load_dataset("image_folder", root, image_size=8, split_dir=splits, folder="imgs", cache_dir=cache,
                      skip_bad_images=True)
    monkeypatch.setattr(cache_module.os, "replace", real)
    assert ds.images.shape[0] == len(CLASSES) * PER_CLASS - 2 and list(cache.iterdir()) == []  # goes on, no leftovers
