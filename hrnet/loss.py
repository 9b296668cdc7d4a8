"""Heatmap regression loss."""

from __future__ import annotations

import torch
from torch import nn


class JointsMSELoss(nn.Module):
    """Official HRNet loss: ``0.5 · mean((pred − target)²)`` over batch, joints and
    pixels, with each joint's pred and target multiplied by its target weight when
    ``use_target_weight`` (so unlabelled joints contribute nothing)."""

    def __init__(self, use_target_weight: bool = True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(
        self, output: torch.Tensor | list[torch.Tensor], target: torch.Tensor, target_weight: torch.Tensor
    ) -> torch.Tensor:
        if isinstance(output, (list, tuple)):
            # Deep supervision variants return several heatmap sets; each is penalised.
            return sum(self.forward(o, target, target_weight) for o in output)
        target = target.to(output.dtype)
        diff = output - target
        if self.use_target_weight:
            diff = diff * target_weight.to(output.dtype).reshape(*target_weight.shape[:2], 1, 1)
        return 0.5 * diff.pow(2).mean()


class JointsOHKMMSELoss(nn.Module):
    """Online hard keypoint mining (official ``LOSS.USE_OHKM``): per person, the mean
    of the ``topk`` largest per-joint losses, averaged over the batch."""

    def __init__(self, use_target_weight: bool = True, topk: int = 8):
        super().__init__()
        self.use_target_weight = use_target_weight
        self.topk = topk

    def forward(
        self, output: torch.Tensor | list[torch.Tensor], target: torch.Tensor, target_weight: torch.Tensor
    ) -> torch.Tensor:
        if isinstance(output, (list, tuple)):
            return sum(self.forward(o, target, target_weight) for o in output)
        diff = output - target.to(output.dtype)
        if self.use_target_weight:
            diff = diff * target_weight.to(output.dtype).reshape(*target_weight.shape[:2], 1, 1)
        per_joint = 0.5 * diff.pow(2).flatten(2).mean(dim=2)
        return per_joint.topk(self.topk, dim=1).values.mean()


def build_loss(use_target_weight: bool, use_ohkm: bool = False, topk: int = 8) -> nn.Module:
    """The loss the official LOSS.* keys select."""
    return JointsOHKMMSELoss(use_target_weight, topk) if use_ohkm else JointsMSELoss(use_target_weight)
