"""COCO keypoint evaluation: our pipeline against pycocotools, and under a 2-rank gloo group."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader

from harness.config import load_config
from harness.world import find_free_port
from hrnet.coco import COCOKeypoints, load_coco
from hrnet.evaluation import METRIC_NAMES, PoseEvaluator
from hrnet.inference import oks_nms, rescore
from hrnet.synth import SynthSpec, generate
from hrnet.transforms import box_to_center_scale

TINY_CONFIG = "configs/pose/tiny_synthetic.yaml"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("synth_coco_eval"))
    generate(root, SynthSpec(train_images=2, val_images=24, seed=5))
    return root


def _gt_persons(coco) -> list[dict]:
    """Ground-truth persons of the val set as evaluator inputs (index = annotation order)."""
    persons = []
    for ann in sorted(coco.dataset["annotations"], key=lambda a: a["id"]):
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        center, scale = box_to_center_scale(ann["bbox"], 0.75)
        persons.append({"image_id": ann["image_id"], "kpts": kpts, "center": center, "scale": scale})
    return persons


def _add(
    evaluator: PoseEvaluator, persons: list[dict], indices: list[int], noise: float = 0.0, seed: int = 0
) -> None:
    for i in indices:
        rng = np.random.default_rng([seed, i])  # per person, so any sharding adds the same noise
        p = persons[i]
        xy = p["kpts"][:, :2] + rng.normal(0, noise, size=(17, 2)) * np.sqrt(np.prod(p["scale"]) * 4e4) / 10
        confidence = np.where(p["kpts"][:, 2] > 0, 0.9, 0.1) + rng.uniform(-0.05, 0.05, size=17)
        keypoints = np.concatenate([xy, confidence[:, None]], axis=1)[None]
        evaluator.add_predictions([i], [p["image_id"]], keypoints, p["center"][None], p["scale"][None], [1.0])


def _direct_cocoeval(coco, results_file: str) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco, coco.loadRes(results_file), "keypoints")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return dict(zip(METRIC_NAMES, map(float, coco_eval.stats)))


def test_ground_truth_predictions_score_ap_one(synth_root: str) -> None:
    coco = load_coco(os.path.join(synth_root, "annotations", "person_keypoints_val.json"))
    persons = _gt_persons(coco)
    evaluator = PoseEvaluator(coco, in_vis_thre=0.2, oks_thre=0.9)
    _add(evaluator, persons, list(range(len(persons))))
    metrics = evaluator.evaluate()
    assert set(metrics) == set(METRIC_NAMES)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)


def test_ground_truth_heatmaps_through_dataset_and_decoding_score_ap_one(synth_root: str) -> None:
    """Dataset crop -> target heatmaps as the 'network output' -> process -> COCOeval."""
    cfg = load_config(
        TINY_CONFIG,
        [
            "DATASET.ROOT",
            synth_root,
            "MODEL.IMAGE_SIZE",
            "[192, 256]",
            "MODEL.HEATMAP_SIZE",
            "[48, 64]",
            "MODEL.SIGMA",
            "2.0",
        ],
    )
    dataset = COCOKeypoints(cfg, "val", is_train=False)
    evaluator = PoseEvaluator(dataset.coco, cfg.TEST.IN_VIS_THRE, cfg.TEST.OKS_THRE)
    for batch in DataLoader(dataset, batch_size=16):
        evaluator.process(batch, batch["target"])
    metrics = evaluator.evaluate()
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AR"] == pytest.approx(1.0)


def test_perturbed_predictions_equal_cocoeval_on_the_same_results_file(synth_root: str, tmp_path) -> None:
    coco = load_coco(os.path.join(synth_root, "annotations", "person_keypoints_val.json"))
    persons = _gt_persons(coco)
    evaluator = PoseEvaluator(coco, in_vis_thre=0.2, oks_thre=0.9, output_dir=str(tmp_path))
    _add(evaluator, persons, list(range(len(persons))), noise=0.4, seed=1)
    ours = evaluator.evaluate()
    assert 0.05 < ours["AP"] < 0.95  # really perturbed, really scored
    direct = _direct_cocoeval(coco, evaluator.last_results_file)
    assert ours == pytest.approx(direct, abs=1e-12)
    with open(evaluator.last_results_file) as f:
        results = json.load(f)
    assert {r["image_id"] for r in results} == {p["image_id"] for p in persons}
    assert all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in results)


def test_no_predictions_score_zero(synth_root: str) -> None:
    coco = load_coco(os.path.join(synth_root, "annotations", "person_keypoints_val.json"))
    assert PoseEvaluator(coco).evaluate() == dict.fromkeys(METRIC_NAMES, 0.0)


def test_rescoring_and_oks_nms() -> None:
    scores = rescore(np.array([[0.9, 0.5, 0.1], [0.1, 0.1, 0.1]]), np.array([0.5, 1.0]), in_vis_thre=0.2)
    assert scores.tolist() == pytest.approx([0.5 * 0.7, 0.0])
    rng = np.random.default_rng(0)
    base = np.concatenate([rng.uniform(0, 100, size=(17, 2)), np.ones((17, 1))], axis=1)
    near = base.copy()
    near[:, :2] += 0.5
    far = base.copy()
    far[:, :2] += 60
    poses = np.stack([near, base, far])
    keep = oks_nms(poses, np.array([0.8, 0.9, 0.7]), np.array([4000.0] * 3), threshold=0.9)
    assert keep == [1, 2]  # the near duplicate of the best pose goes, the distant pose stays
    assert oks_nms(poses, np.array([0.8, 0.9, 0.7]), np.array([4000.0] * 3), threshold=1.0) == [1, 0, 2]


def _ddp_worker(rank: int, port: int, root: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        coco = load_coco(os.path.join(root, "annotations", "person_keypoints_val.json"))
        persons = _gt_persons(coco)
        half = len(persons) // 2
        # Rank 1 also gets index `half - 1`, as a padded sampler would: it must count once.
        mine = list(range(half)) if rank == 0 else list(range(half - 1, len(persons)))
        evaluator = PoseEvaluator(coco, in_vis_thre=0.2, oks_thre=0.9)
        _add(evaluator, persons, mine, noise=0.4, seed=1)
        metrics = evaluator.evaluate()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(metrics, f)
    finally:
        dist.destroy_process_group()


def test_ddp_gathered_evaluation_equals_single_process(synth_root: str, tmp_path) -> None:
    coco = load_coco(os.path.join(synth_root, "annotations", "person_keypoints_val.json"))
    persons = _gt_persons(coco)
    single = PoseEvaluator(coco, in_vis_thre=0.2, oks_thre=0.9)
    _add(single, persons, list(range(len(persons))), noise=0.4, seed=1)
    expected = single.evaluate()

    # fork: the workers need no fresh interpreter (spawn would re-import torch twice).
    mp.start_processes(
        _ddp_worker,
        args=(find_free_port(), synth_root, str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.json") as f:
            assert json.load(f) == pytest.approx(expected, abs=1e-12)
