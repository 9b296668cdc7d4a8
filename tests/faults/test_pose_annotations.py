"""Pose annotations checked when the dataset is built (issue 10, item 12): each bad annotation
names the file and its id; DATA.ON_BAD_SAMPLE skip drops and counts them (log, run.json,
`harness data summary`)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.config import load_config
from hrnet.coco import COCOKeypoints, PoseDataError
from hrnet.synth import SynthSpec, generate

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "pose" / "tiny_synthetic.yaml")


@pytest.fixture(scope="module")
def pose_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pose_bad")
    generate(str(root), SynthSpec(train_images=6, val_images=3, seed=5))
    return root


def corrupt(pose_root: Path, tmp_path: Path, change: Any) -> tuple[Path, Path, int]:
    """A copy of the set whose first train annotation ``change(ann, data, root)`` corrupts."""
    root = tmp_path / "root"
    shutil.copytree(pose_root, root)
    path = root / "annotations" / "person_keypoints_train.json"
    data = json.loads(path.read_text())
    ann = next(a for a in data["annotations"] if not a.get("iscrowd") and max(a["keypoints"]) > 0)
    change(ann, data, root)
    path.write_text(json.dumps(data))
    return root, path, ann["id"]


def _box(ann: dict, data: dict, root: Path) -> None:
    ann["bbox"][2] = 0.0


def _negative_height(ann: dict, data: dict, root: Path) -> None:
    ann["bbox"][3] = -4.0


def _text_keypoint(ann: dict, data: dict, root: Path) -> None:
    ann["keypoints"][4] = "12.5"


def _short_keypoints(ann: dict, data: dict, root: Path) -> None:
    ann["keypoints"] = ann["keypoints"][:48]


def _unknown_image(ann: dict, data: dict, root: Path) -> None:
    ann["image_id"] = 987654


def _missing_image(ann: dict, data: dict, root: Path) -> None:
    image = next(i for i in data["images"] if i["id"] == ann["image_id"])
    (root / "images" / "train" / image["file_name"]).unlink()


CASES = [
    (_box, r"has a box of width 0\.0 and height [\d.]+; both must be > 0", "bad_box"),
    (_negative_height, r"has a box of width [\d.]+ and height -4\.0", "bad_box"),
    (_text_keypoint, r"has a non-numeric keypoint value '12\.5' \(joint 1, y\)", "bad_keypoints"),
    (_short_keypoints, r"has 48 keypoint values; expected 51 \(17 joints x, y, v\)", "bad_keypoints"),
    (_unknown_image, r"is for image id 987654, which is not in the set's images", "unknown_image"),
    (_missing_image, r": image file not found: .*images/train/", "missing_image"),
]


@pytest.mark.parametrize("change, message, reason", CASES, ids=[c[2] + c[0].__name__ for c in CASES])
def test_bad_annotation_is_named_when_the_dataset_is_built(
    pose_root: Path, tmp_path: Path, change: Any, message: str, reason: str
) -> None:
    root, path, ann_id = corrupt(pose_root, tmp_path, change)
    cfg = load_config(TINY, ["DATASET.ROOT", str(root)])
    with pytest.raises(PoseDataError, match=rf"^{path}: annotation {ann_id}\b.*{message}") as info:
        COCOKeypoints(cfg, "train", is_train=True)
    assert "DATA.ON_BAD_SAMPLE skip" in str(info.value) and len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("change, message, reason", CASES, ids=[c[2] + c[0].__name__ for c in CASES])
def test_skip_drops_and_counts_the_bad_annotation(
    pose_root: Path, tmp_path: Path, change: Any, message: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    clean = COCOKeypoints(load_config(TINY, ["DATASET.ROOT", str(pose_root)]), "train", is_train=True)
    root, path, ann_id = corrupt(pose_root, tmp_path, change)
    cfg = load_config(TINY, ["DATASET.ROOT", str(root), "DATA.ON_BAD_SAMPLE", "skip"])
    with caplog.at_level(logging.WARNING, logger="harness"):
        dataset = COCOKeypoints(cfg, "train", is_train=True)
    # A missing image drops every person on it, each counted; the others drop one annotation.
    dropped = len(clean) - len(dataset)
    assert dataset.skipped == {reason: dropped} and (dropped == 1 or change is _missing_image and dropped > 1)
    dataset[(0, len(dataset) - 1)]  # items still load
    assert f"{dropped} bad annotation(s) dropped from {path} ({reason} {dropped})" in caplog.text


@pytest.mark.slow  # one real (tiny) pose training run: ~60 s on 2 busy cores
def test_run_json_and_data_summary_count_the_skipped(
    pose_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root, _, _ = corrupt(pose_root, tmp_path, _text_keypoint)
    from harness.cli import main
    from harness.spawn import launch

    capsys.readouterr()
    assert (
        main(["data", "summary", "--config", TINY, "DATASET.ROOT", str(root), "DATA.ON_BAD_SAMPLE", "skip"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"]["bad_annotations"] == {"bad_keypoints": 1} and summary["train"]["skipped"] == 1
    assert summary["val"]["bad_annotations"] == {} and summary["val"]["skipped"] == 0

    cfg = load_config(
        TINY,
        [
            "DATASET.ROOT",
            str(root),
            "DATA.ON_BAD_SAMPLE",
            "skip",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            "RUN_NAME",
            "skip",
            "TRAIN.EPOCHS",
            "1",
            "TRAIN.MAX_STEPS_PER_EPOCH",
            "1",
            "LOG.WANDB.MODE",
            "disabled",
            "DATA.NUM_WORKERS",
            "0",
            "TRAIN.BATCH_SIZE_PER_GPU",
            "4",
        ],
    )
    assert launch(cfg) == "completed"
    run_dir = tmp_path / "out" / "skip"
    identity = json.loads((run_dir / "run.json").read_text())
    assert identity["skipped_samples"] == {"train": {"bad_keypoints": 1}}
    assert "DATA.ON_BAD_SAMPLE skip: 1 bad annotation(s) dropped" in (run_dir / "train.log").read_text()


def test_detection_for_a_missing_image_is_named_when_built(pose_root: Path, tmp_path: Path) -> None:
    from hrnet.synth import DETECTIONS_FILE

    root = tmp_path / "root"
    shutil.copytree(pose_root, root)
    bbox_file = root / DETECTIONS_FILE.format("val")
    detection = json.loads(bbox_file.read_text())[0]
    data = json.loads((root / "annotations" / "person_keypoints_val.json").read_text())
    image = next(i for i in data["images"] if i["id"] == detection["image_id"])
    missing = root / "images" / "val" / image["file_name"]
    missing.unlink()
    opts = [
        "DATASET.ROOT",
        str(root),
        "TEST.USE_GT_BBOX",
        "false",
        "TEST.COCO_BBOX_FILE",
        str(bbox_file),
        "TEST.IMAGE_THRE",
        "0.0",
    ]
    with pytest.raises(
        PoseDataError,
        match=rf"^{bbox_file}: detection for image id {image['id']}: image "
        rf"file not found: {missing}",
    ):
        COCOKeypoints(load_config(TINY, opts), "val", is_train=False)
    dataset = COCOKeypoints(load_config(TINY, [*opts, "DATA.ON_BAD_SAMPLE", "skip"]), "val", is_train=False)
    dropped = sum(
        1
        for d in json.loads(bbox_file.read_text())
        if d["image_id"] == image["id"] and d.get("category_id") == 1
    )
    assert dataset.skipped == {"missing_image": dropped} and len(dataset) > 0
    assert image["id"] not in set(dataset.image_ids.tolist())
