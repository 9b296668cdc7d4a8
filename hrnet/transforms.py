"""Geometry of the pose pipeline: boxes to center/scale, the crop affine, flips, half-body.

Conventions follow the official HRNet code (``lib/utils/transforms.py``,
``lib/dataset/JointsDataset.py``): a person is a ``center`` (x, y) in image pixels and
a ``scale`` (w, h) in units of ``PIXEL_STD`` = 200 pixels; pixel ``i`` has its centre at
coordinate ``i`` (OpenCV's convention). The crop affine maps the image onto the network
input, and the same affine with the heatmap size maps heatmap coordinates back, so the
decode in ``hrnet.inference`` inverts the crop exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

PIXEL_STD = 200.0
# A detected or annotated box is padded by this factor before cropping.
BOX_PADDING = 1.25
# Half-body crops are enlarged by this factor around the selected joints.
HALF_BODY_PADDING = 1.5

COCO_KEYPOINT_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# 1-based joint pairs, as COCO's category record stores them.
COCO_SKELETON = (
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (9, 11),
    (2, 3),
    (1, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
)
# 0-based left/right pairs swapped by a horizontal flip.
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_UPPER_BODY_IDS = tuple(range(11))
# Official per-joint loss weights (LOSS.USE_DIFFERENT_JOINTS_WEIGHT).
COCO_JOINTS_WEIGHT = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5)


def flip_permutation(num_joints: int, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
    """Index array that swaps every left joint with its right partner."""
    perm = np.arange(num_joints)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def box_to_center_scale(
    box: Sequence[float], aspect_ratio: float, padding: float = BOX_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """``[x, y, w, h]`` -> (center, scale): the box grown to ``aspect_ratio`` (w/h),
    in units of ``PIXEL_STD``, padded by ``padding``."""
    x, y, w, h = (float(v) for v in box[:4])
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    return center, _aspect_scale(w, h, aspect_ratio, padding)


def _aspect_scale(w: float, h: float, aspect_ratio: float, padding: float) -> np.ndarray:
    """The official scale: (w, h) grown to ``aspect_ratio``, over PIXEL_STD, padded."""
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * padding


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def get_affine_transform(
    center: Sequence[float],
    scale: Sequence[float] | float,
    rot: float,
    output_size: Sequence[int],
    shift: Sequence[float] = (0.0, 0.0),
    inv: bool = False,
) -> np.ndarray:
    """2x3 affine mapping the box (center, scale*200, rotated by ``rot`` degrees) onto
    an ``output_size`` (w, h) image; ``inv`` gives the reverse map.

    Only the box width sets the zoom (as in the official code); the aspect fix of
    ``box_to_center_scale`` makes the height consistent with it.
    """
    scale = np.asarray(scale, dtype=np.float64)
    if scale.ndim == 0:
        scale = np.array([scale, scale])
    center = np.asarray(center, dtype=np.float64)
    scale_px = scale * PIXEL_STD
    src_w = scale_px[0]
    dst_w, dst_h = float(output_size[0]), float(output_size[1])
    rot_rad = np.pi * rot / 180.0
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    src_dir = np.array([src_w * 0.5 * sn, -src_w * 0.5 * cs])
    dst_dir = np.array([0.0, -dst_w * 0.5])
    origin = center + scale_px * np.asarray(shift, dtype=np.float64)
    src = np.stack([origin, origin + src_dir, np.zeros(2)])
    dst = np.stack(
        [np.array([dst_w * 0.5, dst_h * 0.5]), np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir, np.zeros(2)]
    )
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inv:
        src, dst = dst, src
    return _affine_from_points(src, dst)


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix taking three ``src`` points onto three ``dst`` points."""
    homogeneous = np.concatenate([src, np.ones((3, 1))], axis=1)
    return np.linalg.solve(homogeneous, dst).T


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to ``points[..., :2]``; returns an array shaped ``points[..., :2]``."""
    pts = np.asarray(points, dtype=np.float64)[..., :2]
    return pts @ matrix[:, :2].T + matrix[:, 2]


def horizontal_flip_matrix(width: int) -> np.ndarray:
    """2x3 affine of a left-right flip of an image ``width`` pixels wide (x -> w - 1 - x)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine of ``outer(inner(p))``."""
    full_outer = np.vstack([outer, [0.0, 0.0, 1.0]])
    full_inner = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (full_outer @ full_inner)[:2]


def warp_image(
    image: Image.Image | np.ndarray, matrix: np.ndarray, output_size: Sequence[int], flip: bool = False
) -> np.ndarray:
    """The official crop: ``cv2.warpAffine(image, matrix, output_size, INTER_LINEAR,
    BORDER_CONSTANT, 0)`` (pixel centres at integers, 8-bit rounding, the edge pixel
    blended into the black border over one source pixel). Returns an (H, W[, C]) uint8 array.

    ``flip`` mirrors the image left-right first, as the official ``JointsDataset`` does
    (``image[:, ::-1]``) before warping with the crop of the flipped centre; folding the
    flip into ``matrix`` instead would move OpenCV's 1/32-pixel sample grid.

    OpenCV rather than Pillow: Pillow truncates where OpenCV rounds and cuts the border
    band off (up to 127 grey levels apart there), and OpenCV is about 5x faster here.
    """
    pixels = np.asarray(image, dtype=np.uint8)
    if flip:
        pixels = pixels[:, ::-1]
    size = (int(output_size[0]), int(output_size[1]))
    return cv2.warpAffine(
        np.ascontiguousarray(pixels),
        np.asarray(matrix, dtype=np.float64)[:2],
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def fliplr_joints(
    joints: np.ndarray, visibility: np.ndarray, width: int, flip_pairs: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Joints of the left-right flipped image: x mirrored, left/right swapped, and
    (as the official code does) invisible joints zeroed."""
    perm = flip_permutation(len(joints), flip_pairs)
    flipped = np.array(joints, dtype=np.float64, copy=True)
    flipped[:, 0] = width - 1 - flipped[:, 0]
    flipped = flipped[perm]
    vis = np.asarray(visibility)[perm].copy()
    flipped[:, :2] *= (vis > 0)[:, None]
    return flipped, vis


def half_body_center_scale(
    joints: np.ndarray,
    visibility: np.ndarray,
    prefer_upper: bool,
    aspect_ratio: float,
    upper_body_ids: Sequence[int] = COCO_UPPER_BODY_IDS,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Center/scale of a crop around the upper (``prefer_upper``, when it has more than
    two visible joints) or the lower body, or None when fewer than two visible joints
    are left. The official code sets ``prefer_upper = randn() < 0.5`` (true ~69%)."""
    visible = np.asarray(visibility) > 0
    is_upper = np.isin(np.arange(len(joints)), upper_body_ids)
    upper = joints[visible & is_upper, :2]
    lower = joints[visible & ~is_upper, :2]
    if prefer_upper and len(upper) > 2:
        selected = upper
    else:
        selected = lower if len(lower) > 2 else upper
    if len(selected) < 2:
        return None
    selected = selected.astype(np.float32)
    center = selected.mean(axis=0)
    w, h = selected.max(axis=0) - selected.min(axis=0)
    return center, _aspect_scale(float(w), float(h), aspect_ratio, HALF_BODY_PADDING)
