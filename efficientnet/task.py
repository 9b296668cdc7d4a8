"""The FER2013 facial-expression workload: EfficientNet classification."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from yacs.config import CfgNode as CN

from efficientnet.data import CLASS_NAMES, FORMATS, FERDataset, class_weights, load_fer_splits, sample_weights
from efficientnet.metrics import FEREvaluator
from efficientnet.model import build_fer_model
from efficientnet.transforms import FERAugment
from harness.config import ConfigError
from harness.tasks import Evaluator, Task

WEIGHTINGS = ("none", "loss", "sampler")


def add_fer_defaults(cfg: CN) -> None:
    cfg.MODEL = CN()
    # efficientnet_b0..b7, efficientnet_v2_s, efficientnet_v2_m, or tiny_cnn (tests).
    cfg.MODEL.NAME = "efficientnet_b0"
    cfg.MODEL.NUM_CLASSES = len(CLASS_NAMES)
    # 1: grayscale stem (no 3x copy of each image).
    cfg.MODEL.IN_CHANNELS = 1
    # Local torchvision weights file (ImageNet); empty trains from scratch. Never downloaded.
    cfg.MODEL.PRETRAINED = ""
    # Dropout before the classifier.
    cfg.MODEL.DROPOUT = 0.2
    # Stochastic depth probability of the MBConv blocks.
    cfg.MODEL.STOCHASTIC_DEPTH = 0.2

    cfg.DATASET = CN()
    # fer2013.csv, its directory, a torchvision root (ROOT/fer2013/), or a folder set (train/, test/).
    cfg.DATASET.ROOT = ""
    # auto | csv | torchvision | folder.
    cfg.DATASET.FORMAT = "auto"
    # Split names: train, val (PublicTest), test (PrivateTest), or raw Usage names.
    cfg.DATASET.TRAIN_SPLIT = "train"
    cfg.DATASET.VAL_SPLIT = "val"
    # Side length fed to the model (48 = native FER2013).
    cfg.DATASET.IMAGE_SIZE = 48
    # Grayscale normalisation, applied on the device.
    cfg.DATASET.MEAN = 0.5
    cfg.DATASET.STD = 0.25
    cfg.DATASET.AUG = CN()
    # Random crop after zero padding by this many pixels.
    cfg.DATASET.AUG.CROP_PADDING = 4
    cfg.DATASET.AUG.HFLIP = True
    # Rotation range in degrees (+-).
    cfg.DATASET.AUG.ROTATION = 10.0
    # Zoom range [low, high].
    cfg.DATASET.AUG.SCALE = [0.9, 1.1]
    # Probability of random erasing.
    cfg.DATASET.AUG.RANDOM_ERASING = 0.0

    # none | loss (inverse-frequency class weights) | sampler (class-balanced draws).
    cfg.TRAIN.CLASS_WEIGHTING = "none"
    cfg.TRAIN.LABEL_SMOOTHING = 0.0

    cfg.TEST = CN()
    # Reported in addition to accuracy/macro-F1: per-class recall and the confusion matrix.
    cfg.TEST.PER_CLASS = True


class FERTask(Task):
    name = "fer"
    primary_metric = "accuracy"
    higher_is_better = True

    @classmethod
    def add_config_defaults(cls, cfg: CN) -> None:
        add_fer_defaults(cfg)

    @classmethod
    def validate_config(cls, cfg: CN) -> None:
        if cfg.DATASET.FORMAT not in FORMATS:
            raise ConfigError(f"DATASET.FORMAT is {cfg.DATASET.FORMAT!r}; choose one of {', '.join(FORMATS)}")
        if cfg.TRAIN.CLASS_WEIGHTING not in WEIGHTINGS:
            raise ConfigError(f"TRAIN.CLASS_WEIGHTING is {cfg.TRAIN.CLASS_WEIGHTING!r}; "
                              f"choose one of {', '.join(WEIGHTINGS)}")
        if cfg.MODEL.NUM_CLASSES != len(CLASS_NAMES):
            raise ConfigError(f"MODEL.NUM_CLASSES must be {len(CLASS_NAMES)} for FER, "
                              f"got {cfg.MODEL.NUM_CLASSES}")
        scale = list(cfg.DATASET.AUG.SCALE)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ConfigError(f"DATASET.AUG.SCALE must be [low, high] with 0 < low <= high, got {scale}")
        if cfg.DATASET.STD <= 0:
            raise ConfigError(f"DATASET.STD must be > 0, got {cfg.DATASET.STD}")

    def __init__(self, cfg: CN):
        super().__init__(cfg)
        self._loss_weights: torch.Tensor | None = None

    def build_model(self) -> nn.Module:
        return build_fer_model(self.cfg)

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        d = self.cfg.DATASET
        if not d.ROOT:
            raise ConfigError("DATASET.ROOT is empty: point it at fer2013.csv, a torchvision root or a "
                              "folder set (or make one with `harness data synth-fer`)")
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
        return F.cross_entropy(outputs.float(), batch["target"], weight=weight,
                               label_smoothing=self.cfg.TRAIN.LABEL_SMOOTHING)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub_(self.cfg.DATASET.MEAN).div_(self.cfg.DATASET.STD)
