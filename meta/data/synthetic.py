"""An embedded few-shot dataset that fsnas draws itself: procedural glyphs, deterministic from a seed.

Each class is a glyph of 2-4 strokes (cubic Bezier curves or three-segment polylines); each image of a
class redraws it with its own jitter (control-point noise, rotation, scale, shear, shift, stroke width,
pixel noise), so a class is a family of handwritten-looking variants, as in Omniglot.  White strokes on
black; with ``colour: true``, RGB images whose ink and background colours are drawn per image (colour is a
nuisance, as in natural images: a class is its shape), to try what is met on colour data without having
it; ink may be lighter or darker than its background (two contrast polarities), unless ``dark_ink: true``
(ink darker than the background in every channel, as print on paper: one polarity, hues still per image).
No file is read or downloaded: the quickstart and the fast tests run on a fresh offline machine.
"""

from __future__ import annotations

import math

import torch

from .base import DatasetError, FewShotDataset, pixel_stats
from .registry import DATASETS

GENERATOR = "glyphs-v1"  # bump when a change alters the images drawn for a seed
MAX_STROKES = 4
FAR = 1000.0  # where the unused strokes of a glyph are parked: outside the image, they draw nothing
CHUNK = 512  # images drawn at once, to bound memory; it orders the random draws, so changing it changes images


def _uniform(shape: tuple[int, ...], spread: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=g) * 2 - 1) * spread


def _basis(points: int) -> torch.Tensor:
    """Weights [2, points, 4] turning 4 control points into a cubic Bezier (kind 0) or a polyline (kind 1)."""
    t = torch.linspace(0, 1, points)
    bezier = torch.stack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3], -1)
    polyline = (1 - (3 * t[:, None] - torch.arange(4)).abs()).clamp_min(0)
    return torch.stack([bezier, polyline])


def _curves(ctrl: torch.Tensor, kinds: torch.Tensor, points: int) -> torch.Tensor:
    """Points along the strokes: control points [B, S, 4, 2] and kinds [B, S] -> [B, S * points, 2]."""
    return (_basis(points)[kinds] @ ctrl).flatten(1, 2)


def _random_glyphs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean glyph of each class: control points [n, MAX_STROKES, 4, 2] and stroke kinds [n, MAX_STROKES]."""
    start = _uniform((n, MAX_STROKES, 1, 2), 0.7, g)
    # control points walk away from the start, so a stroke has a pen-like length instead of spanning the frame
    steps = torch.randn(n, MAX_STROKES, 3, 2, generator=g) * 0.45
    ctrl = torch.cat([start, start + steps.cumsum(2)], 2)
    kinds = (torch.rand(n, MAX_STROKES, generator=g) < 0.4).long()
    used = torch.arange(MAX_STROKES) < torch.randint(2, MAX_STROKES + 1, (n, 1), generator=g)
    # centre each glyph and scale its longer side to 1.4 (of 2), so glyphs fill the frame alike whatever the walk
    pts = _curves(ctrl, kinds, 32)
    mask = used.repeat_interleave(32, 1)[..., None]
    lo = pts.masked_fill(~mask, math.inf).amin(1)
    hi = pts.masked_fill(~mask, -math.inf).amax(1)
    scale = 1.4 / (hi - lo).amax(1).clamp_min(0.1)
    ctrl = (ctrl - ((lo + hi) / 2)[:, None, None]) * scale[:, None, None, None]
    return ctrl.masked_fill(~used[:, :, None, None], FAR), kinds


def _jitter(ctrl: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One variant per row of [B, S, 4, 2] control points: point noise, then a random affine map."""
    b = ctrl.shape[0]
    noisy = ctrl + torch.randn(ctrl.shape, generator=g) * 0.08
    angle = _uniform((b,), math.radians(15), g)
    sx, sy = (1 + _uniform((2, b), 0.1, g)).unbind()
    shear = _uniform((b,), 0.15, g)
    rotate = torch.stack([angle.cos(), -angle.sin(), angle.sin(), angle.cos()], -1).view(b, 2, 2)
    stretch = torch.stack([sx, shear * sy, torch.zeros(b), sy], -1).view(b, 2, 2)
    shift = _uniform((b, 1, 1, 2), 0.15, g)  # about 2 px at 28x28
    out = torch.einsum("bij,bskj->bski", rotate @ stretch, noisy) + shift
    return out.masked_fill(ctrl >= FAR, FAR)


def _draw(pts: torch.Tensor, half_width: torch.Tensor, size: int, edge: float = 1.0) -> torch.Tensor:
    """Ink in [0, 1], [B, size * size], of round brushes of ``half_width`` (pixels, [B]) stamped at ``pts``.

    A pixel takes the ink of its nearest stroke point: full inside the half-width, falling linearly over
    ``edge`` pixels (anti-aliasing).  Only the few pixels around each point are visited, which is what
    makes 12,000 images take a second, and the maximum is taken with a scatter, which is deterministic.
    """
    p = (pts + 1) * (size / 2) - 0.5  # pixel coordinates, pixel centres at integers
    reach = math.ceil(float(half_width.max()) + edge / 2 + 0.5)
    offsets = torch.arange(-reach, reach + 1)
    ix = p[..., 0].round().long()[..., None] + offsets  # [B, N, K] columns near each point
    iy = p[..., 1].round().long()[..., None] + offsets  # [B, N, K] rows near each point
    # off-image pixels are made infinitely far, so they get no ink and their clamped index is harmless
    dx = torch.where((ix >= 0) & (ix < size), ix - p[..., 0, None], math.inf)
    dy = torch.where((iy >= 0) & (iy < size), iy - p[..., 1, None], math.inf)
    dist = (dy[..., :, None] ** 2 + dx[..., None, :] ** 2).sqrt()
    ink = ((half_width[:, None, None, None] - dist) / edge + 0.5).clamp(0, 1)  # [B, N, K, K]
    flat = iy.clamp(0, size - 1)[..., :, None] * size + ix.clamp(0, size - 1)[..., None, :]
    out = torch.zeros(pts.shape[0], size * size)
    return out.scatter_reduce_(1, flat.flatten(1), ink.flatten(1), "amax")


def render_glyphs(num_classes: int, images_per_class: int, image_size: int = 28, seed: int = 0) -> torch.Tensor:
    """uint8 images [num_classes * images_per_class, 1, S, S], class by class, the same for the same arguments.

    All randomness comes from one explicitly seeded generator (never the global one), drawn in a fixed
    order, so the images are bit-for-bit reproducible on CPU.
    """
    g = torch.Generator().manual_seed(seed)
    glyphs, kinds = _random_glyphs(num_classes, g)
    labels = torch.arange(num_classes).repeat_interleave(images_per_class)
    points = image_size + 8  # dense enough that consecutive stamps overlap into a smooth stroke
    out = torch.empty(len(labels), 1, image_size, image_size, dtype=torch.uint8)
    for lo in range(0, len(labels), CHUNK):
        rows = labels[lo: lo + CHUNK]
        pts = _curves(_jitter(glyphs[rows], g), kinds[rows], points)
        half_width = (0.085 + _uniform((len(rows),), 0.025, g)) * (image_size / 2)  # strokes 1.7-3.1 px at 28
        ink = _draw(pts, half_width, image_size)
        ink = (ink + torch.randn(ink.shape, generator=g) * 0.03).clamp(0, 1)
        out[lo: lo + CHUNK] = (ink * 255).round().to(torch.uint8).view(-1, 1, image_size, image_size)
    return out


def colourise(ink: torch.Tensor, seed: int, dark_ink: bool = False) -> torch.Tensor:
    """uint8 [N, 3, S, S]: each image's strokes in one random colour on another, with a little pixel noise
    (its own generator: the glyphs are those of the grayscale images of the same seed).  ``dark_ink``: ink
    channels in [0, 0.4], background channels in [0.6, 1]."""
    g = torch.Generator().manual_seed(seed + 7919)
    out = torch.empty(ink.shape[0], 3, *ink.shape[2:], dtype=torch.uint8)
    for lo in range(0, len(ink), CHUNK):
        a = ink[lo: lo + CHUNK].float().div_(255.0)
        fg, bg = (torch.rand(len(a), 3, 1, 1, generator=g) for _ in range(2))
        if dark_ink:
            fg, bg = fg * 0.4, 0.6 + bg * 0.4
        rgb = bg + (fg - bg) * a + torch.randn((len(a), 3, *a.shape[2:]), generator=g) * 0.03
        out[lo: lo + CHUNK] = (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
    return out


@DATASETS.register("synthetic")
def load_synthetic(*, image_size: int = 28, train_classes: int = 400, val_classes: int = 100,
                   test_classes: int = 100, images_per_class: int = 20, seed: int = 0,
                   colour: bool = False, dark_ink: bool = False) -> FewShotDataset:
    """Procedural glyphs: consecutive class ranges for train / val / test (no val split when val_classes is 0)."""
    for name, value, least in (("image_size", image_size, 8), ("train_classes", train_classes, 2),
                               ("val_classes", val_classes, 0), ("test_classes", test_classes, 2),
                               ("images_per_class", images_per_class, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            key = "data.image_size" if name == "image_size" else f"data.options.{name}"
            raise DatasetError(f"synthetic dataset: {key} must be an integer of at least {least}, got {value!r}; "
                               f"set {key} to such a number")
    if dark_ink and not colour:
        raise DatasetError("synthetic dataset: data.options.dark_ink chooses the ink of colour images; set "
                           "data.options.colour: true with it, or leave dark_ink out")
    n_classes = train_classes + val_classes + test_classes
    images = render_glyphs(n_classes, images_per_class, image_size, seed)
    if colour:
        images = colourise(images, seed, dark_ink)
    labels = torch.arange(n_classes).repeat_interleave(images_per_class)
    mean, std = pixel_stats(images)
    bounds = [0, train_classes, train_classes + val_classes, n_classes]
    splits = {name: list(range(a, b)) for name, a, b in zip(("train", "val", "test"), bounds, bounds[1:]) if b > a}
    return FewShotDataset(name="synthetic", images=images, labels=labels,
                          class_names=[f"glyph{i:04d}" for i in range(n_classes)], splits=splits, mean=mean,
                          std=std, train_rotations=1, info={"seed": seed, "generator": GENERATOR,
                                                            **({"colour": True} if colour else {}),
                                                            **({"dark_ink": True} if dark_ink else {})})
