"""COCO keypoint dataset: reading, augmentation consistency, determinism, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from torch.utils.data import DataLoader

from harness.config import load_config
from hrnet.coco import COCOKeypoints, PoseDataError
from hrnet.synth import DETECTIONS_FILE, JOINT_COLORS, SynthSpec, generate
from hrnet.transforms import COCO_KEYPOINT_NAMES

TINY_CONFIG = "configs/pose/tiny_synthetic.yaml"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("synth_coco_data"))
    generate(root, SynthSpec(train_images=24, val_images=8, seed=3))
    return root


def _cfg(root: str, *opts: str):
    return load_config(TINY_CONFIG, ["DATASET.ROOT", root, *opts])


def test_synth_cli_writes_exact_coco_format(tmp_path) -> None:
    out = tmp_path / "coco"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "data",
            "synth-coco",
            str(out),
            "--images",
            "6",
            "--val-images",
            "3",
            "--seed",
            "1",
            "--size",
            "160x120",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for image_set, count in (("train", 6), ("val", 3)):
        path = out / "annotations" / f"person_keypoints_{image_set}.json"
        coco = COCO(str(path))
        assert len(coco.getImgIds()) == count
        assert len(os.listdir(out / "images" / image_set)) == count
        category = coco.loadCats(1)[0]
        assert category["keypoints"] == list(COCO_KEYPOINT_NAMES) and len(category["skeleton"]) == 19
        anns = coco.dataset["annotations"]
        assert anns and all(
            1 <= len([a for a in anns if a["image_id"] == i]) <= 3
            for i in coco.getImgIds()
            if coco.getAnnIds(imgIds=i)
        )
        for ann in anns:
            kpts = np.asarray(ann["keypoints"]).reshape(17, 3)
            assert set(kpts[:, 2].tolist()) <= {0, 1, 2}
            assert ann["num_keypoints"] == int((kpts[:, 2] > 0).sum())
            assert np.all(kpts[kpts[:, 2] == 0, :2] == 0)
            assert ann["iscrowd"] == 0 and ann["area"] > 0 and len(ann["bbox"]) == 4
            x, y, w, h = ann["bbox"]
            labelled = kpts[kpts[:, 2] > 0, :2]
            assert np.all(labelled >= [x - 1, y - 1]) and np.all(labelled <= [x + w + 1, y + h + 1])
        assert coco.imgs[coco.getImgIds()[0]]["width"] == 160
    with open(out / DETECTIONS_FILE.format("val")) as f:
        detections = json.load(f)
    assert {d["image_id"] for d in detections} <= set(
        COCO(str(out / "annotations/person_keypoints_val.json")).getImgIds()
    )
    assert all(d["category_id"] == 1 and 0 < d["score"] <= 1 for d in detections)


def test_training_skips_crowd_and_keypointless_persons(synth_root: str, tmp_path) -> None:
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    path = root / "annotations" / "person_keypoints_train.json"
    data = json.loads(path.read_text())
    persons = len(data["annotations"])
    template = data["annotations"][0]
    data["annotations"].append({**template, "id": 900001, "iscrowd": 1})
    data["annotations"].append({**template, "id": 900002, "keypoints": [0] * 51, "num_keypoints": 0})
    data["annotations"].append({**template, "id": 900003, "area": 0})
    path.write_text(json.dumps(data))
    dataset = COCOKeypoints(_cfg(str(root)), "train", is_train=True)
    assert len(dataset) == persons
    assert len(COCOKeypoints(_cfg(synth_root), "val", is_train=False)) == len(
        COCO(os.path.join(synth_root, "annotations", "person_keypoints_val.json")).getAnnIds()
    )


def test_items_collate_and_augmentation_depends_only_on_seed_epoch_index(synth_root: str) -> None:
    dataset = COCOKeypoints(_cfg(synth_root), "train", is_train=True)
    item = dataset[(2, 5)]
    assert item["input"].dtype == torch.uint8 and item["input"].shape == (3, 128, 96)
    assert item["target"].shape == (17, 32, 24) and item["target_weight"].shape == (17, 1)
    again = dataset[(2, 5)]
    assert all(torch.equal(torch.as_tensor(item[k]), torch.as_tensor(again[k])) for k in item)
    assert not torch.equal(item["input"], dataset[(3, 5)]["input"])
    other_seed = COCOKeypoints(_cfg(synth_root, "SEED", "7"), "train", is_train=True)
    assert not torch.equal(item["input"], other_seed[(2, 5)]["input"])

    keys = [(1, i) for i in range(8)]
    serial = list(DataLoader(dataset, batch_size=4, sampler=keys, num_workers=0))
    parallel = list(DataLoader(dataset, batch_size=4, sampler=keys, num_workers=2))
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert serial[0]["index"].tolist() == [0, 1, 2, 3]

    val = COCOKeypoints(_cfg(synth_root), "val", is_train=False)
    assert torch.equal(val[0]["input"], val[0]["input"])
    assert val[0]["rotation"] == 0.0 and val[0]["score"] == 1.0


def test_color_order_follows_color_rgb(synth_root: str) -> None:
    rgb = COCOKeypoints(_cfg(synth_root, "DATASET.COLOR_RGB", "True"), "val", is_train=False)[1]["input"]
    bgr = COCOKeypoints(_cfg(synth_root, "DATASET.COLOR_RGB", "False"), "val", is_train=False)[1]["input"]
    assert torch.equal(rgb.flip(0), bgr) and not torch.equal(rgb, bgr)


@pytest.mark.parametrize("half_body", [0.0, 1.0])
def test_flip_half_body_and_rotation_keep_keypoints_on_their_labels(
    synth_root: str, half_body: float
) -> None:
    """Each labelled limb joint lands on a dot of its own colour in the augmented crop,
    and the left shoulder/hip stay on the image right of the right ones (the figures
    face the camera), so flipped samples swapped their left/right labels."""
    opts = [
        "DATASET.FLIP",
        "True",
        "DATASET.ROT_FACTOR",
        "20",
        "DATASET.SCALE_FACTOR",
        "0.3",
        "DATASET.PROB_HALF_BODY",
        str(half_body),
        "DATASET.NUM_JOINTS_HALF_BODY",
        "3",
    ]
    dataset = COCOKeypoints(_cfg(synth_root, *opts), "train", is_train=True)
    unflipped = COCOKeypoints(_cfg(synth_root, *opts, "DATASET.FLIP", "False"), "train", is_train=True)
    colors = np.array(JOINT_COLORS, dtype=float)
    on_label, mirrored, flips, half_crops = [], [], 0, 0
    for index in range(len(dataset)):
        item = dataset[(0, index)]
        flips += not torch.equal(item["input"], unflipped[(0, index)]["input"])
        box_center = dataset.centers[index]
        mirrored_center = [128 - 1 - box_center[0], box_center[1]]  # the synthetic images are 128 wide
        half_crops += not (
            np.allclose(item["center"].numpy(), box_center)
            or np.allclose(item["center"].numpy(), mirrored_center)
        )
        image = item["input"].permute(1, 2, 0).numpy().astype(float)
        joints = item["joints"].numpy()
        for k in range(5, 17):
            x, y, v = joints[k]
            xi, yi, xm = int(round(x)), int(round(y)), int(round(95 - x))
            if v > 0 and 0 <= xi < 96 and 0 <= yi < 128 and 0 <= xm < 96:
                on_label.append(np.abs(image[yi, xi] - colors[k]).mean())
                mirrored.append(np.abs(image[yi, xm] - colors[k]).mean())
        for left, right in ((5, 6), (11, 12)):
            if joints[left, 2] > 0 and joints[right, 2] > 0:
                assert joints[left, 0] > joints[right, 0], f"left/right labels swapped in item {index}"
        # A joint far off the 24x32 heatmap (its gaussian misses it) has weight 0.
        weight = item["target_weight"].numpy()[:, 0]
        hm = joints[:, :2] / 4
        reach = 3 * dataset.sigma + 3  # the gaussian's 3-sigma window, plus slack
        off_map = (
            (hm[:, 0] < -reach) | (hm[:, 0] > 24 + reach) | (hm[:, 1] < -reach) | (hm[:, 1] > 32 + reach)
        )
        assert np.all(weight[off_map | (joints[:, 2] == 0)] == 0)
    assert flips > len(dataset) // 4
    assert (half_crops > len(dataset) // 4) == (half_body > 0)
    assert np.median(on_label) < 20 < 60 < np.median(mirrored)


def test_detection_boxes_for_validation(synth_root: str) -> None:
    bbox_file = os.path.join(synth_root, DETECTIONS_FILE.format("val"))
    with open(bbox_file) as f:
        detections = json.load(f)
    cfg = _cfg(
        synth_root, "TEST.USE_GT_BBOX", "False", "TEST.COCO_BBOX_FILE", bbox_file, "TEST.IMAGE_THRE", "0.5"
    )
    dataset = COCOKeypoints(cfg, "val", is_train=False)
    kept = [d for d in detections if d["score"] >= 0.5]
    assert 0 < len(kept) < len(detections)
    assert len(dataset) == len(kept)
    assert sorted(dataset.scores.tolist()) == pytest.approx(sorted(d["score"] for d in kept))
    missing = _cfg(synth_root, "TEST.USE_GT_BBOX", "False", "TEST.COCO_BBOX_FILE", "nowhere.json")
    with pytest.raises(PoseDataError, match="TEST.COCO_BBOX_FILE.*nowhere.json"):
        COCOKeypoints(missing, "val", is_train=False)


def test_missing_or_unreadable_image_names_the_file(synth_root: str, tmp_path) -> None:
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    dataset = COCOKeypoints(_cfg(str(root)), "val", is_train=False)
    first = dataset.image_paths[int(dataset.image_ids[0])]
    os.remove(first)
    with pytest.raises(PoseDataError, match=f"image file not found: {first}"):
        dataset[0]
    with open(first, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(PoseDataError, match=f"cannot decode image file {first}"):
        dataset[0]
    with pytest.raises(PoseDataError, match="person_keypoints_nosuchset.json"):
        COCOKeypoints(_cfg(str(root)), "nosuchset", is_train=False)
