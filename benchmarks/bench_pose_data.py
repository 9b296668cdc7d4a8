"""P4, pose data path: heatmap targets and get_final_preds for a batch, ours vs the official
per-joint loops, with identical outputs checked; plus pose crop+augment samples/s per worker.

    .venv/bin/python -m benchmarks.bench_pose_data [--batch 32] [--repeats 7]

The baselines are the official algorithms (``JointsDataset.generate_target``, and
``get_final_preds`` with its per-joint refinement and ``transform_preds`` loops through
``cv2.getAffineTransform``) written here as straightforward per-person, per-joint loops.
W32 256x192 sizes: input 192x256, heatmaps 48x64, sigma 2, 17 joints. Goal: >= 10x each.
"""

from __future__ import annotations

import argparse
import math
import tempfile

import cv2
import numpy as np
import torch

from benchmarks.protocol import alternate, emit, rate
from harness.config import load_config
from hrnet.coco import COCOKeypoints
from hrnet.inference import get_final_preds
from hrnet.synth import SynthSpec, generate
from hrnet.targets import generate_heatmaps_batch

IMAGE_SIZE = np.array([192, 256])
HEATMAP_SIZE = np.array([48, 64])
SIGMA = 2.0
JOINTS = 17


def official_generate_target(joints: np.ndarray, joints_vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``JointsDataset.generate_target`` (gaussian), one person, one joint at a time."""
    target_weight = np.ones((JOINTS, 1), dtype=np.float32)
    target_weight[:, 0] = joints_vis
    target = np.zeros((JOINTS, HEATMAP_SIZE[1], HEATMAP_SIZE[0]), dtype=np.float32)
    tmp_size = SIGMA * 3
    for joint_id in range(JOINTS):
        feat_stride = IMAGE_SIZE / HEATMAP_SIZE
        mu_x = int(joints[joint_id][0] / feat_stride[0] + 0.5)
        mu_y = int(joints[joint_id][1] / feat_stride[1] + 0.5)
        ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
        br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
        if ul[0] >= HEATMAP_SIZE[0] or ul[1] >= HEATMAP_SIZE[1] or br[0] < 0 or br[1] < 0:
            target_weight[joint_id] = 0
            continue
        size = int(2 * tmp_size + 1)
        x = np.arange(0, size, 1, np.float32)
        y = x[:, np.newaxis]
        x0 = y0 = size // 2
        g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * SIGMA**2))
        g_x = max(0, -ul[0]), min(br[0], HEATMAP_SIZE[0]) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], HEATMAP_SIZE[1]) - ul[1]
        img_x = max(0, ul[0]), min(br[0], HEATMAP_SIZE[0])
        img_y = max(0, ul[1]), min(br[1], HEATMAP_SIZE[1])
        if target_weight[joint_id] > 0.5:
            target[joint_id][img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
    return target, target_weight


def official_affine(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """``get_affine_transform(center, scale, 0, output_size, inv=1)`` of the official code."""
    scale_tmp = scale * 200.0
    src_w, dst_w, dst_h = scale_tmp[0], output_size[0], output_size[1]
    src_dir, dst_dir = np.array([0, src_w * -0.5]), np.array([0, dst_w * -0.5])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :], src[1, :] = center, center + src_dir
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    for points in (src, dst):
        direct = points[0] - points[1]
        points[2, :] = points[1] + np.array([-direct[1], direct[0]], dtype=np.float32)
    return cv2.getAffineTransform(np.float32(dst), np.float32(src))


def official_final_preds(
    heatmaps: np.ndarray, center: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Official ``get_final_preds`` (POST_PROCESS true): argmax, quarter-pixel step and
    the inverse affine, one person and one joint at a time."""
    n, j, height, width = heatmaps.shape
    coords = np.zeros((n, j, 2), dtype=np.float32)
    maxvals = np.zeros((n, j, 1), dtype=np.float32)
    for b in range(n):
        for p in range(j):
            hm = heatmaps[b][p]
            idx = int(np.argmax(hm))
            maxvals[b, p, 0] = hm.reshape(-1)[idx]
            if maxvals[b, p, 0] > 0:
                coords[b, p] = (idx % width, idx // width)
    for b in range(n):
        for p in range(j):
            hm = heatmaps[b][p]
            px = int(math.floor(coords[b][p][0] + 0.5))
            py = int(math.floor(coords[b][p][1] + 0.5))
            if 1 < px < width - 1 and 1 < py < height - 1:
                diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
                coords[b][p] += np.sign(diff) * 0.25
    preds = np.zeros((n, j, 2))
    for b in range(n):
        trans = official_affine(center[b], scale[b], (width, height))
        for p in range(j):
            preds[b, p] = np.dot(trans, np.array([coords[b, p, 0], coords[b, p, 1], 1.0]).T)[:2]
    return preds, maxvals


def crop_rate(samples: int) -> float:
    """Training crop + augment + targets, samples/s of one worker (one thread)."""
    with tempfile.TemporaryDirectory() as root:
        generate(root, SynthSpec(train_images=24, val_images=4, seed=0, width=256, height=256))
        cfg = load_config(
            "configs/pose/base.yaml",
            ["DATASET.ROOT", root, "DATASET.TEST_SET", "val", "DATASET.TRAIN_SET", "train"],
        )
        dataset = COCOKeypoints(cfg, "train", is_train=True)
        for i in range(8):
            dataset[(0, i % len(dataset))]

        def work() -> int:
            for i in range(samples):
                dataset[(1, i % len(dataset))]
            return samples

        return rate(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="persons per batch")
    parser.add_argument("--repeats", type=int, default=7, help="alternating timed rounds")
    parser.add_argument("--loops", type=int, default=20, help="batches per timed round")
    parser.add_argument("--crop-samples", type=int, default=200, help="samples for the crop rate; 0 skips")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    # Joints spread over the input and a little beyond it (some off-map), a fifth unlabelled.
    joints = rng.uniform(-20, IMAGE_SIZE + 20, size=(args.batch, JOINTS, 2))
    vis = (rng.random((args.batch, JOINTS)) > 0.2).astype(np.float32)
    heatmaps = rng.random((args.batch, JOINTS, HEATMAP_SIZE[1], HEATMAP_SIZE[0])).astype(np.float32)
    center = rng.uniform(100, 500, size=(args.batch, 2)).astype(np.float32)
    scale = rng.uniform(0.5, 3.0, size=(args.batch, 2)).astype(np.float32)

    # Identical outputs first.
    ours_t, ours_w = generate_heatmaps_batch(joints, vis, IMAGE_SIZE, HEATMAP_SIZE, SIGMA)
    base = [official_generate_target(joints[i], vis[i]) for i in range(args.batch)]
    base_t, base_w = np.stack([b[0] for b in base]), np.stack([b[1] for b in base])
    np.testing.assert_array_equal(ours_w, base_w)
    np.testing.assert_allclose(ours_t, base_t, rtol=2e-6, atol=1e-7)
    target_diff = float(np.abs(ours_t - base_t).max())
    ours_p, ours_m = get_final_preds(heatmaps, center, scale)
    base_p, base_m = official_final_preds(heatmaps, center, scale)
    np.testing.assert_array_equal(ours_m, base_m)
    np.testing.assert_allclose(ours_p, base_p, rtol=0, atol=1e-3)
    preds_diff = float(np.abs(ours_p - base_p).max())

    def loop(fn) -> float:
        def work() -> int:
            for _ in range(args.loops):
                fn()
            return args.loops * args.batch

        return rate(work)

    targets = alternate(
        lambda: loop(lambda: generate_heatmaps_batch(joints, vis, IMAGE_SIZE, HEATMAP_SIZE, SIGMA)),
        lambda: loop(lambda: [official_generate_target(joints[i], vis[i]) for i in range(args.batch)]),
        repeats=args.repeats,
    )
    # What the dataset does today: one person per __getitem__, all joints at once.
    per_person = alternate(
        lambda: loop(
            lambda: [
                generate_heatmaps_batch(joints[i : i + 1], vis[i : i + 1], IMAGE_SIZE, HEATMAP_SIZE, SIGMA)
                for i in range(args.batch)
            ]
        ),
        lambda: loop(lambda: [official_generate_target(joints[i], vis[i]) for i in range(args.batch)]),
        repeats=max(3, args.repeats // 2),
    )
    preds = alternate(
        lambda: loop(lambda: get_final_preds(heatmaps, center, scale)),
        lambda: loop(lambda: official_final_preds(heatmaps, center, scale)),
        repeats=args.repeats,
    )
    result = {
        "metric": "persons/s, ours (vectorised over the batch) / official per-joint loops",
        "goal": ">= 10",
        "batch": args.batch,
        "heatmap": HEATMAP_SIZE.tolist(),
        "sigma": SIGMA,
        "met": targets["ratio_median"] >= 10 and preds["ratio_median"] >= 10,
        "targets": targets,
        "targets_max_abs_diff": target_diff,
        "targets_one_person_per_call": {k: per_person[k] for k in ("ratio_median", "ratio_min", "ratio_max")},
        "final_preds": preds,
        "final_preds_max_abs_diff_px": preds_diff,
    }
    if args.crop_samples:
        result["crop_augment_samples_per_s_one_worker"] = round(crop_rate(args.crop_samples), 1)
    emit("p4_pose_data", result)


if __name__ == "__main__":
    main()
