"""Omniglot from the real extracted folders (no zips), with both class splits."""

import pytest
import torch

from meta.data import DatasetError, load_dataset
from meta.data.omniglot import OmniglotFolder


def test_torchvision_accepts_extracted_folders(omniglot_root):
    bg = OmniglotFolder(str(omniglot_root), background=True)
    ev = OmniglotFolder(str(omniglot_root), background=False)
    assert len(bg._characters) == 964 and len(ev._characters) == 659
    assert len(bg) == 964 * 20 and len(ev) == 659 * 20


def test_vinyals_split_counts(omniglot):
    assert omniglot.images.shape == (32460, 1, 28, 28) and omniglot.images.dtype == torch.uint8
    train, val, test = (omniglot.split(s) for s in ("train", "val", "test"))
    assert (train.class_ids.numel(), val.class_ids.numel(), test.class_ids.numel()) == (1028, 172, 423)
    assert train.rotations == 4 and train.num_classes == 4112
    assert val.num_classes == 172 and test.num_classes == 423
    for s in (train, val, test):
        assert s.min_images_per_class == 20 and int(s.image_counts.max()) == 20
    # the three splits are disjoint and cover all 1623 characters
    ids = torch.cat([train.class_ids, val.class_ids, test.class_ids])
    assert ids.unique().numel() == 1623


def test_background_scheme(omniglot_root):
    ds = load_dataset("omniglot", omniglot_root, scheme="background", rotations=False)
    assert ds.split("train").num_classes == 964 and ds.split("test").num_classes == 659
    assert all(ds.class_names[i].startswith("images_background/") for i in ds.splits["train"])
    assert all(ds.class_names[i].startswith("images_evaluation/") for i in ds.splits["test"])
    with pytest.raises(DatasetError, match="no split 'val'"):
        ds.split("val")


def test_images_are_character_strokes(omniglot):
    # white background, dark strokes: most pixels bright, every image has some dark pixels
    x = omniglot.images[:200].float() / 255
    assert x.mean() > 0.8
    assert bool(((x < 0.5).flatten(1).sum(1) > 0).all())


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="omniglot not found"):
        load_dataset("omniglot", tmp_path)
    with pytest.raises(DatasetError, match="needs a data root"):
        load_dataset("omniglot", None)


def test_missing_split_file(omniglot_root, tmp_path):
    with pytest.raises(DatasetError, match="split file"):
        load_dataset("omniglot", omniglot_root, split_dir=tmp_path)
