"""The person crop against OpenCV itself, and the OKS NMS tie order against the official code."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from harness.config import load_config
from hrnet.coco import COCOKeypoints
from hrnet.inference import oks_nms, soft_oks_nms
from hrnet.synth import SynthSpec, generate
from hrnet.transforms import get_affine_transform, warp_image


def _cv2_crop(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(
        image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _official_affine(center, scale, rot, output_size) -> np.ndarray:
    """``lib/utils/transforms.py:get_affine_transform`` of the official repo (float32 points)."""
    scale_tmp = np.array(scale, dtype=np.float32) * 200.0
    src_w, dst_w, dst_h = scale_tmp[0], output_size[0], output_size[1]
    rot_rad = np.pi * rot / 180
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    src_dir = np.array([0 * cs - src_w * -0.5 * sn, 0 * sn + src_w * -0.5 * cs], np.float32)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + src_dir
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    for pts in (src, dst):
        direct = pts[0] - pts[1]
        pts[2, :] = pts[1] + np.array([-direct[1], direct[0]], dtype=np.float32)
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


@pytest.mark.parametrize("rotation", [0.0, 17.0, -40.0])
def test_crop_equals_cv2_warp_affine_including_the_border_band(rotation: float) -> None:
    rng = np.random.default_rng(4)
    # Smooth content plus noise, mid-grey, so the black border blend is visible everywhere.
    ys, xs = np.mgrid[0:60, 0:80]
    base = 120 + 60 * np.sin(xs / 7.0)[..., None] * np.cos(ys / 5.0)[..., None]
    source = np.clip(base + rng.normal(0, 20, (60, 80, 3)), 0, 255).astype(np.uint8)
    # A crop larger than the image and off-centre: a wide band outside the source.
    matrix = get_affine_transform(np.array([12.3, 50.7]), np.array([0.43, 0.57]), rotation, (48, 64))
    expected = _cv2_crop(source, matrix, (48, 64))
    for given in (source, Image.fromarray(source)):
        got = warp_image(given, matrix, (48, 64))
        assert got.dtype == np.uint8 and got.shape == (64, 48, 3)
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1

    # The border band: outputs whose source point lies within one pixel outside the image.
    inverse = cv2.invertAffineTransform(matrix)
    out_y, out_x = np.mgrid[0:64, 0:48]
    src_x = inverse[0, 0] * out_x + inverse[0, 1] * out_y + inverse[0, 2]
    src_y = inverse[1, 0] * out_x + inverse[1, 1] * out_y + inverse[1, 2]
    outside = (src_x < -0.05) | (src_x > 79.05) | (src_y < -0.05) | (src_y > 59.05)
    band = outside & (src_x > -0.95) & (src_x < 79.95) & (src_y > -0.95) & (src_y < 59.95)
    assert band.sum() > 10
    got = warp_image(source, matrix, (48, 64)).astype(int)
    # OpenCV blends the edge pixel into black there (Pillow cut it to 0); far outside is black.
    assert (got[band].max(axis=1) > 0).mean() > 0.9
    far = (src_x < -1.05) | (src_x > 80.05) | (src_y < -1.05) | (src_y > 60.05)
    assert far.any() and got[far].max() == 0


def test_flipped_crop_is_the_official_flip_then_warp() -> None:
    rng = np.random.default_rng(5)
    source = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    center = np.array([70 - 30.4 - 1, 22.9])
    matrix = get_affine_transform(center, np.array([0.2, 0.27]), 11.0, (24, 32))
    expected = _cv2_crop(np.ascontiguousarray(source[:, ::-1]), matrix, (24, 32))
    np.testing.assert_array_equal(warp_image(source, matrix, (24, 32), flip=True), expected)


def test_dataset_crop_matches_the_official_pipeline(tmp_path) -> None:
    """COCOKeypoints items against the official JointsDataset steps: cv2.imread, BGR->RGB,
    flip by ``[:, ::-1]``, ``cv2.warpAffine`` with the official float32 affine."""
    root = str(tmp_path / "coco")
    generate(root, SynthSpec(train_images=6, val_images=2, seed=1))
    cfg = load_config(
        "configs/pose/tiny_synthetic.yaml",
        ["DATASET.ROOT", root, "DATASET.COLOR_RGB", "True", "DATASET.ROT_FACTOR", "40"],
    )
    dataset = COCOKeypoints(cfg, "train", is_train=True)
    size = tuple(cfg.MODEL.IMAGE_SIZE)
    flips = 0
    for index in range(min(len(dataset), 12)):
        item = dataset[(0, index)]
        flipped = bool(np.random.default_rng([cfg.SEED, 0, index]).random(4)[2] <= 0.5)
        flips += flipped
        image = cv2.cvtColor(cv2.imread(dataset.image_paths[item["image_id"]]), cv2.COLOR_BGR2RGB)
        if flipped:
            image = image[:, ::-1, :]
        matrix = _official_affine(item["center"].numpy(), item["scale"].numpy(), item["rotation"], size)
        official = _cv2_crop(np.ascontiguousarray(image), matrix, size)
        ours = item["input"].permute(1, 2, 0).numpy()
        assert np.abs(ours.astype(int) - official.astype(int)).max() <= 1, f"item {index}"
    assert 0 < flips < min(len(dataset), 12)


def _official_oks_nms_order(scores: np.ndarray) -> list[int]:
    """The order the official ``oks_nms`` visits poses, ``scores.argsort()[::-1]``, with
    the stable sort its NumPy 1.x used on short arrays."""
    return [int(i) for i in scores.argsort(kind="stable")[::-1]]


def _official_soft_oks_nms(keypoints, scores, areas, thresh, max_dets=20) -> list[int]:
    """``lib/nms/nms.py:soft_oks_nms`` of the official repo (gaussian rescoring)."""
    from hrnet.inference import oks_iou

    order = scores.argsort(kind="stable")[::-1]
    scores = scores[order]
    keep = []
    while order.size > 0 and len(keep) < max_dets:
        i = order[0]
        overlap = oks_iou(keypoints[i], keypoints[order[1:]], areas[i], areas[order[1:]])
        order = order[1:]
        scores = scores[1:] * np.exp(-(overlap**2) / thresh)
        tmp = scores.argsort(kind="stable")[::-1]
        order, scores = order[tmp], scores[tmp]
        keep.append(int(i))
    return keep


def test_oks_nms_keeps_the_last_of_equal_scores_first() -> None:
    rng = np.random.default_rng(6)
    # Far-apart poses (nothing suppressed), so the kept list is the visiting order.
    num = 9
    keypoints = np.zeros((num, 17, 3))
    keypoints[:, :, :2] = rng.uniform(0, 5, (num, 17, 2)) + np.arange(num)[:, None, None] * 1000
    keypoints[:, :, 2] = 1.0
    areas = np.full(num, 400.0)
    scores = np.array([0.0, 0.5, 0.0, 0.9, 0.5, 0.0, 0.9, 0.2, 0.0])
    keep = oks_nms(keypoints, scores, areas, 0.9)
    assert keep == [6, 3, 4, 1, 7, 8, 5, 2, 0]
    assert keep == _official_oks_nms_order(scores)
    official_soft = _official_soft_oks_nms(keypoints, scores, areas, 0.9)
    assert soft_oks_nms(keypoints, scores, areas, 0.9) == official_soft

    # A crowded image: equal scores still come last index first.
    many = 40
    crowd = np.zeros((many, 17, 3))
    crowd[:, :, :2] = rng.uniform(0, 5, (many, 17, 2)) + np.arange(many)[:, None, None] * 1000
    crowd_scores = rng.choice([0.0, 0.3, 0.7], size=many)
    crowd_keep = oks_nms(crowd, crowd_scores, np.full(many, 400.0), 0.9)
    assert crowd_keep == _official_oks_nms_order(crowd_scores)
    for value in (0.0, 0.3, 0.7):
        tied = [i for i in crowd_keep if crowd_scores[i] == value]
        assert len(tied) > 3 and tied == sorted(tied, reverse=True)

    # Identical poses with equal scores: the official code keeps the last one.
    same = np.repeat(keypoints[:1], 3, axis=0)
    assert oks_nms(same, np.zeros(3), np.full(3, 400.0), 0.9) == [2]
    assert soft_oks_nms(same, np.zeros(3), np.full(3, 400.0), 0.9)[0] == 2
