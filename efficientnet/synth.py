"""A synthetic FER2013: drawn 48x48 faces whose brows and mouth differ by class.

Made for tests and short CPU runs: the 7 classes are learnable but not
trivial (class shapes vary and overlap, faces move, tilt, change size and
brightness, and carry noise), and mildly imbalanced like the real set, so
class weighting matters. Every class cue is left-right symmetric, or
symmetric in distribution (Disgust raises either mouth corner with equal
odds), so horizontal flips keep labels valid.

The same (n, seed, test_fraction) gives the same samples in every format:
``csv`` (Kaggle ``emotion,pixels,Usage``), ``torchvision`` (``ROOT/fer2013/fer2013.csv``)
and ``folder`` (``train/<Class>/*.png``, ``test/<Class>/*.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass

import numpy as np
from PIL import Image

from efficientnet.data import CLASS_NAMES, IMAGE_SIDE, NUM_CLASSES, USAGES
from efficientnet.defaults import SYNTH_FORMATS

# Relative class frequencies (Angry ... Neutral): fewer Disgust, more Happy, as in the real set.
CLASS_FREQUENCIES = np.array([1.0, 0.4, 1.0, 1.5, 1.1, 0.8, 1.1])
# Decimal strings of 0..255, indexed by pixel value, to write csv rows without a per-pixel format call.
_DECIMAL = np.array([str(v) for v in range(256)], dtype=object)


@dataclass(frozen=True)
class Expression:
    """Class shape parameters in face units (face half-width 15, half-height 19, y down)."""

    brow_gap: float  # brow height above the eyes
    brow_slant: float  # > 0: inner ends lower (a frown of the brows); < 0: inner ends raised
    eye_open: float  # eye half-height
    mouth_curve: float  # > 0: corners up (smile); < 0: corners down
    mouth_width: float  # half-width
    mouth_open: float  # half-height of an open mouth; 0 draws a closed line
    mouth_skew: float  # one corner raised by this much, on a random side


EXPRESSIONS: dict[str, Expression] = {
    "Angry": Expression(2.2, 2.2, 1.2, -1.0, 5.0, 0.0, 0.0),
    "Disgust": Expression(3.0, 1.2, 1.0, -0.5, 6.0, 0.0, 2.8),
    "Fear": Expression(5.0, -1.6, 2.2, -0.5, 5.0, 1.8, 0.0),
    "Happy": Expression(4.0, 0.0, 1.4, 3.2, 7.0, 0.0, 0.0),
    "Sad": Expression(3.8, -2.0, 1.3, -2.8, 6.0, 0.0, 0.0),
    "Surprise": Expression(6.5, 0.0, 2.3, 0.0, 3.4, 4.2, 0.0),
    "Neutral": Expression(4.0, 0.0, 1.5, 0.0, 6.0, 0.0, 0.0),
}
# Per-sample spread of each shape parameter: enough overlap that classes are not trivially separable.
SHAPE_NOISE = Expression(0.8, 0.6, 0.3, 0.8, 0.8, 0.5, 0.6)

_CENTRES = (np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE][::-1] + 0.5).reshape(2, -1)  # (x, y) of every pixel


def render_face(label: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 48 x 48 face of class ``label`` (an index into CLASS_NAMES)."""
    base = EXPRESSIONS[CLASS_NAMES[label]]
    e = Expression(
        *(
            rng.normal(mean, spread)
            for mean, spread in zip(base.__dict__.values(), SHAPE_NOISE.__dict__.values(), strict=True)
        )
    )
    # Face placement: centre, size and tilt; (u, v) are face coordinates of every pixel.
    centre = np.array([24.0, 25.0]) + rng.uniform(-3.0, 3.0, size=2)
    size = rng.uniform(0.85, 1.1)
    tilt = math.radians(rng.uniform(-10.0, 10.0))
    dx, dy = (_CENTRES - centre[:, None]) / size
    u = math.cos(tilt) * dx + math.sin(tilt) * dy
    v = -math.sin(tilt) * dx + math.cos(tilt) * dy

    radius = np.sqrt((u / 15.0) ** 2 + (v / 19.0) ** 2)
    face_mask = 1.0 / (1.0 + np.exp((radius - 1.0) * 12.0))
    background = rng.uniform(15.0, 110.0) + rng.uniform(-0.8, 0.8) * (_CENTRES[0] - 24.0)
    skin = rng.uniform(125.0, 225.0)
    ink = np.zeros_like(u)  # 0..1 darkness of the drawn features

    eye_open = max(e.eye_open, 0.5)
    for side in (-1.0, 1.0):
        ink = np.maximum(ink, _soft_ellipse(u - side * 6.0, v + 4.0, 2.4, eye_open))
        brow_y = -4.0 - eye_open - e.brow_gap
        inner = (side * 2.5, brow_y + e.brow_slant)
        outer = (side * 10.0, brow_y - e.brow_slant)
        ink = np.maximum(ink, _stroke(u, v, np.linspace(inner, outer, 10), 1.1))

    mouth_y = 9.0
    width = max(e.mouth_width, 2.0)
    if e.mouth_open > 0.4:
        ink = np.maximum(ink, _soft_ellipse(u, v - mouth_y - 0.5, width * 0.7, e.mouth_open))
    else:
        xs = np.linspace(-width, width, 16)
        skew_side = 1.0 if rng.random() < 0.5 else -1.0
        raised = np.clip(skew_side * xs / width, 0.0, 1.0)
        ys = mouth_y - e.mouth_curve * (xs / width) ** 2 - e.mouth_skew * raised
        ink = np.maximum(ink, _stroke(u, v, np.stack([xs, ys], axis=1), 1.2))

    darkness = rng.uniform(0.55, 0.85)
    image = background + (skin - background) * face_mask
    image = image * (1.0 - darkness * ink * face_mask)
    image = image + rng.normal(0.0, rng.uniform(4.0, 14.0), size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE)


def _soft_ellipse(x: np.ndarray, y: np.ndarray, rx: float, ry: float) -> np.ndarray:
    r = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    return 1.0 / (1.0 + np.exp((r - 1.0) * 6.0))


def _stroke(u: np.ndarray, v: np.ndarray, points: np.ndarray, thickness: float) -> np.ndarray:
    """Soft line through ``points`` (K x 2), sampled densely enough to look continuous."""
    d2 = (u[:, None] - points[None, :, 0]) ** 2 + (v[:, None] - points[None, :, 1]) ** 2
    return np.exp(-d2.min(axis=1) / (thickness**2))


# --------------------------------------------------------------- the set
def class_sample_counts(n: int) -> np.ndarray:
    """Samples per class for ``n`` images (largest remainder of the class frequencies)."""
    share = CLASS_FREQUENCIES / CLASS_FREQUENCIES.sum() * n
    counts = np.floor(share).astype(np.int64)
    counts[np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]] += 1
    return counts


def synthetic_fer_arrays(
    n: int, seed: int = 0, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images uint8 N x 48 x 48, labels int64, usages str)`` in Kaggle row order.

    Splits are stratified by class: about ``test_fraction`` of each class is
    test data, halved between PublicTest and PrivateTest. Rows come Training,
    then PublicTest, then PrivateTest, each shuffled, as in fer2013.csv.
    """
    if n < 2 * NUM_CLASSES:
        raise ValueError(f"synthetic FER needs n >= {2 * NUM_CLASSES} (two images per class), got {n}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    order_rng = np.random.default_rng([seed, 1])
    by_usage: dict[str, list[int]] = {usage: [] for usage in USAGES}
    for label, count in enumerate(class_sample_counts(n)):
        n_test = min(count - 1, max(1, int(round(count * test_fraction))))
        # Odd test counts alternate their extra image between the two test usages.
        n_public = (n_test + label % 2) // 2
        by_usage["Training"] += [label] * (count - n_test)
        by_usage["PublicTest"] += [label] * n_public
        by_usage["PrivateTest"] += [label] * (n_test - n_public)
    labels = np.concatenate([order_rng.permutation(np.array(by_usage[u], dtype=np.int64)) for u in USAGES])
    usages = np.concatenate([np.full(len(by_usage[u]), u) for u in USAGES])
    # One generator per row: a row's image does not depend on how many rows precede it.
    images = np.stack(
        [render_face(int(label), np.random.default_rng([seed, 0, row])) for row, label in enumerate(labels)]
    )
    return images, labels, usages


def write_synthetic_fer(
    out: str, n: int, fmt: str, seed: int = 0, test_fraction: float = 0.2, overwrite: bool = False
) -> str:
    """Write a synthetic FER set under ``out``; returns the path to use as DATASET.ROOT.

    ``csv`` returns ``out/fer2013.csv``; ``torchvision`` and ``folder`` return ``out``.
    Existing outputs are an error unless ``overwrite`` (which replaces only
    the files/directories this function writes).
    """
    if fmt not in SYNTH_FORMATS:
        raise ValueError(f"unknown synthetic FER format {fmt!r}; choose one of {', '.join(SYNTH_FORMATS)}")
    out = os.fspath(out)
    targets = {
        "csv": [os.path.join(out, "fer2013.csv")],
        "torchvision": [os.path.join(out, "fer2013")],
        "folder": [os.path.join(out, "train"), os.path.join(out, "test")],
    }[fmt]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not overwrite:
        raise FileExistsError(
            f"synthetic FER output already exists: {', '.join(existing)} "
            f"(pass overwrite / --overwrite to replace it)"
        )
    for target in existing:
        shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    images, labels, usages = synthetic_fer_arrays(n, seed, test_fraction)
    os.makedirs(out, exist_ok=True)
    if fmt == "csv":
        write_fer_csv(targets[0], images, labels, usages)
        return targets[0]
    if fmt == "torchvision":
        os.makedirs(targets[0])
        write_fer_csv(os.path.join(targets[0], "fer2013.csv"), images, labels, usages)
        return out
    write_fer_folders(out, images, labels, usages)
    return out


def write_fer_csv(path: str, images: np.ndarray, labels: np.ndarray, usages: np.ndarray) -> None:
    """Kaggle layout: header ``emotion,pixels,Usage``, pixels space-separated."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="\n") as f:
        f.write("emotion,pixels,Usage\n")
        for image, label, usage in zip(images, labels, usages, strict=True):
            f.write(f"{int(label)},{' '.join(_DECIMAL[image.ravel()])},{usage}\n")
    os.replace(tmp, path)


def write_fer_folders(root: str, images: np.ndarray, labels: np.ndarray, usages: np.ndarray) -> None:
    """``root/train/<Class>/<row>.png`` for Training rows, ``root/test/<Class>/`` for the rest."""
    for split in ("train", "test"):
        for name in CLASS_NAMES:
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
    for row, (image, label, usage) in enumerate(zip(images, labels, usages, strict=True)):
        split = "train" if usage == "Training" else "test"
        path = os.path.join(root, split, CLASS_NAMES[int(label)], f"{row:06d}.png")
        Image.fromarray(image).save(path, compress_level=1)


# -------------------------------------------------------------------- CLI
# The parser is efficientnet.workload.add_data_cli (light); this runs the command.
def run_synth_fer(args: argparse.Namespace) -> int:
    try:
        root = write_synthetic_fer(args.out, args.n, args.fmt, args.seed, args.test_fraction, args.overwrite)
    except (ValueError, FileExistsError) as e:
        print(f"harness data synth-fer: error: {e}", file=sys.stderr)
        return 2
    counts = class_sample_counts(args.n)
    print(
        json.dumps(
            {
                "root": root,
                "format": args.fmt,
                "n": args.n,
                "seed": args.seed,
                "classes": dict(zip(CLASS_NAMES, counts.tolist(), strict=True)),
            },
            indent=2,
        )
    )
    return 0
