"""COCO keypoint evaluation of pose predictions, correct under DDP.

Each rank decodes its own batches (``process``); ``evaluate`` gathers every rank's
per-person predictions to all ranks, keeps each dataset index once, and rank 0 runs
rescoring, OKS NMS and ``COCOeval(iouType="keypoints")``; the metrics are then
broadcast so every rank returns the same dict.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from harness import distributed
from harness.tasks import Evaluator
from hrnet.inference import get_final_preds, oks_nms, rescore, soft_oks_nms

# Order of COCOeval.stats for keypoints.
METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def coco_keypoint_eval(coco_gt: COCO, results: str | list[dict[str, Any]]) -> dict[str, float]:
    """The ten COCO keypoint metrics of a results file (or list) against ``coco_gt``.
    No detections at all scores 0 everywhere (pycocotools refuses an empty list)."""
    if isinstance(results, str):
        with open(results) as f:
            loaded = json.load(f)
    else:
        loaded = results
    if not loaded:
        return dict.fromkeys(METRIC_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results if isinstance(results, str) else list(results))
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        coco_eval.params.useSegm = None
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    # COCOeval reports -1 for an empty area range; keep it (it means "no such persons").
    return {name: float(value) for name, value in zip(METRIC_NAMES, coco_eval.stats)}


def select_persons(
    predictions: dict[int, dict[str, Any]], in_vis_thre: float, oks_thre: float, soft_nms: bool = False
) -> list[dict[str, Any]]:
    """COCO results records from per-person predictions: rescoring, then OKS NMS per image.

    ``predictions`` maps dataset index -> ``{"image_id", "keypoints" (J, 3), "center",
    "scale", "area", "box_score"}``; iteration follows the index so every rank and every
    world size produce the same file.
    """
    by_image: dict[int, list[dict[str, Any]]] = {}
    for index in sorted(predictions):
        pred = predictions[index]
        by_image.setdefault(int(pred["image_id"]), []).append(pred)
    results = []
    nms = soft_oks_nms if soft_nms else oks_nms
    for image_id in sorted(by_image):
        persons = by_image[image_id]
        keypoints = np.stack([np.asarray(p["keypoints"], dtype=np.float64) for p in persons])
        scores = rescore(keypoints[:, :, 2], np.array([p["box_score"] for p in persons]), in_vis_thre)
        areas = np.array([p["area"] for p in persons], dtype=np.float64)
        keep = nms(keypoints, scores, areas, oks_thre)
        for k in keep:
            results.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints": [round(float(v), 4) for v in keypoints[k].ravel()],
                    "score": float(scores[k]),
                    "center": [float(v) for v in persons[k]["center"]],
                    "scale": [float(v) for v in persons[k]["scale"]],
                }
            )
    return results


class PoseEvaluator(Evaluator):
    """Evaluator for heatmap outputs of ``PoseTask.eval_forward``.

    ``output_dir``: where ``keypoints_results.json`` is written (kept for inspection);
    a temporary directory when None.
    """

    def __init__(
        self,
        coco_gt: COCO,
        in_vis_thre: float = 0.2,
        oks_thre: float = 0.9,
        soft_nms: bool = False,
        post_process: bool = True,
        output_dir: str | None = None,
    ):
        self.coco_gt = coco_gt
        self.in_vis_thre = in_vis_thre
        self.oks_thre = oks_thre
        self.soft_nms = soft_nms
        self.post_process = post_process
        self.output_dir = output_dir
        self.last_results_file: str | None = None
        self.predictions: dict[int, dict[str, Any]] = {}

    def reset(self) -> None:
        self.predictions = {}

    def process(self, batch: dict[str, Any], outputs: Any) -> None:
        heatmaps = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        center = _numpy(batch["center"])
        scale = _numpy(batch["scale"])
        coords, maxvals = get_final_preds(heatmaps, center, scale, post_process=self.post_process)
        self.add_predictions(
            _numpy(batch["index"]),
            _numpy(batch["image_id"]),
            np.concatenate([coords, maxvals], axis=2),
            center,
            scale,
            _numpy(batch["score"]),
        )

    def add_predictions(
        self,
        indices: Sequence[int],
        image_ids: Sequence[int],
        keypoints: np.ndarray,
        centers: np.ndarray,
        scales: np.ndarray,
        box_scores: Sequence[float],
    ) -> None:
        """Record decoded persons: keypoints (N, J, 3) in image pixels with their maxima."""
        for i, index in enumerate(indices):
            self.predictions[int(index)] = {
                "image_id": int(image_ids[i]),
                "keypoints": np.asarray(keypoints[i], dtype=np.float32),
                "center": np.asarray(centers[i], dtype=np.float32),
                "scale": np.asarray(scales[i], dtype=np.float32),
                "area": float(np.prod(np.asarray(scales[i], dtype=np.float64) * 200.0)),
                "box_score": float(box_scores[i]),
            }

    def evaluate(self) -> dict[str, float]:
        merged: dict[int, dict[str, Any]] = {}
        for shard in distributed.gather_objects(self.predictions):
            # A padded sampler can hand one person to two ranks; it counts once.
            merged.update(shard)
        metrics = None
        if distributed.is_main():
            results = select_persons(merged, self.in_vis_thre, self.oks_thre, self.soft_nms)
            metrics = self._evaluate_results(results)
        return distributed.broadcast_object(metrics)

    def _evaluate_results(self, results: list[dict[str, Any]]) -> dict[str, float]:
        if self.output_dir is None:
            with tempfile.TemporaryDirectory(prefix="pose-eval-") as tmp:
                return self._write_and_score(results, os.path.join(tmp, "keypoints_results.json"))
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, "keypoints_results.json")
        self.last_results_file = path
        return self._write_and_score(results, path)

    def _write_and_score(self, results: list[dict[str, Any]], path: str) -> dict[str, float]:
        tmp_path = path + ".tmp"
        with open(tmp_path, "w") as f:
            json.dump(results, f)
        os.replace(tmp_path, path)
        return coco_keypoint_eval(self.coco_gt, path)


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
