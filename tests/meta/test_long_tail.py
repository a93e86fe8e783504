"""Long-tailed splits: the exponential profile, a seeded choice of classes and images, and the dropped
images kept apart as the held-out part of the split."""

import pytest
import torch

from meta.data import DatasetError, load_dataset
from meta.data.long_tail import exponential_profile, make_long_tailed
from meta.pretrain import ImageBatches
from nas.checks import load_config
from nas.errors import ConfigError
from nas.pipeline import build_dataset


def synthetic():
    return load_dataset("synthetic", train_classes=12, val_classes=4, test_classes=4, images_per_class=20)


def test_exponential_profile():
    assert exponential_profile(20, 5, 10) == [20, 11, 6, 3, 2]
    assert exponential_profile(100, 11, 100)[-1] == 1 and exponential_profile(100, 11, 1) == [100] * 11
    with pytest.raises(DatasetError, match="imbalance must be >= 1"):
        exponential_profile(10, 3, 0.5)


def test_long_tailed_split_keeps_the_profile_after_a_balanced_heldout():
    full = synthetic().split("train")
    ds = make_long_tailed(synthetic(), "train", imbalance=10, seed=3, heldout=5)
    lt, held = ds.split("train"), ds.split("train_heldout")
    assert sorted(lt.image_counts.tolist(), reverse=True) == exponential_profile(15, 12, 10)
    assert held.image_counts.tolist() == [5] * 12 and torch.equal(held.class_ids, lt.class_ids)
    for row in range(12):
        kept = set(lt.image_index[row, : lt.image_counts[row]].tolist())
        test = set(held.image_index[row].tolist())
        assert len(test) == 5 and not kept & test
        assert kept | test <= set(full.image_index[row, : full.image_counts[row]].tolist())
    with pytest.raises(DatasetError, match="heldout must be"):
        make_long_tailed(synthetic(), "train", imbalance=10, heldout=20)
    again = make_long_tailed(synthetic(), "train", imbalance=10, seed=3, heldout=5).split("train")
    other = make_long_tailed(synthetic(), "train", imbalance=10, seed=4, heldout=5).split("train")
    assert torch.equal(again.image_index, lt.image_index) and not torch.equal(other.image_index, lt.image_index)
    assert torch.equal(ImageBatches(ds, "train", 8).class_counts(), lt.image_counts)  # what the losses are given


def test_long_tail_from_the_config():
    ds = build_dataset(load_config(None, ["data.long_tail.imbalance=5", "data.long_tail.seed=1"]))
    assert ds.info["long_tail"]["imbalance"] == 5 and int(ds.split("train").image_counts.min()) == 4
    with pytest.raises(ConfigError, match="data.long_tail: imbalance must be >= 1"):
        build_dataset(load_config(None, ["data.long_tail.imbalance=0.5"]))


def test_class_balanced_sqrt_and_progressive_sampling():
    ds = make_long_tailed(synthetic(), "train", imbalance=10, seed=0)
    counts = ds.split("train").image_counts.double()
    head, tail = int(counts.argmax()), int(counts.argmin())

    def frequencies(sampling, batches=range(60)):
        b = ImageBatches(ds, "train", 200, seed=0, sampling=sampling, total=60)
        ys = torch.cat([b.batch(i)[1] for i in batches])
        return torch.bincount(ys, minlength=12).double() / len(ys)
    inst, cls, sq = frequencies("instance"), frequencies("class"), frequencies("sqrt")
    assert inst[head] / inst[tail] == pytest.approx(float(counts[head] / counts[tail]), rel=0.35)
    assert cls[head] / cls[tail] == pytest.approx(1.0, rel=0.25)
    assert sq[head] / sq[tail] == pytest.approx(float((counts[head] / counts[tail]).sqrt()), rel=0.3)
    early, late = frequencies("progressive", range(0, 6)), frequencies("progressive", range(54, 60))
    assert early[head] / early[tail] > 3 * late[head] / late[tail]
    b = ImageBatches(ds, "train", 16, seed=0, sampling="class")
    assert torch.equal(b.batch(5)[1], b.batch(5)[1])  # a function of seed and index
    w = ImageBatches(ds, "train", 16, sampling="progressive", total=10)
    torch.testing.assert_close(w.image_weights(0), torch.full((len(w.classes),), 1 / len(w.classes), dtype=torch.float64))
    with pytest.raises(ValueError, match="sampling must be"):
        ImageBatches(ds, "train", 16, sampling="balanced")
