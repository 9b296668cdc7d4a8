"""The batch-vectorised pose paths equal their per-person forms: heatmap targets and
the inverse crop of get_final_preds."""

from __future__ import annotations

import numpy as np

from hrnet.inference import transform_preds, transform_preds_batch
from hrnet.targets import generate_heatmaps, generate_heatmaps_batch


def test_batch_targets_equal_per_person_targets() -> None:
    rng = np.random.default_rng(0)
    joints = rng.uniform(-30, [222, 286], size=(6, 17, 2))  # some joints off the map
    vis = (rng.random((6, 17)) > 0.3).astype(np.float32)
    weights = rng.uniform(1, 1.5, size=17).astype(np.float32)
    for sigma in (2.0, 3.0, 2.5):
        target, weight = generate_heatmaps_batch(joints, vis, (192, 256), (48, 64), sigma, weights)
        assert target.shape == (6, 17, 64, 48) and weight.shape == (6, 17, 1)
        for i in range(6):
            one_t, one_w = generate_heatmaps(joints[i], vis[i], (192, 256), (48, 64), sigma, weights)
            np.testing.assert_array_equal(target[i], one_t)
            np.testing.assert_array_equal(weight[i], one_w)
        peaks = target.reshape(6, 17, -1).max(axis=2)
        assert (peaks[weight[..., 0] == 0] == 0).all() and (peaks[weight[..., 0] > 0] > 0).all()
        # A labelled joint well inside the map peaks at exactly 1 on its nearest pixel.
        inside = (
            (joints[..., 0] > 20) & (joints[..., 0] < 172) & (joints[..., 1] > 20) & (joints[..., 1] < 236)
        )
        np.testing.assert_allclose(peaks[inside & (vis > 0)], 1.0, rtol=1e-6)


def test_closed_form_inverse_crop_equals_the_three_point_affine() -> None:
    rng = np.random.default_rng(1)
    coords = rng.uniform(0, 48, size=(5, 17, 2))
    center = rng.uniform(50, 600, size=(5, 2))
    scale = rng.uniform(0.3, 4.0, size=(5, 2))
    batch = transform_preds_batch(coords, center, scale, (48, 64))
    for i in range(5):
        np.testing.assert_allclose(
            batch[i], transform_preds(coords[i], center[i], scale[i], (48, 64)), rtol=0, atol=1e-4
        )  # the 3-point form rounds to float32
