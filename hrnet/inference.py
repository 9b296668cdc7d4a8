"""From heatmaps to COCO keypoints: flip test, argmax decoding, rescoring and OKS NMS.

Formulas follow the official ``lib/core/inference.py``, ``lib/utils/transforms.py``
and ``lib/nms/nms.py``, vectorised over persons and joints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hrnet.transforms import PIXEL_STD, get_affine_transform

# COCO keypoint OKS constants (per-joint falloff), from the COCO keypoint evaluation.
COCO_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)


def _last_output(outputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


def flip_back(heatmaps: torch.Tensor, flip_pairs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Heatmaps of a left-right flipped input, mapped back: mirror the width axis and
    swap left/right joint channels. (N, J, H, W) in and out."""
    perm = list(range(heatmaps.shape[1]))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return heatmaps.flip(3)[:, perm]


@torch.no_grad()
def flip_test(
    model: nn.Module, inputs: torch.Tensor, flip_pairs: Sequence[Sequence[int]], shift_heatmap: bool = True
) -> torch.Tensor:
    """Mean of the heatmaps of ``inputs`` and of their mirror image (flipped back).

    ``shift_heatmap`` moves the flipped-back heatmap one pixel right: mirroring an
    even-width map about its centre is off by one pixel against the features, which
    costs about 2 AP on COCO without this shift.
    """
    heatmaps = _last_output(model(inputs))
    flipped = flip_back(_last_output(model(inputs.flip(3))), flip_pairs)
    if shift_heatmap:
        flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=3)
    return (heatmaps + flipped) * 0.5


def get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of each (N, J, H, W) heatmap: coords (N, J, 2) as (x, y) float32 and
    maxima (N, J, 1); joints whose maximum is not positive get coords (0, 0)."""
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, J, H, W), got shape {heatmaps.shape}")
    n, j, _, width = heatmaps.shape
    flat = heatmaps.reshape(n, j, -1)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2).astype(np.float32)
    coords = np.stack([idx % width, idx // width], axis=2).astype(np.float32)
    coords *= maxvals > 0
    return coords, maxvals


def refine_quarter_pixel(heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Move each argmax 0.25 px toward its higher neighbour in x and in y (official
    POST_PROCESS); maxima on or next to the border stay put."""
    n, j, height, width = heatmaps.shape
    px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
    py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
    inside = (px > 1) & (px < width - 1) & (py > 1) & (py < height - 1)
    pxc = np.clip(px, 1, width - 2)
    pyc = np.clip(py, 1, height - 2)
    ni, ji = np.meshgrid(np.arange(n), np.arange(j), indexing="ij")
    diff_x = heatmaps[ni, ji, pyc, pxc + 1] - heatmaps[ni, ji, pyc, pxc - 1]
    diff_y = heatmaps[ni, ji, pyc + 1, pxc] - heatmaps[ni, ji, pyc - 1, pxc]
    step = np.stack([np.sign(diff_x), np.sign(diff_y)], axis=2) * 0.25 * inside[..., None]
    return coords + step.astype(coords.dtype)


def transform_preds(
    coords: np.ndarray, center: np.ndarray, scale: np.ndarray, output_size: Sequence[int]
) -> np.ndarray:
    """Heatmap coords (J, 2) of one person back to image pixels (the inverse crop)."""
    inverse = get_affine_transform(center, scale, 0, output_size, inv=True)
    return coords[:, :2] @ inverse[:, :2].T + inverse[:, 2]


def get_final_preds(
    heatmaps: np.ndarray | torch.Tensor, center: np.ndarray, scale: np.ndarray, post_process: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Image-space keypoints (N, J, 2) and maxima (N, J, 1) from heatmaps (N, J, H, W)
    of crops described by ``center`` (N, 2) and ``scale`` (N, 2)."""
    if isinstance(heatmaps, torch.Tensor):
        heatmaps = heatmaps.detach().float().cpu().numpy()
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    center = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 2)
    coords, maxvals = get_max_preds(heatmaps)
    if post_process:
        coords = refine_quarter_pixel(heatmaps, coords)
    height, width = heatmaps.shape[2:]
    return transform_preds_batch(coords, center, scale, (width, height)), maxvals


def transform_preds_batch(
    coords: np.ndarray, center: np.ndarray, scale: np.ndarray, output_size: Sequence[int]
) -> np.ndarray:
    """Heatmap coords (N, J, 2) of N persons back to image pixels, all at once.

    The inverse crop without rotation is a zoom by box width / heatmap width about the
    heatmap centre, moved to the box centre: what ``get_affine_transform(..., inv=True)``
    solves for from three float32 points, in closed form (they agree to ~1e-5 px).
    """
    center = np.asarray(center, dtype=np.float64).reshape(-1, 1, 2)
    box_width = np.asarray(scale, dtype=np.float64).reshape(-1, 1, 2)[..., :1] * PIXEL_STD
    zoom = box_width / float(output_size[0])
    half = np.array([output_size[0] * 0.5, output_size[1] * 0.5])
    return (np.asarray(coords, dtype=np.float64)[..., :2] - half) * zoom + center


def rescore(keypoint_scores: np.ndarray, box_scores: np.ndarray, in_vis_thre: float) -> np.ndarray:
    """Person score = box score × mean of the joint maxima above ``in_vis_thre``
    (0 when no joint passes). ``keypoint_scores``: (N, J)."""
    scores = np.asarray(keypoint_scores, dtype=np.float64)
    valid = scores > in_vis_thre
    count = valid.sum(axis=1)
    mean = np.where(count > 0, (scores * valid).sum(axis=1) / np.maximum(count, 1), 0.0)
    return mean * np.asarray(box_scores, dtype=np.float64)


def oks_iou(
    reference: np.ndarray,
    others: np.ndarray,
    reference_area: float,
    other_areas: np.ndarray,
    sigmas: np.ndarray = COCO_SIGMAS,
    in_vis_thre: float | None = None,
) -> np.ndarray:
    """Object keypoint similarity of one (J, 3) pose against (M, J, 3) poses.

    Like the official ``oks_iou``: the scale is the mean of the two areas, and with
    ``in_vis_thre`` only joints confident in both poses count.
    """
    variances = (np.asarray(sigmas) * 2) ** 2
    d2 = ((others[:, :, :2] - reference[None, :, :2]) ** 2).sum(axis=2)
    area = (reference_area + np.asarray(other_areas, dtype=np.float64)) / 2 + np.spacing(1)
    e = d2 / variances[None, :] / area[:, None] / 2
    similarity = np.exp(-e)
    if in_vis_thre is None:
        return similarity.mean(axis=1) if similarity.shape[1] else np.zeros(len(others))
    counted = (reference[None, :, 2] > in_vis_thre) & (others[:, :, 2] > in_vis_thre)
    n = counted.sum(axis=1)
    return np.where(n > 0, (similarity * counted).sum(axis=1) / np.maximum(n, 1), 0.0)


def _official_descending(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score as the official NMS orders them, ``scores.argsort()[::-1]``:
    equal scores come last index first.

    The sort is made stable on purpose. The official code relied on NumPy 1.x, whose
    default sort is stable on such short arrays; NumPy >= 1.25 dispatches to SIMD sorts
    that order ties differently from one CPU to another (seen here with 9 scores).
    """
    return np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")[::-1]


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float,
    sigmas: np.ndarray = COCO_SIGMAS,
    in_vis_thre: float | None = None,
) -> list[int]:
    """Greedy NMS on OKS: keep the best-scored pose, drop poses with OKS above
    ``threshold`` to it, repeat. Returns kept indices, best first.

    Equal scores go in the official order, ``scores.argsort()[::-1]``: the last index
    first (on COCO many persons are rescored to 0, so this picks which of them survive).
    """
    order = _official_descending(scores)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    keep: list[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        overlap = oks_iou(keypoints[best], keypoints[rest], areas[best], areas[rest], sigmas, in_vis_thre)
        order = rest[overlap <= threshold]
    return keep


def soft_oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float,
    sigmas: np.ndarray = COCO_SIGMAS,
    in_vis_thre: float | None = None,
    max_dets: int = 20,
) -> list[int]:
    """Soft NMS (official TEST.SOFT_NMS): overlapping poses are down-weighted by
    ``exp(-oks² / threshold)`` instead of dropped; keeps at most ``max_dets``."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    order = _official_descending(scores)
    current = np.asarray(scores, dtype=np.float64)[order]
    keep: list[int] = []
    while order.size > 0 and len(keep) < max_dets:
        best = int(order[0])
        keep.append(best)
        order, current = order[1:], current[1:]
        overlap = oks_iou(keypoints[best], keypoints[order], areas[best], areas[order], sigmas, in_vis_thre)
        current = current * np.exp(-(overlap**2) / threshold)
        resort = _official_descending(current)
        order, current = order[resort], current[resort]
    return keep
