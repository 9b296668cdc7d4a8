"""Augmentation for small grayscale faces, on uint8 arrays.

Crop-with-padding, rotation, scale, flip and the resize to the output size are
folded into one affine warp, so each image is resampled once (one PIL call,
about 13k images/s per core at 48x48). Images stay uint8: normalisation happens
on the device (``Task.prepare_batch``), so the loader ships 4x fewer bytes.

All randomness comes from the ``numpy.random.Generator`` the caller passes in;
``FERDataset`` seeds it from (seed, epoch, index), never from global state.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# torchvision.transforms.RandomErasing defaults: erased area fraction and aspect ratio.
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


@dataclass(frozen=True)
class FERAugment:
    """Training augmentation; the fields mirror the config block ``DATASET.AUG``."""

    #: Random crop after zero padding by this many pixels (a shift of up to +-crop_padding).
    crop_padding: int = 4
    #: Mirror left-right with probability 0.5.
    hflip: bool = True
    #: Rotation drawn uniformly from [-rotation_deg, rotation_deg] degrees.
    rotation_deg: float = 10.0
    #: Zoom factor drawn uniformly from [scale[0], scale[1]].
    scale: tuple[float, float] = (0.9, 1.1)
    #: Probability of erasing a random rectangle (filled with uniform noise).
    random_erasing: float = 0.0
    #: Output side length in pixels; the warp resizes when it differs from the input.
    image_size: int = 48

    def __post_init__(self) -> None:
        # The config may hand lists; a frozen dataclass must stay hashable.
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        problems = []
        if self.crop_padding < 0:
            problems.append(f"crop_padding must be >= 0, got {self.crop_padding}")
        if self.rotation_deg < 0:
            problems.append(f"rotation_deg must be >= 0, got {self.rotation_deg}")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            problems.append(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if not 0.0 <= self.random_erasing <= 1.0:
            problems.append(f"random_erasing is a probability in [0, 1], got {self.random_erasing}")
        if self.image_size < 1:
            problems.append(f"image_size must be >= 1, got {self.image_size}")
        if problems:
            raise ValueError("invalid FER augmentation (DATASET.AUG): " + "; ".join(problems))

    @classmethod
    def from_config(cls, node: Mapping[str, Any], image_size: int | None = None) -> FERAugment:
        """Build from the config block ``DATASET.AUG`` (and ``DATASET.IMAGE_SIZE``).

        Keys absent from the block keep their defaults.
        """
        values = {field: node[key] for key, field in CONFIG_KEYS.items() if key in node}
        if image_size is not None:
            values["image_size"] = image_size
        return cls(**values)


# Config key in DATASET.AUG -> FERAugment field.
CONFIG_KEYS = {"CROP_PADDING": "crop_padding", "HFLIP": "hflip", "ROTATION": "rotation_deg",
               "SCALE": "scale", "RANDOM_ERASING": "random_erasing"}


def affine_inverse(in_size: tuple[int, int], out_size: int, angle_deg: float, scale: float,
                   shift: tuple[float, float], flip: bool) -> tuple[float, ...]:
    """PIL ``Image.AFFINE`` coefficients (output pixel -> input pixel) of the warp.

    Forward, about the image centres: flip, then rotate by ``angle_deg`` and
    zoom by ``scale``, then shift by ``shift`` input pixels (x, y), then resize
    from ``in_size`` (h, w) to ``out_size``.
    """
    h, w = in_size
    theta = math.radians(angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # Inverse rotation/zoom, with the flip (its own inverse) applied last.
    inv = np.array([[cos, sin], [-sin, cos]]) / scale
    if flip:
        inv[0] *= -1.0
    inv_resize = np.diag([w / out_size, h / out_size])
    linear = inv @ inv_resize
    centre_in = np.array([w / 2.0, h / 2.0])
    centre_out = np.array([out_size / 2.0, out_size / 2.0])
    offset = centre_in - linear @ centre_out - inv @ np.asarray(shift, dtype=np.float64)
    return (linear[0, 0], linear[0, 1], offset[0], linear[1, 0], linear[1, 1], offset[1])


def warp(image: np.ndarray, coefficients: tuple[float, ...], out_size: int) -> np.ndarray:
    """Bilinear affine warp of a uint8 H x W image; outside pixels become 0."""
    warped = Image.fromarray(image).transform((out_size, out_size), Image.AFFINE, coefficients,
                                              resample=Image.BILINEAR, fillcolor=0)
    return np.asarray(warped)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """The image at ``size`` x ``size`` (no copy when it already is)."""
    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def erase(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fill one random rectangle with uniform noise (RandomErasing's sampling rule)."""
    h, w = image.shape
    for _ in range(10):
        area = h * w * rng.uniform(*ERASE_AREA)
        ratio = math.exp(rng.uniform(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])))
        eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < eh < h and 0 < ew < w:
            top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            out = image.copy()
            out[top:top + eh, left:left + ew] = rng.integers(0, 256, size=(eh, ew), dtype=np.uint8)
            return out
    return image


def augment(image: np.ndarray, aug: FERAugment, rng: np.random.Generator) -> np.ndarray:
    """One random training view of a uint8 H x W image, as uint8 S x S (S = aug.image_size).

    Every parameter is drawn on every call, in a fixed order, so switching one
    augmentation off leaves the draws of the others unchanged.
    """
    angle = rng.uniform(-aug.rotation_deg, aug.rotation_deg)
    zoom = rng.uniform(aug.scale[0], aug.scale[1])
    shift = rng.integers(-aug.crop_padding, aug.crop_padding + 1, size=2)
    flip = bool(rng.random() < 0.5) and aug.hflip
    do_erase = bool(rng.random() < aug.random_erasing)
    coefficients = affine_inverse(image.shape, aug.image_size, angle, zoom,
                                  (float(shift[0]), float(shift[1])), flip)
    out = warp(image, coefficients, aug.image_size)
    if do_erase:
        out = erase(out, rng)
    return out
