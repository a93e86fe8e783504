"""Many-way pretraining: batches hold the images of their labels (rotations included), and it learns."""

import pytest
import torch

from meta.data import load_dataset
from meta.learners.fast_weights import feature_dim
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


@pytest.mark.parametrize("loss", ["cross_entropy", "ldam"])
def test_pretraining_learns_the_training_classes(loss):
    """LDAM gets a cosine classifier (its margins and scale are for cosines in [-1, 1])."""
    from meta.pretrain import CosineLinear
    ds = load_dataset("synthetic", train_classes=10, val_classes=5, test_classes=5, images_per_class=20)
    torch.manual_seed(0)
    backbone = create_model("conv4", in_channels=1, hidden=16)
    batches = ImageBatches(ds, "train", batch_size=32, seed=0)
    trainer = Pretrainer(backbone, batches.num_classes, feature_dim(backbone, (1, 28, 28)), steps=120, lr=0.05,
                         loss=loss, class_counts=batches.class_counts() if loss == "ldam" else None)
    assert isinstance(trainer.classifier, CosineLinear) == (loss == "ldam")
    if loss == "ldam":
        logits = trainer.classifier(torch.randn(5, trainer.classifier.in_features) * 100)
        assert logits.abs().max() <= 1 + 1e-6
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


def test_classifier_retraining_rebalances_a_long_tailed_classifier():
    """cRT on a frozen backbone: the backbone is untouched, the run is deterministic, and the new classifier
    predicts tail classes more often on balanced held-out images than the long-tailed one did (measured: 36%
    against 25% of predictions, where a perfect classifier gives 50%)."""
    from meta.data.long_tail import make_long_tailed
    from meta.pretrain import base_class_accuracy, retrain_classifier
    ds = make_long_tailed(load_dataset("synthetic", train_classes=10, val_classes=5, test_classes=5,
                                       images_per_class=40, seed=1), "train", imbalance=20, seed=0, heldout=10)
    torch.manual_seed(0)
    backbone = create_model("conv4", in_channels=1, hidden=16)
    batches = ImageBatches(ds, "train", batch_size=32, seed=0)
    dim = feature_dim(backbone, (1, 28, 28))
    trainer = Pretrainer(backbone, batches.num_classes, dim, steps=80, lr=0.05)
    for i in range(80):
        trainer.step(*batches.batch(i))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    balanced = ImageBatches(ds, "train", 32, seed=1, sampling="class")
    crt = retrain_classifier(backbone, balanced, dim, 60, lr=0.05)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    torch.testing.assert_close(retrain_classifier(backbone, balanced, dim, 60, lr=0.05).weight, crt.weight)
    heldout, counts = ImageBatches(ds, "train_heldout", 64), batches.class_counts()
    tail = counts < counts.float().median()

    def tail_share(classifier):
        backbone.eval()
        with torch.no_grad():
            preds = torch.cat([classifier(backbone(x).flatten(1)).argmax(1) for x, _ in heldout.every_image()])
        return float(tail[preds].float().mean())
    assert tail_share(crt) > tail_share(trainer.classifier)
    base = base_class_accuracy(backbone, crt, heldout, counts, many=15, few=5)
    plain = base_class_accuracy(backbone, trainer.classifier, heldout, counts, many=15, few=5)
    assert base["balanced_accuracy"] > plain["balanced_accuracy"] > 0.3  # measured 0.86 > 0.74; chance 0.1
