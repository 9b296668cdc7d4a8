"""The COCO pose workload as seen by the training engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from yacs.config import CfgNode as CN

from harness.tasks import Evaluator, Task
from hrnet import workload
from hrnet.coco import COCOKeypoints
from hrnet.evaluation import PoseEvaluator
from hrnet.inference import flip_test
from hrnet.loss import build_loss
from hrnet.transforms import COCO_FLIP_PAIRS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PoseTask(Task):
    """Top-down HRNet keypoint estimation on COCO-format data, scored by COCO AP."""

    name = workload.NAME
    primary_metric = workload.PRIMARY_METRIC
    higher_is_better = workload.HIGHER_IS_BETTER

    def __init__(self, cfg: CN):
        super().__init__(cfg)
        self.criterion = build_loss(cfg.LOSS.USE_TARGET_WEIGHT, cfg.LOSS.USE_OHKM, cfg.LOSS.TOPK)

    def build_model(self) -> nn.Module:
        from hrnet.model import build_model

        return build_model(self.cfg)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        d = self.cfg.DATASET
        return COCOKeypoints(self.cfg, d.TRAIN_SET, is_train=True), COCOKeypoints(
            self.cfg, d.TEST_SET, is_train=False
        )

    def build_evaluator(self, val_dataset: Dataset, output_dir: Path | None = None) -> Evaluator:
        t = self.cfg.TEST
        return PoseEvaluator(
            val_dataset.coco,
            in_vis_thre=t.IN_VIS_THRE,
            oks_thre=t.OKS_THRE,
            soft_nms=t.SOFT_NMS,
            post_process=t.POST_PROCESS,
            output_dir=output_dir,
        )

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        return self.criterion(outputs, batch["target"], batch["target_weight"])

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        if self.cfg.TEST.FLIP_TEST:
            return flip_test(model, batch["input"], COCO_FLIP_PAIRS, self.cfg.TEST.SHIFT_HEATMAP)
        outputs = self.forward(model, batch)
        return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x - mean) / std
