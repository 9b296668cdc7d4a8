"""HRNet human pose estimation: the model, its config layer and the COCO workload."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn
    from yacs.config import CfgNode


def build_model(cfg: CfgNode) -> nn.Module:
    """The pose model named by ``cfg.MODEL.NAME`` (see ``hrnet.model.build_model``)."""
    # Imported on call so that ``import hrnet`` (and hrnet.config) stays light.
    from hrnet.model import build_model as _build_model

    return _build_model(cfg)


__all__ = ["build_model"]
