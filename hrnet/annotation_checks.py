"""COCO keypoint annotations checked when the dataset is built, not mid-epoch.

Each problem names the annotation file and the annotation id: a box whose width or height
is not positive, a keypoint value that is not a number, a keypoint list of the wrong
length, an annotation for an image that is not in the set, an image file that does not
exist (a stat, never a decode). ``DATA.ON_BAD_SAMPLE`` says whether the first problem
stops the run (``error``) or the bad annotations are dropped and counted (``skip``).
"""

from __future__ import annotations

import logging
import numbers
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("harness")

REASONS = ("bad_box", "bad_keypoints", "unknown_image", "missing_image")


@dataclass(frozen=True)
class BadAnnotation:
    ann_id: Any
    reason: str  # one of REASONS
    message: str


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_one(
    ann: dict[str, Any], source: str, images: dict[Any, dict[str, Any]], num_joints: int
) -> BadAnnotation | None:
    ann_id = ann.get("id")
    where = f"{source}: annotation {ann_id}"
    if ann.get("image_id") not in images:
        return BadAnnotation(
            ann_id,
            "unknown_image",
            f"{where} is for image id {ann.get('image_id')!r}, which is not in the set's images",
        )
    box = ann.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(v) for v in box):
        return BadAnnotation(ann_id, "bad_box", f"{where} has bbox {box!r}; expected [x, y, width, height]")
    if box[2] <= 0 or box[3] <= 0:
        return BadAnnotation(
            ann_id, "bad_box", f"{where} has a box of width {box[2]} and height {box[3]}; both must be > 0"
        )
    keypoints = ann.get("keypoints")
    if not isinstance(keypoints, (list, tuple)) or len(keypoints) != 3 * num_joints:
        count = len(keypoints) if isinstance(keypoints, (list, tuple)) else type(keypoints).__name__
        return BadAnnotation(
            ann_id,
            "bad_keypoints",
            f"{where} has {count} keypoint values; expected {3 * num_joints} ({num_joints} joints x, y, v)",
        )
    for i, value in enumerate(keypoints):
        if not _is_number(value):
            return BadAnnotation(
                ann_id,
                "bad_keypoints",
                f"{where} has a non-numeric keypoint value {value!r} (joint {i // 3}, {'xyv'[i % 3]})",
            )
    return None


def check_annotations(
    dataset: dict[str, Any], source: str, image_dir: str, num_joints: int
) -> list[BadAnnotation]:
    """Every bad person annotation of a COCO keypoints ``dataset`` (the json as a dict),
    including those whose image file is missing under ``image_dir``. Crowd annotations
    and ones without labelled keypoints are never read for training and are not checked."""
    images = {img.get("id"): img for img in dataset.get("images", [])}
    bad: list[BadAnnotation] = []
    exists: dict[str, bool] = {}
    for ann in dataset.get("annotations", []):
        if ann.get("category_id", 1) != 1 or ann.get("iscrowd"):
            continue
        keypoints = ann.get("keypoints")
        if (
            isinstance(keypoints, (list, tuple))
            and all(_is_number(v) for v in keypoints)
            and keypoints
            and max(keypoints) == 0
        ):
            continue  # no labelled keypoint: not a training sample
        problem = _check_one(ann, source, images, num_joints)
        if problem is None:
            path = os.path.join(image_dir, str(images[ann["image_id"]].get("file_name")))
            if path not in exists:
                exists[path] = os.path.isfile(path)
            if not exists[path]:
                problem = BadAnnotation(
                    ann.get("id"),
                    "missing_image",
                    f"{source}: annotation {ann.get('id')}: image file not found: {path}",
                )
        if problem is not None:
            bad.append(problem)
    return bad


def count_reasons(bad: list[BadAnnotation]) -> dict[str, int]:
    counts = {reason: 0 for reason in REASONS}
    for item in bad:
        counts[item.reason] += 1
    return {k: v for k, v in counts.items() if v}


def apply_policy(bad: list[BadAnnotation], policy: str, source: str, error: type[Exception]) -> set[Any]:
    """``error``: raise ``error`` with the first problem (and how many more); ``skip``: log
    the counts once and return the annotation ids to drop."""
    if not bad:
        return set()
    if policy != "skip":
        more = (
            f" ({len(bad) - 1} more bad annotation(s); DATA.ON_BAD_SAMPLE skip drops them)"
            if len(bad) > 1
            else " (DATA.ON_BAD_SAMPLE skip drops such annotations)"
        )
        raise error(bad[0].message + more)
    counts = count_reasons(bad)
    log.warning(
        "DATA.ON_BAD_SAMPLE skip: %d bad annotation(s) dropped from %s (%s); first: %s",
        len(bad),
        source,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        bad[0].message,
    )
    return {item.ann_id for item in bad}
