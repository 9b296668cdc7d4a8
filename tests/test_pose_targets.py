"""Heatmap targets, decoding, flips and the loss of the pose workload."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from hrnet.inference import flip_back, flip_test, get_final_preds, get_max_preds, refine_quarter_pixel
from hrnet.loss import JointsMSELoss, JointsOHKMMSELoss
from hrnet.targets import generate_heatmaps
from hrnet.transforms import (
    COCO_FLIP_PAIRS,
    affine_points,
    box_to_center_scale,
    compose_affine,
    fliplr_joints,
    get_affine_transform,
    horizontal_flip_matrix,
    warp_image,
)

IMAGE_SIZE = (96, 128)  # (w, h) network input
HEATMAP_SIZE = (24, 32)


def _official_target(joints: np.ndarray, vis: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The official per-joint loop of JointsDataset.generate_target, as a reference."""
    hm_w, hm_h = HEATMAP_SIZE
    stride = np.array(IMAGE_SIZE) / np.array(HEATMAP_SIZE)
    target = np.zeros((len(joints), hm_h, hm_w), dtype=np.float32)
    weight = (vis > 0).astype(np.float32).reshape(-1, 1)
    tmp = sigma * 3
    for j in range(len(joints)):
        mu_x, mu_y = int(joints[j, 0] / stride[0] + 0.5), int(joints[j, 1] / stride[1] + 0.5)
        ul, br = [int(mu_x - tmp), int(mu_y - tmp)], [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
        if ul[0] >= hm_w or ul[1] >= hm_h or br[0] < 0 or br[1] < 0:
            weight[j] = 0
            continue
        size = 2 * tmp + 1
        x = np.arange(0, size, 1, np.float32)
        y = x[:, None]
        g = np.exp(-((x - size // 2) ** 2 + (y - size // 2) ** 2) / (2 * sigma**2))
        gx = max(0, -ul[0]), min(br[0], hm_w) - ul[0]
        gy = max(0, -ul[1]), min(br[1], hm_h) - ul[1]
        ix = max(0, ul[0]), min(br[0], hm_w)
        iy = max(0, ul[1]), min(br[1], hm_h)
        if weight[j] > 0.5:
            target[j][iy[0] : iy[1], ix[0] : ix[1]] = g[gy[0] : gy[1], gx[0] : gx[1]]
    return target, weight


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_vectorised_targets_equal_the_official_loop(sigma: float) -> None:
    rng = np.random.default_rng(0)
    joints = rng.uniform(-30, 140, size=(17, 2))
    vis = rng.integers(0, 3, size=17).astype(float)
    target, weight = generate_heatmaps(joints, vis, IMAGE_SIZE, HEATMAP_SIZE, sigma)
    ref_target, ref_weight = _official_target(joints, vis, sigma)
    np.testing.assert_allclose(target, ref_target, atol=1e-6)
    np.testing.assert_array_equal(weight, ref_weight)
    assert target.shape == (17, 32, 24) and weight.shape == (17, 1)


def test_invisible_and_off_map_joints_get_zero_weight_and_empty_maps() -> None:
    joints = np.tile([[48.0, 64.0]], (17, 1))
    joints[3] = [-200.0, 64.0]  # far left of the crop: the whole gaussian misses the map
    joints[4] = [48.0, 500.0]  # far below
    vis = np.ones(17)
    vis[7] = 0
    target, weight = generate_heatmaps(joints, vis, IMAGE_SIZE, HEATMAP_SIZE, 2.0)
    assert weight[[3, 4, 7], 0].tolist() == [0.0, 0.0, 0.0]
    assert np.all(target[[3, 4, 7]] == 0)
    assert weight.sum() == 14
    assert target[0].max() == pytest.approx(1.0)


def test_known_joints_decode_back_through_the_inverse_affine() -> None:
    """Image joints -> crop affine -> heatmaps -> get_final_preds -> image joints."""
    rng = np.random.default_rng(1)
    center, scale = box_to_center_scale([40.0, 30.0, 70.0, 110.0], IMAGE_SIZE[0] / IMAGE_SIZE[1])
    crop = get_affine_transform(center, scale, 0, IMAGE_SIZE)
    to_image = get_affine_transform(center, scale, 0, HEATMAP_SIZE, inv=True)
    stride = IMAGE_SIZE[0] / HEATMAP_SIZE[0]
    heatmap_px_in_image = scale[0] * 200 / HEATMAP_SIZE[0]

    # Joints that land on heatmap pixel centres decode exactly (the neighbours are
    # symmetric, so the quarter-pixel step is zero).
    on_grid = rng.integers(2, 20, size=(17, 2)).astype(float)
    joints = affine_points(on_grid, to_image)
    crop_joints = affine_points(joints, crop)
    np.testing.assert_allclose(crop_joints / stride, on_grid, atol=1e-6)
    target, _ = generate_heatmaps(crop_joints, np.ones(17), IMAGE_SIZE, HEATMAP_SIZE, 2.0)
    preds, maxvals = get_final_preds(target[None], center[None], scale[None], post_process=True)
    np.testing.assert_allclose(preds[0], joints, atol=1e-3)
    np.testing.assert_allclose(maxvals, 1.0)

    # Arbitrary joints decode within half a heatmap pixel per axis.
    joints = rng.uniform([45, 35], [105, 135], size=(17, 2))
    target, _ = generate_heatmaps(affine_points(joints, crop), np.ones(17), IMAGE_SIZE, HEATMAP_SIZE, 2.0)
    preds, _ = get_final_preds(torch.from_numpy(target[None]), center[None], scale[None])
    assert np.abs(preds[0] - joints).max() <= 0.5 * heatmap_px_in_image + 1e-6


def test_quarter_pixel_step_goes_toward_the_higher_neighbour() -> None:
    heatmaps = np.zeros((1, 2, 10, 10), dtype=np.float32)
    heatmaps[0, 0, 5, 4] = 1.0
    heatmaps[0, 0, 5, 5] = 0.5  # right neighbour higher than left
    heatmaps[0, 0, 4, 4] = 0.3  # upper neighbour higher than lower
    heatmaps[0, 1, 0, 9] = 1.0  # on the border: no refinement
    coords, maxvals = get_max_preds(heatmaps)
    assert coords[0].tolist() == [[4.0, 5.0], [9.0, 0.0]]
    refined = refine_quarter_pixel(heatmaps, coords)
    assert refined[0].tolist() == [[4.25, 4.75], [9.0, 0.0]]
    assert maxvals[0, :, 0].tolist() == [1.0, 1.0]
    empty, _ = get_max_preds(-np.ones((1, 1, 4, 4), dtype=np.float32))
    assert empty.tolist() == [[[0.0, 0.0]]]


def test_pil_warp_follows_opencv_pixel_centres() -> None:
    """warp_image(M) samples the source at M^-1(p) with pixel centres at integers."""
    rng = np.random.default_rng(2)
    source = rng.integers(0, 255, size=(40, 50, 3)).astype(np.uint8)
    matrix = get_affine_transform(np.array([24.3, 19.7]), np.array([0.12, 0.16]), 17.0, (30, 40))
    warped = np.asarray(warp_image(Image.fromarray(source), matrix, (30, 40))).astype(float)
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:40, 0:30]
    src = affine_points(np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(float), inverse)
    inside = (src[:, 0] > 1) & (src[:, 0] < 48) & (src[:, 1] > 1) & (src[:, 1] < 38)
    for c in range(3):
        expected = ndimage.map_coordinates(source[..., c].astype(float), [src[:, 1], src[:, 0]], order=1)
        got = warped[..., c].reshape(-1)
        # PIL rounds bilinear weights to 8 bits; a half-pixel slip would differ by tens of levels.
        assert np.abs(got[inside] - expected[inside]).max() <= 2.0


def test_flipping_twice_restores_image_joints_and_heatmaps() -> None:
    rng = np.random.default_rng(3)
    width = 37
    joints = rng.uniform(0, width - 1, size=(17, 2))
    vis = np.ones(17)
    once, vis_once = fliplr_joints(joints, vis, width, COCO_FLIP_PAIRS)
    assert once[5, 0] == pytest.approx(width - 1 - joints[6, 0])  # left shoulder <- mirrored right one
    twice, vis_twice = fliplr_joints(once, vis_once, width, COCO_FLIP_PAIRS)
    np.testing.assert_allclose(twice, joints)
    np.testing.assert_array_equal(vis_twice, vis)

    image = Image.fromarray(rng.integers(0, 255, size=(20, width, 3)).astype(np.uint8))
    flip = horizontal_flip_matrix(width)
    np.testing.assert_allclose(compose_affine(flip, flip), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    flipped = warp_image(image, flip, (width, 20))
    np.testing.assert_array_equal(np.asarray(flipped), np.asarray(image)[:, ::-1])
    np.testing.assert_array_equal(np.asarray(warp_image(flipped, flip, (width, 20))), np.asarray(image))

    heatmaps = torch.rand(2, 17, 8, 6)
    assert torch.equal(flip_back(flip_back(heatmaps, COCO_FLIP_PAIRS), COCO_FLIP_PAIRS), heatmaps)
    assert torch.equal(flip_back(heatmaps, COCO_FLIP_PAIRS)[:, 1], heatmaps[:, 2].flip(2))


def test_flip_test_matches_the_official_numpy_procedure() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 17, 3, padding=1), torch.nn.AvgPool2d(4)).eval()
    inputs = torch.randn(2, 3, 32, 24)
    for shift in (True, False):
        ours = flip_test(model, inputs, COCO_FLIP_PAIRS, shift_heatmap=shift)
        with torch.no_grad():
            output = model(inputs).numpy()
            flipped = model(torch.from_numpy(np.flip(inputs.numpy(), 3).copy())).numpy()[:, :, :, ::-1].copy()
        for a, b in COCO_FLIP_PAIRS:
            flipped[:, [a, b]] = flipped[:, [b, a]]
        if shift:
            flipped[:, :, :, 1:] = flipped.copy()[:, :, :, :-1]
        np.testing.assert_allclose(ours.numpy(), (output + flipped) * 0.5, atol=1e-6)


def test_joints_mse_loss_matches_the_official_per_joint_loop() -> None:
    torch.manual_seed(0)
    output, target = torch.rand(3, 17, 8, 6), torch.rand(3, 17, 8, 6)
    weight = (torch.rand(3, 17, 1) > 0.3).float()
    mse = torch.nn.MSELoss()
    ref = (
        sum(
            0.5 * mse(output[:, j].reshape(3, -1) * weight[:, j], target[:, j].reshape(3, -1) * weight[:, j])
            for j in range(17)
        )
        / 17
    )
    assert JointsMSELoss(True)(output, target, weight).item() == pytest.approx(ref.item(), rel=1e-6)
    unweighted = sum(0.5 * mse(output[:, j], target[:, j]) for j in range(17)) / 17
    assert JointsMSELoss(False)(output, target, weight).item() == pytest.approx(unweighted.item(), rel=1e-6)
    # A joint with weight 0 contributes nothing, whatever the prediction.
    weight[:, 4] = 0
    changed = output.clone()
    changed[:, 4] += 5
    assert JointsMSELoss(True)(changed, target, weight).item() == pytest.approx(
        JointsMSELoss(True)(output, target, weight).item(), rel=1e-6
    )


def test_ohkm_loss_averages_the_topk_hardest_joints() -> None:
    torch.manual_seed(1)
    output, target = torch.rand(2, 17, 4, 4), torch.rand(2, 17, 4, 4)
    weight = torch.ones(2, 17, 1)
    per_joint = 0.5 * ((output - target) ** 2).mean(dim=(2, 3))
    expected = per_joint.topk(8, dim=1).values.mean()
    assert JointsOHKMMSELoss(True, topk=8)(output, target, weight).item() == pytest.approx(expected.item())
