"""The embedded synthetic glyph dataset: determinism, shapes and splits, class structure, option errors."""

import pytest
import torch

from meta.data import DatasetError, load_dataset
from meta.data.synthetic import GENERATOR, render_glyphs

SMALL = dict(image_size=28, train_classes=20, val_classes=5, test_classes=8, images_per_class=10)


def test_same_seed_same_images_other_seed_other_images():
    a = load_dataset("synthetic", **SMALL, seed=3)
    b = load_dataset("synthetic", **SMALL, seed=3)
    c = load_dataset("synthetic", **SMALL, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.mean == b.mean
    assert not torch.equal(a.images, c.images)
    assert a.info == {"seed": 3, "generator": GENERATOR}


def test_global_rng_neither_used_nor_disturbed():
    torch.manual_seed(1)
    a = render_glyphs(4, 3, 16, seed=7)
    state = torch.get_rng_state()
    torch.manual_seed(2)
    b = render_glyphs(4, 3, 16, seed=7)
    assert torch.equal(a, b)
    torch.manual_seed(1)
    render_glyphs(4, 3, 16, seed=7)
    assert torch.equal(torch.get_rng_state(), state)


def test_counts_shapes_and_splits():
    ds = load_dataset("synthetic", **{**SMALL, "image_size": 32})
    assert ds.name == "synthetic" and ds.train_rotations == 1
    assert ds.images.shape == (33 * 10, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and torch.equal(ds.labels.bincount(), torch.full((33,), 10))
    assert ds.class_names[:2] == ["glyph0000", "glyph0001"] and len(ds.class_names) == 33
    assert ds.splits == {"train": list(range(20)), "val": list(range(20, 25)), "test": list(range(25, 33))}
    assert {k: ds.split(k).num_classes for k in ds.splits} == {"train": 20, "val": 5, "test": 8}
    assert ds.split("test").min_images_per_class == 10
    assert len(ds.mean) == len(ds.std) == 1 and 0 < ds.mean[0] < 0.5 and ds.std[0] > 0
    no_val = load_dataset("synthetic", train_classes=4, val_classes=0, test_classes=3, images_per_class=2)
    assert set(no_val.splits) == {"train", "test"} and no_val.image_shape == (1, 28, 28)


def test_white_strokes_on_black_never_blank():
    ds = load_dataset("synthetic", **SMALL)
    x = ds.images.float().flatten(1) / 255
    ink = (x > 0.5).float().mean(1)
    assert bool((ink > 0.02).all()) and bool((ink < 0.4).all())  # strokes: neither blank nor flooded
    assert ds.images.max() == 255 and x.median() < 0.1  # black background, saturated strokes


def test_images_vary_within_a_class_but_classes_differ_more():
    ds = load_dataset("synthetic", **SMALL)
    x = ds.images.float().flatten(1) / 255
    dist = torch.cdist(x, x)
    same = ds.labels[:, None] == ds.labels[None, :]
    off_diagonal = ~torch.eye(len(x), dtype=torch.bool)
    within, between = dist[same & off_diagonal], dist[~same]
    assert within.min() > 1.0  # no two images of a class are (nearly) identical
    assert within.mean() < 0.9 * between.mean()
    # every class has its own look: its images are nearer its own centroid than any other's, on average
    centroids = x.view(33, 10, -1).mean(1)
    to_centroids = torch.cdist(x, centroids).view(33, 10, 33).mean(1)
    assert torch.equal(to_centroids.argmin(1), torch.arange(33))


@pytest.mark.parametrize("option, value", [("train_classes", 1), ("val_classes", -1), ("test_classes", 0),
                                           ("test_classes", 1.5), ("images_per_class", 1), ("image_size", 4),
                                           ("seed", -1), ("train_classes", True)])
def test_bad_options_name_the_option(option, value):
    with pytest.raises(DatasetError, match=f"data\\.(options\\.)?{option} must be an integer of at least"):
        load_dataset("synthetic", **{**SMALL, option: value})


def test_unknown_option_is_refused():
    with pytest.raises(DatasetError, match="takes no option color"):
        load_dataset("synthetic", color=True)


def ink_and_paper(rgb, grey) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, 3] mean colours of each colour image where its grayscale twin has ink, and where it has paper."""
    x = rgb.images.float() / 255
    ink, paper = grey.images[:, 0] > 200, grey.images[:, 0] < 20
    return ((x * ink[:, None]).sum((2, 3)) / ink.sum((1, 2))[:, None],
            (x * paper[:, None]).sum((2, 3)) / paper.sum((1, 2))[:, None])


def test_colour_images_draw_the_same_glyphs_in_colours_that_vary_per_image():
    grey = load_dataset("synthetic", **SMALL)
    rgb = load_dataset("synthetic", **SMALL, colour=True)
    assert rgb.images.shape == (330, 3, 28, 28) and torch.equal(grey.labels, rgb.labels)
    assert torch.equal(load_dataset("synthetic", **SMALL, colour=False).images, grey.images)  # the default unchanged
    # the strokes are where the grayscale strokes are: ink and background differ in colour there
    fg, bg = ink_and_paper(rgb, grey)
    assert (fg - bg).abs().max(1).values.median() > 0.2
    assert bg[:10].std(0).min() > 0.1  # images of one class: different backgrounds
    assert all(s > 0.1 for s in rgb.std)


def test_dark_ink_is_darker_than_its_background_in_every_channel_of_every_image():
    grey = load_dataset("synthetic", **SMALL)
    both = load_dataset("synthetic", **SMALL, colour=True)
    dark = load_dataset("synthetic", **SMALL, colour=True, dark_ink=True)
    fg, bg = ink_and_paper(dark, grey)
    assert (fg < bg - 0.1).all()  # one contrast polarity, every image and channel
    assert bg[:10].std(0).min() > 0.05  # hues still drawn per image
    both_fg, both_bg = ink_and_paper(both, grey)
    assert (both_fg > both_bg).any() and (both_fg < both_bg).any()  # the default has both polarities
    assert dark.info["dark_ink"] and "dark_ink" not in both.info


def test_dark_ink_without_colour_is_refused_naming_the_fix():
    with pytest.raises(DatasetError, match="colour: true"):
        load_dataset("synthetic", **SMALL, dark_ink=True)
