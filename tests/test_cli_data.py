"""`harness data`: each workload contributes its subcommands through the registry, and
`data summary` works for every workload (pose: images, annotations, persons per set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import build_parser, main
from harness.tasks import WORKLOADS
from hrnet.synth import SynthSpec, generate

TINY_POSE = "configs/pose/tiny_synthetic.yaml"


def test_every_workload_contributes_its_data_subcommands() -> None:
    data = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices["data"]._actions
        if a.dest == "data_command"
    )
    assert {"summary", "synth-fer", "synth-coco"} <= set(data.choices)
    assert set(WORKLOADS) == {"fer", "pose"}


def test_pose_data_summary_counts_images_annotations_and_persons(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "coco"
    generate(str(root), SynthSpec(train_images=5, val_images=2, seed=1))
    assert main(["data", "summary", "--config", TINY_POSE, "DATASET.ROOT", str(root)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"train", "val"}
    for image_set, images in (("train", 5), ("val", 2)):
        annotations = json.loads((root / "annotations" / f"person_keypoints_{image_set}.json").read_text())
        persons = [a for a in annotations["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
        assert summary[image_set]["images"] == images == len(annotations["images"])
        assert summary[image_set]["annotations"] == len(annotations["annotations"])
        assert summary[image_set]["persons"] == len(persons) > 0


def test_data_summary_of_a_missing_set_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "summary", "--config", TINY_POSE, "DATASET.ROOT", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: COCO annotation file not found") and len(err.splitlines()) == 1
