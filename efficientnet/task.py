"""The FER2013 facial-expression workload: EfficientNet classification."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from yacs.config import CfgNode as CN

from efficientnet import workload
from efficientnet.data import FERArrays, FERDataset, class_weights, load_fer_splits, sample_weights
from efficientnet.metrics import FEREvaluator
from efficientnet.model import build_fer_model
from efficientnet.transforms import FERAugment
from harness.config import ConfigError
from harness.tasks import Evaluator, Task


def hold_out(arrays: FERArrays, fraction: float, seed: int) -> tuple[FERArrays, FERArrays]:
    """(train, val): a seeded random ``fraction`` of ``arrays`` as validation (at least one
    sample), the rest for training, both in their original order (DATASET.VAL_FRACTION)."""
    n_val = max(1, round(len(arrays) * fraction))
    if n_val >= len(arrays):
        raise ConfigError(f"DATASET.VAL_FRACTION {fraction} leaves no training samples of {len(arrays)}")
    is_val = np.zeros(len(arrays), dtype=bool)
    is_val[np.random.default_rng(seed).permutation(len(arrays))[:n_val]] = True
    where = f"{arrays.source} (seeded {fraction:g} hold-out)"
    return (
        FERArrays(arrays.images[~is_val], arrays.labels[~is_val], arrays.source),
        FERArrays(arrays.images[is_val], arrays.labels[is_val], where),
    )


class FERTask(Task):
    name = workload.NAME
    primary_metric = workload.PRIMARY_METRIC
    higher_is_better = workload.HIGHER_IS_BETTER

    def __init__(self, cfg: CN):
        super().__init__(cfg)
        self._loss_weights: torch.Tensor | None = None

    def build_model(self) -> nn.Module:
        return build_fer_model(self.cfg)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        d = self.cfg.DATASET
        if not d.ROOT:
            raise ConfigError(
                "DATASET.ROOT is empty: point it at fer2013.csv, a torchvision root or a "
                "folder set (or make one with `harness data synth-fer`)"
            )
        if d.VAL_FRACTION > 0:
            whole = load_fer_splits(os.path.expanduser(d.ROOT), [d.TRAIN_SPLIT], d.FORMAT)[d.TRAIN_SPLIT]
            train, val = hold_out(whole, d.VAL_FRACTION, self.cfg.SEED)
        else:
            splits = load_fer_splits(os.path.expanduser(d.ROOT), [d.TRAIN_SPLIT, d.VAL_SPLIT], d.FORMAT)
            train, val = splits[d.TRAIN_SPLIT], splits[d.VAL_SPLIT]
        if self.cfg.TRAIN.CLASS_WEIGHTING == "loss":
            self._loss_weights = class_weights(train.labels)
        aug = FERAugment.from_config(d.AUG, d.IMAGE_SIZE)
        return (FERDataset(train, True, aug, self.cfg.SEED), FERDataset(val, False, aug, self.cfg.SEED))

    def train_sample_weights(self, train_dataset: Dataset) -> torch.Tensor | None:
        if self.cfg.TRAIN.CLASS_WEIGHTING != "sampler":
            return None
        return sample_weights(train_dataset.labels).double()

    def build_evaluator(self, val_dataset: Dataset, output_dir: Path | None = None) -> Evaluator:
        return FEREvaluator(self.cfg.MODEL.NUM_CLASSES)

    def loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        weight = None
        if self._loss_weights is not None:
            weight = self._loss_weights = self._loss_weights.to(outputs.device)
        return F.cross_entropy(
            outputs.float(), batch["target"], weight=weight, label_smoothing=self.cfg.TRAIN.LABEL_SMOOTHING
        )

    def train_metrics(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        # Top-1 on the training batch (augmented views, dropout on), computed on the device.
        return {"acc": (outputs.argmax(dim=1) == batch["target"]).float().mean()}

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub_(self.cfg.DATASET.MEAN).div_(self.cfg.DATASET.STD)
