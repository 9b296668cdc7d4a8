"""Gaussian heatmap targets, all joints of a person at once.

Matches the official ``JointsDataset.generate_target``: each joint's peak sits on the
heatmap pixel nearest to the joint (``int(x / stride + 0.5)``), the unnormalised
gaussian (peak 1) is cut to a ``±3·sigma`` window, and a joint whose window misses the
heatmap entirely, or that is not labelled, gets weight 0 and an empty map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def generate_heatmaps(
    joints: np.ndarray,
    visibility: np.ndarray,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
    joints_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets for one person.

    ``joints``: (J, >=2) positions in network-input pixels; ``visibility``: (J,) > 0 for
    labelled joints; sizes are (w, h). Returns ``target`` (J, h, w) float32 and
    ``target_weight`` (J, 1) float32.
    """
    joints = np.asarray(joints, dtype=np.float64)
    target, weight = generate_heatmaps_batch(
        joints[None],
        np.asarray(visibility).reshape(1, len(joints)),
        image_size,
        heatmap_size,
        sigma,
        joints_weight,
    )
    return target[0], weight[0]


def generate_heatmaps_batch(
    joints: np.ndarray,
    visibility: np.ndarray,
    image_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
    joints_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Targets for N persons at once: ``joints`` (N, J, >=2), ``visibility`` (N, J).
    Returns ``target`` (N, J, h, w) float32 and ``target_weight`` (N, J, 1) float32."""
    joints = np.asarray(joints, dtype=np.float64)
    n, num_joints = joints.shape[:2]
    hm_w, hm_h = int(heatmap_size[0]), int(heatmap_size[1])
    stride = np.asarray(image_size, dtype=np.float64) / np.asarray([hm_w, hm_h], dtype=np.float64)
    weight = (np.asarray(visibility, dtype=np.float64).reshape(n, num_joints) > 0).astype(np.float32)

    radius = sigma * 3
    # int() truncates toward zero in the official code; np.trunc keeps that for x < 0.
    mu = np.trunc(joints[..., :2] / stride + 0.5)  # (N, J, 2)
    upper_left = np.trunc(mu - radius)
    bottom_right = np.trunc(mu + radius + 1)
    outside = (
        (upper_left[..., 0] >= hm_w)
        | (upper_left[..., 1] >= hm_h)
        | (bottom_right[..., 0] < 0)
        | (bottom_right[..., 1] < 0)
    )
    weight[outside] = 0.0

    # Only the +-radius window of each map is written, as in the official code: the
    # window's pixel positions per axis, (N, J, 2, span), clipped to the map.
    span = int(np.ceil(2 * radius)) + 2
    pos = upper_left[..., None] + np.arange(span, dtype=np.float64)
    on_map = (pos >= 0) & (pos < bottom_right[..., None]) & (pos < np.array([hm_w, hm_h])[:, None])
    gauss = (np.exp(-((pos - mu[..., None]) ** 2) / (2 * sigma**2)) * on_map).astype(np.float32)
    patch = gauss[:, :, 1, :, None] * gauss[:, :, 0, None, :]  # (N, J, span_y, span_x)
    keep = on_map[:, :, 1, :, None] & on_map[:, :, 0, None, :] & (weight > 0.5)[..., None, None]
    pos_i = pos.astype(np.int64)
    maps = np.arange(n * num_joints, dtype=np.int64).reshape(n, num_joints, 1, 1) * (hm_h * hm_w)
    flat = maps + pos_i[:, :, 1, :, None] * hm_w + pos_i[:, :, 0, None, :]
    target = np.zeros(n * num_joints * hm_h * hm_w, dtype=np.float32)
    target[flat[keep]] = patch[keep]
    target = target.reshape(n, num_joints, hm_h, hm_w)

    if joints_weight is not None:
        weight = weight * np.asarray(joints_weight, dtype=np.float32).reshape(1, num_joints)
    return target, weight.reshape(n, num_joints, 1).astype(np.float32)
