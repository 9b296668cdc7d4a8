"""Optimizers, the LR scaling rule, warmup and schedules."""

from __future__ import annotations

import math

import torch
from torch import nn
from yacs.config import CfgNode as CN

from harness.config import global_batch_size


def scaled_lr(cfg: CN) -> float:
    """TRAIN.LR under TRAIN.LR_SCALING for the global batch (per optimizer step)."""
    ratio = global_batch_size(cfg) / cfg.TRAIN.LR_BASE_BATCH
    rule = cfg.TRAIN.LR_SCALING
    if rule == "linear":
        return cfg.TRAIN.LR * ratio
    if rule == "sqrt":
        return cfg.TRAIN.LR * math.sqrt(ratio)
    return cfg.TRAIN.LR


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-d tensors)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: CN, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    t = cfg.TRAIN
    groups = _param_groups(model, t.WD)
    builders = {
        "sgd": lambda: torch.optim.SGD(groups, lr=lr, momentum=t.MOMENTUM),
        "sgd_nesterov": lambda: torch.optim.SGD(groups, lr=lr, momentum=t.MOMENTUM, nesterov=True),
        # Adam ignores TRAIN.WD, as official HRNet's Adam does; adamw decays decoupled.
        "adam": lambda: torch.optim.Adam(model.parameters(), lr=lr),
        "adamw": lambda: torch.optim.AdamW(groups, lr=lr),
        "adagrad": lambda: torch.optim.Adagrad(groups, lr=lr),
        "adadelta": lambda: torch.optim.Adadelta(groups, lr=lr),
        "rmsprop": lambda: torch.optim.RMSprop(groups, lr=lr, momentum=t.MOMENTUM),
    }
    return builders[t.OPTIMIZER]()


class LRSchedule:
    """LR as a function of fractional epoch: linear warmup, then multistep or cosine.

    Stateless apart from the config, so resuming only needs the step counter."""

    def __init__(self, cfg: CN, base_lr: float, steps_per_epoch: int):
        t = cfg.TRAIN
        self.base_lr = base_lr
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup = t.WARMUP_EPOCHS
        self.kind = t.SCHEDULER
        self.milestones = list(t.LR_STEP)
        self.factor = t.LR_FACTOR
        self.epochs = t.EPOCHS
        self.min_ratio = t.MIN_LR_RATIO

    def lr_at(self, epoch: int, step_in_epoch: int) -> float:
        e = epoch + step_in_epoch / self.steps_per_epoch
        if self.warmup > 0 and e < self.warmup:
            return self.base_lr * (e + 1 / self.steps_per_epoch) / self.warmup
        if self.kind == "multistep":
            return self.base_lr * self.factor ** sum(epoch >= m for m in self.milestones)
        if self.kind == "cosine":
            span = max(1e-9, self.epochs - self.warmup)
            progress = min(1.0, (e - self.warmup) / span)
            cosine = 0.5 * (1 + math.cos(math.pi * progress))
            return self.base_lr * (self.min_ratio + (1 - self.min_ratio) * cosine)
        return self.base_lr

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, step_in_epoch: int) -> float:
        lr = self.lr_at(epoch, step_in_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
