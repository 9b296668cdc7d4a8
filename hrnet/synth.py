"""Synthetic COCO keypoints: stick figures in exact COCO format (``harness data synth-coco``).

Writes, under OUT::

    annotations/person_keypoints_{train,val}.json
    images/{train,val}/<12-digit id>.jpg
    person_detection_results/COCO_val_detections.json

Each image holds one to three figures facing the camera (so a figure's left side is
on the image's right, as for real people) with varied poses, sizes and positions.
Every joint type is a dot of its own colour on the limbs, which makes the task
learnable in CPU minutes. Left and right joints share a colour: as in real data, side
follows from the pose, and flip augmentation stays consistent. Visibility is 2 for a
visible joint, 1 for one covered by a later figure or an occluding box, 0 (with x = y
= 0) for one outside the image. ``area`` is the figure's silhouette pixel count,
like COCO's segmentation area.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from hrnet.transforms import COCO_KEYPOINT_NAMES, COCO_SKELETON

# Colour of each joint type; left and right partners share one.
_JOINT_TYPE_COLORS = {
    "nose": (255, 40, 40),
    "eye": (255, 255, 60),
    "ear": (60, 255, 255),
    "shoulder": (255, 140, 0),
    "elbow": (40, 255, 40),
    "wrist": (60, 60, 255),
    "hip": (255, 60, 255),
    "knee": (255, 255, 255),
    "ankle": (140, 70, 20),
}
JOINT_COLORS = tuple(_JOINT_TYPE_COLORS[name.split("_")[-1]] for name in COCO_KEYPOINT_NAMES)
# Limbs drawn as thick lines (0-based joint pairs); the torso is a filled quad.
_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16))
DETECTIONS_FILE = "person_detection_results/COCO_{}_detections.json"


@dataclass(frozen=True)
class SynthSpec:
    """What to generate."""

    train_images: int
    val_images: int
    seed: int = 0
    width: int = 128
    height: int = 128
    train_set: str = "train"
    val_set: str = "val"
    jpeg_quality: int = 92


def _direction(angle_deg: np.ndarray | float, down: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """Unit vector ``angle`` degrees from ``down`` toward ``outward``."""
    a = np.deg2rad(angle_deg)
    return np.cos(a) * down + np.sin(a) * outward


def sample_pose(rng: np.random.Generator, height: float) -> tuple[np.ndarray, np.ndarray, float]:
    """17 joints (x, y) of a figure about ``height`` pixels tall, hips at the origin, and
    the head centre and radius."""
    lean = np.deg2rad(rng.normal(0, 10))
    up = np.array([np.sin(lean), -np.cos(lean)])
    side = np.array([np.cos(lean), np.sin(lean)])  # the figure's left, the image's right
    h = height
    joints = np.zeros((17, 2))
    neck = up * 0.30 * h
    joints[11], joints[12] = side * 0.085 * h, -side * 0.085 * h
    joints[5], joints[6] = neck + side * 0.12 * h, neck - side * 0.12 * h
    tilt = np.deg2rad(rng.normal(0, 10))
    head_up = np.array(
        [np.cos(tilt) * up[0] - np.sin(tilt) * up[1], np.sin(tilt) * up[0] + np.cos(tilt) * up[1]]
    )
    head_side = np.array([-head_up[1], head_up[0]])
    head = neck + head_up * 0.12 * h
    yaw = rng.uniform(-0.4, 0.4)
    joints[0] = head + head_side * yaw * 0.03 * h - head_up * 0.01 * h
    for joint, sign in ((1, 1.0), (2, -1.0)):
        joints[joint] = head + head_up * 0.025 * h + head_side * (sign * 0.032 + yaw * 0.02) * h
    for joint, sign in ((3, 1.0), (4, -1.0)):
        joints[joint] = head + head_side * sign * 0.065 * h
    for sign, (shoulder, elbow, wrist, hip, knee, ankle) in (
        (1.0, (5, 7, 9, 11, 13, 15)),
        (-1.0, (6, 8, 10, 12, 14, 16)),
    ):
        outward = side * sign
        arm = rng.uniform(-10, 160)
        bend = rng.choice([-1.0, 1.0]) * rng.uniform(0, 120)
        joints[elbow] = joints[shoulder] + _direction(arm, -up, outward) * 0.16 * h
        joints[wrist] = joints[elbow] + _direction(arm + bend, -up, outward) * 0.14 * h
        thigh = rng.uniform(-10, 45)
        shin = thigh - rng.uniform(-10, 60)
        joints[knee] = joints[hip] + _direction(thigh, -up, outward) * 0.23 * h
        joints[ankle] = joints[knee] + _direction(shin, -up, outward) * 0.23 * h
    return joints, head, 0.075 * h


def _draw_figure(
    draw: ImageDraw.ImageDraw,
    joints: np.ndarray,
    head: np.ndarray,
    head_radius: float,
    body: tuple[int, int, int] | int,
    limb_width: int,
    dots: bool,
) -> None:
    pts = [tuple(p) for p in joints]
    draw.polygon([pts[5], pts[6], pts[12], pts[11]], fill=body)
    for a, b in _LIMBS:
        draw.line([pts[a], pts[b]], fill=body, width=limb_width)
    for p in pts[5:]:
        r = limb_width / 2
        draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=body)
    draw.ellipse(
        [head[0] - head_radius, head[1] - head_radius, head[0] + head_radius, head[1] + head_radius],
        fill=body,
    )
    if dots:
        r = max(1.5, limb_width * 0.6)
        for p, color in zip(pts, JOINT_COLORS):
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=color)


def render_image(
    rng: np.random.Generator, width: int, height: int
) -> tuple[Image.Image, list[dict[str, Any]]]:
    """One image and its persons (``keypoints`` (17, 3) with COCO visibility, ``bbox``, ``area``)."""
    background = rng.integers(20, 110, size=3)
    gradient = np.linspace(0, 1, height)[:, None, None] * rng.integers(-40, 40, size=3)
    noise = rng.normal(0, 6, size=(height, width, 3))
    pixels = np.clip(background + gradient + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(0, 4)):  # clutter lines: distractors that are not limbs
        xy = rng.uniform(0, [width, height, width, height])
        draw.line(
            list(xy), fill=tuple(int(c) for c in rng.integers(60, 200, size=3)), width=int(rng.integers(1, 4))
        )

    figures = []
    for _ in range(int(rng.integers(1, 4))):
        size = rng.uniform(0.4, 0.95) * height
        joints, head, head_radius = sample_pose(rng, size)
        offset = rng.uniform([0.15 * width, 0.45 * height], [0.85 * width, 0.75 * height])
        joints, head = joints + offset, head + offset
        body = tuple(int(c) for c in rng.integers(120, 200, size=3))
        limb_width = max(2, int(round(size * 0.055)))
        mask = Image.new("L", (width, height), 0)
        _draw_figure(ImageDraw.Draw(mask), joints, head, head_radius, 255, limb_width, dots=False)
        _draw_figure(draw, joints, head, head_radius, body, limb_width, dots=True)
        figures.append({"joints": joints, "mask": np.asarray(mask) > 0})

    occluder = np.zeros((height, width), dtype=bool)
    if rng.random() < 0.35:
        w, h = rng.uniform(0.15, 0.4, size=2) * [width, height]
        x0, y0 = rng.uniform(0, [width - w, height - h])
        color = tuple(int(c) for c in rng.integers(30, 160, size=3))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=color)
        occluder[int(y0) : int(np.ceil(y0 + h)) + 1, int(x0) : int(np.ceil(x0 + w)) + 1] = True

    persons = []
    for i, figure in enumerate(figures):
        covered = occluder.copy()
        for later in figures[i + 1 :]:
            covered |= later["mask"]
        joints = figure["joints"]
        inside = (
            (joints[:, 0] >= 0)
            & (joints[:, 0] <= width - 1)
            & (joints[:, 1] >= 0)
            & (joints[:, 1] <= height - 1)
        )
        xi = np.clip(np.round(joints[:, 0]).astype(int), 0, width - 1)
        yi = np.clip(np.round(joints[:, 1]).astype(int), 0, height - 1)
        visibility = np.where(inside, np.where(covered[yi, xi], 1, 2), 0)
        if (visibility > 0).sum() < 3:
            continue
        silhouette = figure["mask"]
        ys, xs = np.nonzero(silhouette)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        keypoints = np.concatenate([joints * inside[:, None], visibility[:, None]], axis=1)
        bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
        persons.append({"keypoints": keypoints, "bbox": bbox, "area": float(silhouette.sum())})
    return image, persons


def _category() -> dict[str, Any]:
    return {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(COCO_KEYPOINT_NAMES),
        "skeleton": [list(p) for p in COCO_SKELETON],
    }


def _write_split(
    out_dir: str, image_set: str, count: int, seed: int, split_id: int, spec: SynthSpec, first_image_id: int
) -> dict[str, Any]:
    image_dir = os.path.join(out_dir, "images", image_set)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for n in range(count):
        rng = np.random.default_rng([seed, split_id, n])
        image, persons = render_image(rng, spec.width, spec.height)
        image_id = first_image_id + n
        file_name = f"{image_id:012d}.jpg"
        image.save(os.path.join(image_dir, file_name), quality=spec.jpeg_quality)
        images.append({"id": image_id, "file_name": file_name, "width": spec.width, "height": spec.height})
        for person in persons:
            kpts = person["keypoints"]
            x, y, w, h = person["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1 + split_id * 10_000_000,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": [
                        int(v) if i % 3 == 2 else round(float(v), 2) for i, v in enumerate(kpts.ravel())
                    ],
                    "num_keypoints": int((kpts[:, 2] > 0).sum()),
                    "bbox": [round(v, 2) for v in person["bbox"]],
                    "area": person["area"],
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                }
            )
    data = {
        "info": {"description": f"synthetic COCO keypoints ({image_set}), seed {seed}"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [_category()],
    }
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    with open(os.path.join(out_dir, "annotations", f"person_keypoints_{image_set}.json"), "w") as f:
        json.dump(data, f)
    return data


def fake_detections(data: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Person-detector-like results: every ground-truth box jittered with a high score,
    plus a few low-scored false positives."""
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    detections = []
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.06, size=4) * [w, h, w, h]
        box = (x + jitter[0], y + jitter[1], max(2.0, w + jitter[2]), max(2.0, h + jitter[3]))
        detections.append(
            {
                "image_id": ann["image_id"],
                "category_id": 1,
                "bbox": [round(float(v), 2) for v in box],
                "score": round(float(rng.uniform(0.7, 1.0)), 4),
            }
        )
    for image_id, (width, height) in sizes.items():
        if rng.random() < 0.3:
            w, h = rng.uniform(0.1, 0.4) * width, rng.uniform(0.2, 0.6) * height
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [round(float(v), 2) for v in (x, y, w, h)],
                    "score": round(float(rng.uniform(0.05, 0.4)), 4),
                }
            )
    return detections


def generate(out_dir: str, spec: SynthSpec) -> dict[str, Any]:
    """Write the synthetic set; returns counts per split."""
    train = _write_split(out_dir, spec.train_set, spec.train_images, spec.seed, 0, spec, first_image_id=1)
    val = _write_split(out_dir, spec.val_set, spec.val_images, spec.seed, 1, spec, first_image_id=1_000_001)
    detections = fake_detections(val, np.random.default_rng([spec.seed, 2]))
    det_path = os.path.join(out_dir, DETECTIONS_FILE.format(spec.val_set))
    os.makedirs(os.path.dirname(det_path), exist_ok=True)
    with open(det_path, "w") as f:
        json.dump(detections, f)
    return {
        "train_images": len(train["images"]),
        "train_persons": len(train["annotations"]),
        "val_images": len(val["images"]),
        "val_persons": len(val["annotations"]),
        "detections": len(detections),
        "detections_file": det_path,
    }


# --------------------------------------------------------------------- CLI
def run_synth_coco(args: argparse.Namespace) -> int:
    """``harness data synth-coco`` (the parser is hrnet.workload.add_data_cli)."""
    val_images = args.val_images if args.val_images is not None else max(1, args.images // 4)
    spec = SynthSpec(
        train_images=args.images,
        val_images=val_images,
        seed=args.seed,
        width=args.size[0],
        height=args.size[1],
    )
    summary = generate(args.out, spec)
    print(
        f"wrote {summary['train_images']} train images ({summary['train_persons']} persons), "
        f"{summary['val_images']} val images ({summary['val_persons']} persons) and "
        f"{summary['detections']} detections to {args.out}"
    )
    return 0
