"""Augmentation for small grayscale faces, a whole batch at a time.

Crop-with-padding, rotation, scale, flip and the resize to the output size are
folded into one affine warp, so each image is resampled once, and the warp of a
whole batch is one ``torch.nn.functional.grid_sample`` call: at 48 px the per-image
Python work of a PIL pipeline, not the arithmetic, is what a loader worker spends
its time on. Images stay uint8: normalisation happens on the device
(``Task.prepare_batch``), so the loader ships 4x fewer bytes.

Randomness: every parameter of a view is a function of a row of uniform numbers
(:data:`NUM_DRAWS` per image). ``FERDataset`` derives that row from
(seed, epoch, index) with a counter-based hash (:func:`keyed_uniforms`), vectorised
over the batch and independent of global state, batch composition and worker count;
:func:`augment` draws it from a ``numpy.random.Generator`` for a single image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# torchvision.transforms.RandomErasing defaults: erased area fraction and aspect ratio.
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)
# RandomErasing's attempts at a rectangle that fits before it gives up.
ERASE_TRIES = 10
# Layout of a row of uniform draws: angle, zoom, shift x, shift y, flip, erase?, then
# ERASE_TRIES x (area, log ratio, top, left).
_ANGLE, _ZOOM, _SHIFT_X, _SHIFT_Y, _FLIP, _ERASE = range(6)
NUM_DRAWS = 6 + 4 * ERASE_TRIES


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
CONFIG_KEYS = {
    "CROP_PADDING": "crop_padding",
    "HFLIP": "hflip",
    "ROTATION": "rotation_deg",
    "SCALE": "scale",
    "RANDOM_ERASING": "random_erasing",
}


# ------------------------------------------------------------ random numbers
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_NOISE_STREAM = np.uint64(0xD1B54A32D192ED03)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wraps modulo 2**64 by design)."""
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


def _keys(seed: int, epoch: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """One 64-bit key per (seed, epoch, index)."""
    idx = np.asarray(indices, dtype=np.uint64).reshape(-1)
    with np.errstate(over="ignore"):
        head = _mix(np.array([seed], dtype=np.uint64) + _GOLDEN)
        head = _mix(head ^ (np.array([epoch], dtype=np.uint64) + _GOLDEN * np.uint64(2)))
        return _mix(head ^ (idx + _GOLDEN * np.uint64(3)))


def _counter_bits(keys: np.ndarray, count: int) -> np.ndarray:
    """(len(keys), count) uint64 hashes of (key, 1..count)."""
    counters = (np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN)[None, :]
    with np.errstate(over="ignore"):
        return _mix(keys[:, None] + counters)


def keyed_uniforms(
    seed: int, epoch: int, indices: Sequence[int] | np.ndarray, count: int = NUM_DRAWS
) -> np.ndarray:
    """(len(indices), count) float64 uniforms in [0, 1), each a pure function of
    (seed, epoch, index, position): no generator state, so any batch split, worker
    count or resume point draws the same numbers for the same sample."""
    bits = _counter_bits(_keys(seed, epoch, indices), count)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def keyed_noise(seed: int, epoch: int, indices: Sequence[int] | np.ndarray, size: int) -> np.ndarray:
    """(len(indices), size, size) uint8 noise, a pure function of (seed, epoch, index)."""
    with np.errstate(over="ignore"):
        keys = _keys(seed, epoch, indices) ^ _NOISE_STREAM
    bits = _counter_bits(keys, size * size)
    return (bits >> np.uint64(56)).astype(np.uint8).reshape(-1, size, size)


# ------------------------------------------------------------------ geometry
def affine_inverse_batch(
    in_size: tuple[int, int],
    out_size: int,
    angle_deg: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    flip: np.ndarray,
) -> np.ndarray:
    """(B, 6) PIL ``Image.AFFINE`` coefficients (output pixel -> input pixel) of the warps.

    Forward, about the image centres: flip, then rotate by ``angle_deg`` and zoom by
    ``scale``, then shift by ``shift`` (B, 2) input pixels (x, y), then resize from
    ``in_size`` (h, w) to ``out_size``.
    """
    h, w = in_size
    theta = np.radians(np.asarray(angle_deg, dtype=np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    scale = np.asarray(scale, dtype=np.float64)
    sign = np.where(np.asarray(flip, dtype=bool), -1.0, 1.0)
    # Inverse rotation/zoom, with the flip (its own inverse) applied last: the rows of
    # [[cos, sin], [-sin, cos]] / scale, the first row negated by a flip.
    i00, i01 = sign * cos / scale, sign * sin / scale
    i10, i11 = -sin / scale, cos / scale
    rx, ry = w / out_size, h / out_size
    half_out = out_size / 2.0
    shift = np.asarray(shift, dtype=np.float64).reshape(-1, 2)
    c0 = w / 2.0 - (i00 * rx + i01 * ry) * half_out - (i00 * shift[:, 0] + i01 * shift[:, 1])
    c1 = h / 2.0 - (i10 * rx + i11 * ry) * half_out - (i10 * shift[:, 0] + i11 * shift[:, 1])
    return np.stack([i00 * rx, i01 * ry, c0, i10 * rx, i11 * ry, c1], axis=1)


def affine_inverse(
    in_size: tuple[int, int],
    out_size: int,
    angle_deg: float,
    scale: float,
    shift: tuple[float, float],
    flip: bool,
) -> tuple[float, ...]:
    """The coefficients of :func:`affine_inverse_batch` for one image, as a tuple."""
    row = affine_inverse_batch(
        in_size,
        out_size,
        np.array([angle_deg]),
        np.array([scale]),
        np.array([shift], dtype=np.float64),
        np.array([flip]),
    )[0]
    return tuple(float(c) for c in row)


def warp_batch(images: np.ndarray, coefficients: np.ndarray, out_size: int) -> np.ndarray:
    """Bilinear affine warps of uint8 (B, H, W) images; outside pixels become 0.

    ``coefficients`` (B, 6) follow PIL's convention (pixel centres at i + 0.5), so
    one ``grid_sample`` (align_corners=False, the same convention) does the batch.
    """
    batch, height, width = images.shape
    # grid_sample wants input coordinates normalised to [-1, 1]: x_norm = 2 * x / W - 1.
    to_norm = np.array([2.0 / width] * 3 + [2.0 / height] * 3)
    rows = torch.from_numpy(np.asarray(coefficients, dtype=np.float64) * to_norm).view(batch, 1, 1, 2, 3)
    centres = torch.arange(out_size, dtype=torch.float64) + 0.5
    along_x = (centres.view(1, 1, -1, 1) * rows[..., 0]).to(torch.float32)  # B,1,S,2
    along_y = (centres.view(1, -1, 1, 1) * rows[..., 1] + rows[..., 2] - 1.0).to(torch.float32)  # B,S,1,2
    grid = along_x + along_y  # (B, S, S, 2): (x, y) per output pixel
    source = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(torch.float32)
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Bilinear weights sum to at most 1, so the rounded values stay within 0..255.
    return out.view(batch, out_size, out_size).round_().to(torch.uint8).numpy()


def warp(image: np.ndarray, coefficients: Sequence[float], out_size: int) -> np.ndarray:
    """Bilinear affine warp of one uint8 H x W image; outside pixels become 0."""
    return warp_batch(image[None], np.asarray(coefficients, dtype=np.float64)[None], out_size)[0]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """The image at ``size`` x ``size`` (no copy when it already is)."""
    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def erase_batch(images: np.ndarray, uniforms: np.ndarray, noise: Callable[[np.ndarray], np.ndarray]) -> None:
    """In place: fill one random rectangle of each image whose row draws an erase
    (RandomErasing's sampling rule: up to ERASE_TRIES rectangles, the first that fits)
    with ``noise(rows)``, uint8 (len(rows), H, W)."""
    _, h, w = images.shape
    tries = uniforms[:, 6:].reshape(len(uniforms), ERASE_TRIES, 4)
    area = h * w * (ERASE_AREA[0] + tries[..., 0] * (ERASE_AREA[1] - ERASE_AREA[0]))
    log_lo, log_hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    ratio = np.exp(log_lo + tries[..., 1] * (log_hi - log_lo))
    eh = np.round(np.sqrt(area * ratio)).astype(np.int64)
    ew = np.round(np.sqrt(area / ratio)).astype(np.int64)
    fits = (eh > 0) & (eh < h) & (ew > 0) & (ew < w)
    rows = np.flatnonzero(fits.any(axis=1))
    if rows.size == 0:
        return
    first = fits[rows].argmax(axis=1)
    eh, ew, chosen = eh[rows, first], ew[rows, first], tries[rows, first]
    top = np.floor(chosen[:, 2] * (h - eh + 1)).astype(np.int64)
    left = np.floor(chosen[:, 3] * (w - ew + 1)).astype(np.int64)
    ys, xs = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    inside = (
        (ys >= top[:, None, None])
        & (ys < (top + eh)[:, None, None])
        & (xs >= left[:, None, None])
        & (xs < (left + ew)[:, None, None])
    )
    images[rows] = np.where(inside, noise(rows), images[rows])


def augment_batch(
    images: np.ndarray, aug: FERAugment, uniforms: np.ndarray, noise: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Random training views of uint8 (B, H, W) images as uint8 (B, S, S), S = aug.image_size.

    ``uniforms`` (B, NUM_DRAWS) in [0, 1) decide every parameter; each position has
    one meaning whatever is switched on, so turning one augmentation off leaves the
    others' draws unchanged. ``noise(rows)`` gives the erasing fill of those rows.
    """
    uniforms = np.asarray(uniforms, dtype=np.float64)
    angle = aug.rotation_deg * (2.0 * uniforms[:, _ANGLE] - 1.0)
    zoom = aug.scale[0] + uniforms[:, _ZOOM] * (aug.scale[1] - aug.scale[0])
    span = 2 * aug.crop_padding + 1
    shift = np.floor(uniforms[:, [_SHIFT_X, _SHIFT_Y]] * span) - aug.crop_padding
    flip = (uniforms[:, _FLIP] < 0.5) & aug.hflip
    coefficients = affine_inverse_batch(images.shape[1:], aug.image_size, angle, zoom, shift, flip)
    out = warp_batch(images, coefficients, aug.image_size)
    erasing = np.flatnonzero(uniforms[:, _ERASE] < aug.random_erasing)
    if erasing.size:
        sub = out[erasing]
        erase_batch(sub, uniforms[erasing], lambda rows: noise(erasing[rows]))
        out[erasing] = sub
    return out


def augment(image: np.ndarray, aug: FERAugment, rng: np.random.Generator) -> np.ndarray:
    """One random training view of a uint8 H x W image, as uint8 S x S (S = aug.image_size),
    with its draws taken from ``rng``."""
    uniforms = rng.random((1, NUM_DRAWS))
    noise = rng.integers(0, 256, size=(1, aug.image_size, aug.image_size), dtype=np.uint8)
    return augment_batch(image[None], aug, uniforms, lambda rows: noise[rows])[0]
