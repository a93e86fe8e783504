"""Many-way pretraining: batches hold the images of their labels (rotations included), and it learns."""

import torch

from meta.data import load_dataset
from meta.learners.maml import feature_dim
from meta.pretrain import ImageBatches, Pretrainer
from search_spaces import create_model

from ..conftest import toy_dataset


def test_batches_hold_the_images_of_their_labels_with_rotations():
    ds = toy_dataset(classes=12, per_class=10, size=8, rotations=4)
    batches = ImageBatches(ds, "train", batch_size=64, seed=0)  # 4 classes x 4 rotations
    assert batches.num_classes == 16 and int(batches.class_counts().sum()) == 160
    x, y = batches.batch(3)
    raw = x * 255  # toy data: mean 0, std 1
    marker = torch.zeros(8, 8)
    marker[0, 7] = 1
    for img, label in zip(raw, y.tolist()):
        base, turns = label % 4, label // 4
        spot = torch.rot90(marker, turns).nonzero()[0].tolist()
        assert round(float(img[0, spot[0], spot[1]])) == 200  # turned as its label says
        unturned = torch.rot90(img[0], -turns)
        assert round(float(unturned[0, 0])) == base  # and of its class (train classes are 0..3)
    assert torch.equal(batches.batch(3)[0], x) and not torch.equal(batches.batch(4)[0], x)


def test_pretraining_learns_the_training_classes():
    ds = load_dataset("synthetic", train_classes=10, val_classes=5, test_classes=5, images_per_class=20)
    torch.manual_seed(0)
    backbone = create_model("conv4", in_channels=1, hidden=16)
    batches = ImageBatches(ds, "train", batch_size=32, seed=0)
    trainer = Pretrainer(backbone, batches.num_classes, feature_dim(backbone, (1, 28, 28)), steps=120, lr=0.05)
    accs = [trainer.step(*batches.batch(i))["accuracy"] for i in range(120)]
    assert sum(accs[-20:]) / 20 > 0.6  # chance: 0.1


def test_tau_normalisation():
    from meta.pretrain import tau_normalized
    torch.manual_seed(0)
    clf = torch.nn.Linear(6, 4)
    with torch.no_grad():
        clf.weight[0] *= 10  # a "head" class with a large norm
    same = tau_normalized(clf, 0.0)
    assert torch.equal(same.weight, clf.weight) and same.bias is None
    unit = tau_normalized(clf, 1.0)
    torch.testing.assert_close(unit.weight.norm(dim=1), torch.ones(4))
    half = tau_normalized(clf, 0.5).weight.norm(dim=1)
    torch.testing.assert_close(half, clf.weight.norm(dim=1).sqrt())
