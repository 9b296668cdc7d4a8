"""Gaussian heatmap targets, all joints of a person at once.

Matches the official ``JointsDataset.generate_target``: each joint's peak sits on the
heatmap pixel nearest to the joint (``int(x / stride + 0.5)``), the unnormalised
gaussian (peak 1) is cut to a ``±3·sigma`` window, and a joint whose window misses the
heatmap entirely, or that is not labelled, gets weight 0 and an empty map.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def generate_heatmaps(joints: np.ndarray, visibility: np.ndarray, image_size: Sequence[int],
                      heatmap_size: Sequence[int], sigma: float,
                      joints_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Targets for one person.

    ``joints``: (J, >=2) positions in network-input pixels; ``visibility``: (J,) > 0 for
    labelled joints; sizes are (w, h). Returns ``target`` (J, h, w) float32 and
    ``target_weight`` (J, 1) float32.
    """
    joints = np.asarray(joints, dtype=np.float64)
    num_joints = len(joints)
    hm_w, hm_h = int(heatmap_size[0]), int(heatmap_size[1])
    stride = np.asarray(image_size, dtype=np.float64) / np.asarray([hm_w, hm_h], dtype=np.float64)
    weight = (np.asarray(visibility, dtype=np.float64).reshape(num_joints) > 0).astype(np.float32)

    radius = sigma * 3
    # int() truncates toward zero in the official code; np.trunc keeps that for x < 0.
    mu = np.trunc(joints[:, :2] / stride + 0.5)
    upper_left = np.trunc(mu - radius)
    bottom_right = np.trunc(mu + radius + 1)
    outside = ((upper_left[:, 0] >= hm_w) | (upper_left[:, 1] >= hm_h)
               | (bottom_right[:, 0] < 0) | (bottom_right[:, 1] < 0))
    weight[outside] = 0.0

    xs = np.arange(hm_w, dtype=np.float64)
    ys = np.arange(hm_h, dtype=np.float64)
    dx = xs[None, :] - mu[:, 0:1]
    dy = ys[None, :] - mu[:, 1:2]
    # The window is [upper_left, bottom_right) around mu, exactly as the official slices.
    in_x = (xs[None, :] >= upper_left[:, 0:1]) & (xs[None, :] < bottom_right[:, 0:1])
    in_y = (ys[None, :] >= upper_left[:, 1:2]) & (ys[None, :] < bottom_right[:, 1:2])
    gauss_x = np.exp(-dx ** 2 / (2 * sigma ** 2)) * in_x
    gauss_y = np.exp(-dy ** 2 / (2 * sigma ** 2)) * in_y
    target = gauss_y[:, :, None] * gauss_x[:, None, :] * (weight > 0.5)[:, None, None]

    if joints_weight is not None:
        weight = weight * np.asarray(joints_weight, dtype=np.float32).reshape(num_joints)
    return target.astype(np.float32), weight.reshape(num_joints, 1).astype(np.float32)
