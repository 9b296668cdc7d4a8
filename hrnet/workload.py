"""The pose workload as the registry sees it (``harness.tasks.WORKLOADS["pose"]``): config
hooks and ``harness data`` subcommands, importable without torch. The training side is
``hrnet.task.PoseTask``."""

from __future__ import annotations

import argparse
import errno
import json
import os
from typing import Any

from yacs.config import CfgNode as CN

from hrnet import config as pose_config

NAME = "pose"
#: Key of the evaluator's result that analysis treats as the headline (``val/AP``).
PRIMARY_METRIC = "AP"
HIGHER_IS_BETTER = True


def add_config_defaults(cfg: CN) -> None:
    pose_config.add_pose_defaults(cfg)


def recognizes(raw: dict) -> bool:
    """Official HRNet YAMLs name no TASK; their keys say they are pose configs."""
    return pose_config.recognizes(raw)


def finalize_config(cfg: CN, explicit: set[str]) -> None:
    pose_config.finalize_pose_config(cfg, explicit)


def rewrite_key(full_key: str, value: Any) -> tuple[str, Any]:
    """Pose keys are merged as written (legacy keys are mapped in finalize_config)."""
    return full_key, value


def validate_config(cfg: CN) -> None:
    pose_config.validate_pose_config(cfg)


def summarize_data(cfg: CN) -> dict[str, Any]:
    """``{split: {"images": n, "annotations": n, "persons": n, "source": path}}`` of the
    train and test sets. ``persons``: the non-crowd annotations with at least one labelled
    keypoint, the ones training reads."""
    from hrnet.coco import PoseDataError, annotation_file

    d = cfg.DATASET
    out = {}
    for image_set in dict.fromkeys([d.TRAIN_SET, d.TEST_SET]):
        path = annotation_file(d.ROOT, image_set)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:  # a user error: `harness` prints it as one line
            raise FileNotFoundError(errno.ENOENT, "COCO annotation file not found", path) from None
        except (OSError, ValueError) as e:
            raise PoseDataError(f"cannot read COCO annotation file {path}: {e}") from e
        annotations = data.get("annotations", [])
        persons = sum(1 for a in annotations if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0)
        out[image_set] = {
            "images": len(data.get("images", [])),
            "annotations": len(annotations),
            "persons": persons,
            "source": path,
            **_bad_sample_counts(cfg, data, path, os.path.join(d.ROOT, "images", image_set)),
        }
    return out


def _bad_sample_counts(cfg: CN, data: dict[str, Any], path: str, image_dir: str) -> dict[str, Any]:
    """The checks the dataset makes when built (hrnet/annotation_checks.py): counts by reason,
    and how many DATA.ON_BAD_SAMPLE skip drops (error: the run would stop at the first)."""
    from hrnet.annotation_checks import check_annotations, count_reasons

    bad = check_annotations(data, path, image_dir, int(cfg.MODEL.NUM_JOINTS))
    skip = cfg.DATA.get("ON_BAD_SAMPLE", "error") == "skip"
    return {"bad_annotations": count_reasons(bad), "skipped": len(bad) if skip else 0}


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 128x128 (WxH), got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"--size must be at least 32x32, got {text!r}")
    return w, h


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_data_cli(data_subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth-coco`` to the ``harness data`` subcommands."""
    parser = data_subparsers.add_parser(
        "synth-coco",
        help="write a synthetic COCO keypoints set (stick figures)",
        description="Write synthetic COCO keypoint annotations, images and detection results.",
    )
    parser.add_argument("out", metavar="OUT", help="output directory (DATASET.ROOT for training)")
    parser.add_argument("--images", type=_positive, required=True, help="number of training images")
    parser.add_argument(
        "--val-images",
        type=_positive,
        default=None,
        help="number of validation images (default: a quarter of --images, at least 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the whole set")
    parser.add_argument(
        "--size", type=_parse_size, default=(128, 128), help="image size WxH (default 128x128)"
    )
    parser.set_defaults(func=_run_synth_coco)


def _run_synth_coco(args: argparse.Namespace) -> int:
    from hrnet.synth import run_synth_coco

    return run_synth_coco(args)
