"""COCO keypoints dataset: one item per person box, cropped, augmented, with heatmaps.

Layout (real COCO and ``harness data synth-coco`` alike)::

    ROOT/annotations/person_keypoints_{SET}.json
    ROOT/images/{SET}/<file_name of the image record>

Training reads ground-truth person boxes (crowd and keypoint-less persons skipped);
validation reads ground-truth boxes (``TEST.USE_GT_BBOX``) or a person-detection
results json (``TEST.COCO_BBOX_FILE``, boxes below ``TEST.IMAGE_THRE`` dropped).
Images are decoded lazily in ``__getitem__``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from yacs.config import CfgNode as CN

from harness.errors import UserError
from hrnet.annotation_checks import apply_policy, check_annotations, count_reasons
from hrnet.targets import generate_heatmaps
from hrnet.transforms import (
    COCO_FLIP_PAIRS,
    COCO_JOINTS_WEIGHT,
    COCO_UPPER_BODY_IDS,
    PIXEL_STD,
    affine_points,
    box_to_center_scale,
    fliplr_joints,
    get_affine_transform,
    half_body_center_scale,
    warp_image,
)


class PoseDataError(UserError, RuntimeError):
    """A dataset file is missing or unreadable; the message names it."""


def annotation_file(root: str, image_set: str) -> str:
    prefix = "image_info" if "test" in image_set else "person_keypoints"
    return os.path.join(root, "annotations", f"{prefix}_{image_set}.json")


def load_coco(path: str) -> COCO:
    """pycocotools COCO index of ``path`` (its progress prints are swallowed)."""
    if not os.path.isfile(path):
        raise PoseDataError(f"COCO annotation file not found: {path}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(path)
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise PoseDataError(f"cannot read COCO annotation file {path}: {e}") from e


def read_image(path: str) -> Image.Image:
    """Decode an image file as 8-bit RGB (libjpeg-turbo through Pillow)."""
    try:
        with Image.open(path) as im:
            # draft() would let libjpeg downscale while decoding; crops need full detail.
            return im.convert("RGB")
    except FileNotFoundError:
        raise PoseDataError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise PoseDataError(f"cannot decode image file {path}: {e}") from e


def select_well_fitted(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Official ``DATASET.SELECT_DATA``: keep persons whose visible joints' mean lies close
    enough to the box centre, with a tolerance that grows with the visible count."""
    kept = []
    for rec in records:
        visible = rec["vis"] > 0
        num_visible = int(visible.sum())
        if num_visible == 0:
            continue
        joints_center = rec["joints"][visible].mean(axis=0)
        area = float(np.prod(rec["scale"])) * PIXEL_STD**2
        distance2 = float(((joints_center - rec["center"]) ** 2).sum())
        similarity = np.exp(-distance2 / (0.2**2 * 2.0 * area))
        if similarity > (0.2 / 16) * num_visible + 0.45 - 0.2 / 16:
            kept.append(rec)
    return kept


class COCOKeypoints(Dataset):
    """Person crops of a COCO keypoint set.

    ``__getitem__(index)`` returns the unaugmented crop (validation);
    ``__getitem__((epoch, index))`` an augmented one whose randomness comes only from
    ``(cfg.SEED, epoch, index)``. Items are dicts: ``input`` uint8 (3, H, W),
    ``target`` float32 (J, h, w), ``target_weight`` (J, 1), ``index``, ``center``,
    ``scale``, ``score``, ``area``, ``image_id``, ``joints`` (J, 3: crop-input x, y, vis).
    """

    def __init__(self, cfg: CN, image_set: str, is_train: bool):
        self.cfg = cfg
        self.is_train = is_train
        self.image_set = image_set
        self.root = cfg.DATASET.ROOT
        self.seed = int(cfg.SEED)
        self.num_joints = int(cfg.MODEL.NUM_JOINTS)
        self.image_size = np.array(cfg.MODEL.IMAGE_SIZE, dtype=np.int64)
        self.heatmap_size = np.array(cfg.MODEL.HEATMAP_SIZE, dtype=np.int64)
        self.sigma = float(cfg.MODEL.SIGMA)
        self.aspect_ratio = float(self.image_size[0]) / float(self.image_size[1])
        self.flip_pairs = COCO_FLIP_PAIRS
        self.upper_body_ids = COCO_UPPER_BODY_IDS
        d = cfg.DATASET
        self.flip, self.scale_factor, self.rotation_factor = d.FLIP, d.SCALE_FACTOR, d.ROT_FACTOR
        self.prob_half_body, self.num_joints_half_body = d.PROB_HALF_BODY, d.NUM_JOINTS_HALF_BODY
        self.color_rgb = d.COLOR_RGB
        self.joints_weight = (
            np.array(COCO_JOINTS_WEIGHT, dtype=np.float32)
            if cfg.LOSS.get("USE_DIFFERENT_JOINTS_WEIGHT", False)
            else None
        )
        if cfg.MODEL.TARGET_TYPE != "gaussian":
            raise ValueError(f"MODEL.TARGET_TYPE {cfg.MODEL.TARGET_TYPE!r} is not supported; use gaussian")
        if self.num_joints != 17:
            raise ValueError(f"MODEL.NUM_JOINTS is {self.num_joints}; COCO keypoints have 17")

        if d.DATA_FORMAT == "zip":
            raise ValueError(
                "DATASET.DATA_FORMAT zip (images inside zip archives) is not supported; "
                "unpack the images under DATASET.ROOT/images/<set>/"
            )
        self.annotation_path = annotation_file(self.root, image_set)
        self.coco = load_coco(self.annotation_path)
        self.image_dir = os.path.join(self.root, "images", image_set)
        use_gt = is_train or cfg.TEST.USE_GT_BBOX
        # Checked here, not mid-epoch; `skipped` counts what DATA.ON_BAD_SAMPLE skip dropped.
        bad = (
            check_annotations(self.coco.dataset, self.annotation_path, self.image_dir, self.num_joints)
            if use_gt
            else []
        )
        self._dropped = apply_policy(
            bad, cfg.DATA.get("ON_BAD_SAMPLE", "error"), self.annotation_path, PoseDataError
        )
        self.skipped = count_reasons(bad)
        records = self._gt_records() if use_gt else self._detection_records(cfg.TEST.COCO_BBOX_FILE)
        if is_train and d.SELECT_DATA:
            records = select_well_fitted(records)
        if not records:
            source = self.annotation_path if use_gt else cfg.TEST.COCO_BBOX_FILE
            raise PoseDataError(f"no usable person boxes in {source} (set {image_set!r})")
        self._pack(records)
        if is_train:
            # Only evaluation needs the annotation index, and the train2017 one holds hundreds of MB.
            self.coco = None

    # ------------------------------------------------------------ records
    def _image_path(self, image_id: int) -> str:
        if image_id not in self.coco.imgs:
            raise PoseDataError(f"image id {image_id} is not in {self.annotation_path}")
        return os.path.join(self.image_dir, self.coco.imgs[image_id]["file_name"])

    def _gt_records(self) -> list[dict[str, Any]]:
        records = []
        for image_id in sorted(self.coco.getImgIds()):
            info = self.coco.imgs[image_id]
            width, height = info["width"], info["height"]
            for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False)):
                if ann.get("id") in self._dropped:
                    continue
                if ann.get("category_id", 1) != 1 or max(ann.get("keypoints", [0])) == 0:
                    continue
                x, y, w, h = ann["bbox"]
                # Official sanitising: clip to the image, drop empty boxes.
                x1, y1 = max(0.0, x), max(0.0, y)
                x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
                y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
                if ann.get("area", 0) <= 0 or x2 < x1 or y2 < y1:
                    continue
                kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
                if len(kpts) != self.num_joints:
                    raise PoseDataError(
                        f"annotation {ann.get('id')} in {self.annotation_path} has "
                        f"{len(kpts)} keypoints, expected {self.num_joints}"
                    )
                center, scale = box_to_center_scale([x1, y1, x2 - x1, y2 - y1], self.aspect_ratio)
                records.append(
                    {
                        "image_id": image_id,
                        "center": center,
                        "scale": scale,
                        "score": 1.0,
                        "joints": kpts[:, :2],
                        "vis": np.minimum(kpts[:, 2], 1.0),
                    }
                )
        return records

    def _detection_records(self, bbox_file: str) -> list[dict[str, Any]]:
        if not bbox_file or not os.path.isfile(bbox_file):
            raise PoseDataError(
                f"TEST.COCO_BBOX_FILE not found: {bbox_file!r} (needed when TEST.USE_GT_BBOX is false)"
            )
        try:
            with open(bbox_file) as f:
                detections = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PoseDataError(f"TEST.COCO_BBOX_FILE {bbox_file} is not valid JSON: {e}") from e
        if not isinstance(detections, list):
            raise PoseDataError(f"TEST.COCO_BBOX_FILE {bbox_file} must hold a list of detections")
        threshold = float(self.cfg.TEST.IMAGE_THRE)
        records = []
        for det in detections:
            if det.get("category_id") != 1 or det["score"] < threshold:
                continue
            image_id = int(det["image_id"])
            if not os.path.isfile(self._image_path(image_id)):  # a stat when built, not a decode mid-epoch
                message = (
                    f"{bbox_file}: detection for image id {image_id}: image file not found: "
                    f"{self._image_path(image_id)}"
                )
                if self.cfg.DATA.get("ON_BAD_SAMPLE", "error") != "skip":
                    raise PoseDataError(message + " (DATA.ON_BAD_SAMPLE skip drops such detections)")
                self.skipped["missing_image"] = self.skipped.get("missing_image", 0) + 1
                continue
            center, scale = box_to_center_scale(det["bbox"], self.aspect_ratio)
            records.append(
                {
                    "image_id": image_id,
                    "center": center,
                    "scale": scale,
                    "score": float(det["score"]),
                    "joints": np.zeros((self.num_joints, 2)),
                    "vis": np.ones(self.num_joints),
                }
            )
        if self.skipped.get("missing_image"):
            logging.getLogger("harness").warning(
                "DATA.ON_BAD_SAMPLE skip: %d detection(s) dropped from %s (missing_image %d)",
                self.skipped["missing_image"],
                bbox_file,
                self.skipped["missing_image"],
            )
        return records

    def _pack(self, records: list[dict[str, Any]]) -> None:
        # Flat arrays instead of a list of dicts: workers share them without refcount churn.
        self.image_ids = np.array([r["image_id"] for r in records], dtype=np.int64)
        self.centers = np.stack([r["center"] for r in records]).astype(np.float32)
        self.scales = np.stack([r["scale"] for r in records]).astype(np.float32)
        self.scores = np.array([r["score"] for r in records], dtype=np.float32)
        self.joints = np.stack([r["joints"] for r in records]).astype(np.float64)
        self.visibility = np.stack([r["vis"] for r in records]).astype(np.float64)
        self.image_paths = {int(i): self._image_path(int(i)) for i in np.unique(self.image_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    # ------------------------------------------------------------- items
    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, (tuple, list)):
            epoch, index = int(key[0]), int(key[1])
            rng = np.random.default_rng([self.seed, epoch, index]) if self.is_train else None
        else:
            index, rng = int(key), None
        image = read_image(self.image_paths[int(self.image_ids[index])])
        if not self.color_rgb:
            image = Image.merge("RGB", image.split()[::-1])
        center = self.centers[index].astype(np.float64)
        scale = self.scales[index].astype(np.float64)
        joints = self.joints[index].copy()
        vis = self.visibility[index].copy()
        rotation = 0.0
        flipped = False
        if rng is not None:
            center, scale, rotation, flipped = self._augment(rng, joints, vis, center, scale)
            if flipped:
                width = image.width
                joints, vis = fliplr_joints(joints, vis, width, self.flip_pairs)
                center = np.array([width - center[0] - 1, center[1]])
        crop = get_affine_transform(center, scale, rotation, self.image_size)
        warped = warp_image(image, crop, self.image_size, flip=flipped)
        joints = np.where(vis[:, None] > 0, affine_points(joints, crop), joints)
        target, target_weight = generate_heatmaps(
            joints, vis, self.image_size, self.heatmap_size, self.sigma, self.joints_weight
        )
        pixels = torch.from_numpy(warped).permute(2, 0, 1).contiguous()
        return {
            "input": pixels,
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(target_weight),
            "index": index,
            "image_id": int(self.image_ids[index]),
            "center": torch.from_numpy(center.astype(np.float32)),
            "scale": torch.from_numpy(scale.astype(np.float32)),
            "rotation": float(rotation),
            "score": float(self.scores[index]),
            "area": float(np.prod(scale * PIXEL_STD)),
            "joints": torch.from_numpy(np.concatenate([joints, vis[:, None]], axis=1).astype(np.float32)),
        }

    def _augment(
        self,
        rng: np.random.Generator,
        joints: np.ndarray,
        vis: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, float, bool]:
        """Official augmentation order and distributions; a fixed number of draws per
        item so that changing one probability does not reshuffle the others."""
        draws = rng.random(4)
        half_body_normal, scale_normal, rot_normal = rng.standard_normal(3)
        if vis.sum() > self.num_joints_half_body and draws[0] < self.prob_half_body:
            half = half_body_center_scale(
                joints, vis, half_body_normal < 0.5, self.aspect_ratio, self.upper_body_ids
            )
            if half is not None:
                center, scale = half
        sf, rf = self.scale_factor, self.rotation_factor
        scale = scale * np.clip(scale_normal * sf + 1, 1 - sf, 1 + sf)
        rotation = float(np.clip(rot_normal * rf, -rf * 2, rf * 2)) if draws[1] <= 0.6 else 0.0
        flipped = bool(self.flip and draws[2] <= 0.5)
        return np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64), rotation, flipped
