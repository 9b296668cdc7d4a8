"""Wrapping a model for a strategy (single, dp, ddp) and mixed precision."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn
from yacs.config import CfgNode as CN

from harness.world import WorldInfo


def wrap_model(
    cfg: CN, model: nn.Module, device: torch.device, world: WorldInfo, log: Callable[[str], None]
) -> nn.Module:
    """Place ``model`` on ``device`` and wrap it as DIST.STRATEGY asks."""
    strategy, gpus = cfg.DIST.STRATEGY, cfg.DIST.GPUS
    if cfg.TRAIN.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    if strategy == "ddp" and cfg.DIST.SYNC_BN and world.world_size > 1:
        if device.type != "cuda":
            raise RuntimeError(
                "DIST.SYNC_BN needs CUDA: PyTorch's SyncBatchNorm has no CPU kernel. "
                "Set DIST.SYNC_BN False for gloo runs on the CPU"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if strategy == "dp":
        if device.type != "cuda":
            if gpus > 1:
                raise RuntimeError(
                    f"DIST.STRATEGY dp with DIST.GPUS {gpus} needs {gpus} CUDA devices; this "
                    "machine has none. Use DIST.GPUS 1, or ddp (gloo processes on CPU)"
                )
            log("dp on a machine without CUDA: one device, so the model runs unwrapped on the CPU")
            return model
        available = torch.cuda.device_count()
        if gpus > available:
            raise RuntimeError(f"DIST.GPUS {gpus} for dp but only {available} CUDA devices are visible")
        return nn.DataParallel(model, device_ids=list(range(gpus)))
    if strategy == "ddp" and world.world_size > 1:
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            bucket_cap_mb=cfg.DIST.BUCKET_CAP_MB,
            find_unused_parameters=cfg.DIST.FIND_UNUSED_PARAMETERS,
            gradient_as_bucket_view=cfg.DIST.GRADIENT_AS_BUCKET_VIEW,
            static_graph=cfg.DIST.STATIC_GRAPH,
        )
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module (no DataParallel/DDP/compile wrapper)."""
    model = getattr(model, "_orig_mod", model)
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, wrappers) else model


def check_amp(cfg: CN, device: torch.device) -> None:
    if cfg.TRAIN.AMP == "fp16" and device.type != "cuda":
        raise RuntimeError("TRAIN.AMP fp16 needs CUDA (it uses a GradScaler); use TRAIN.AMP bf16 on the CPU")


def autocast(cfg: CN, device: torch.device) -> contextlib.AbstractContextManager:
    if cfg.TRAIN.AMP == "none":
        return contextlib.nullcontext()
    dtype = torch.float16 if cfg.TRAIN.AMP == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(cfg: CN, device: torch.device) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(device.type, enabled=cfg.TRAIN.AMP == "fp16")


def no_sync(model: nn.Module, skip_sync: bool) -> contextlib.AbstractContextManager:
    """DDP's no_sync for all but the last micro-batch of an accumulated step."""
    target = getattr(model, "_orig_mod", model)
    if skip_sync and isinstance(target, nn.parallel.DistributedDataParallel):
        return target.no_sync()
    return contextlib.nullcontext()
