"""Shared pieces of the GPU checks: tiny models, a harness run on CUDA, NCCL workers.

Everything here needs CUDA to do anything; the test modules skip themselves (module
level) on a machine without it, so importing this file on the CPU is harmless.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

SKIP_REASON = "needs CUDA: run `make gpu-check` on a GPU machine"


def skip_without_cuda(min_gpus: int = 1) -> None:
    """Module-level skip when fewer than ``min_gpus`` CUDA devices are visible."""
    import pytest

    if not torch.cuda.is_available():
        pytest.skip(SKIP_REASON, allow_module_level=True)
    if torch.cuda.device_count() < min_gpus:
        pytest.skip(
            f"needs {min_gpus} CUDA devices, {torch.cuda.device_count()} visible", allow_module_level=True
        )


def tiny_cnn(seed: int = 0, norm: str = "none") -> nn.Module:
    """A small convnet; ``norm`` "bn" adds BatchNorm (for the SyncBN check)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1)]
    if norm == "bn":
        layers.append(nn.BatchNorm2d(8))
    layers += [
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 7),
    ]
    return nn.Sequential(*layers)


def batch(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 24, 24, generator=g), torch.randint(0, 7, (n,), generator=g)


def gradients(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().float().cpu().clone() for p in model.parameters()]


def train_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def harness_run(fer_root: str, out: Path, name: str, *opts: str) -> Path:
    """A short real ``harness train`` of EfficientNet-B0 on synthetic FER, on CUDA."""
    from harness.config import load_config
    from harness.spawn import launch

    cfg = load_config(
        "configs/fer/effnet_b0_synthetic.yaml",
        [
            "DATASET.ROOT",
            fer_root,
            "OUTPUT_DIR",
            str(out),
            "RUN_NAME",
            name,
            "TRAIN.EPOCHS",
            "1",
            "TRAIN.MAX_STEPS_PER_EPOCH",
            "60",
            "EVAL.EVERY_EPOCHS",
            "0",
            "LOG.EVERY_N_STEPS",
            "10",
            "LOG.WARMUP_STEPS",
            "10",
            "LOG.PROGRESS",
            "False",
            "LOG.WANDB.MODE",
            "disabled",
            *opts,
        ],
    )
    assert launch(cfg) == "completed"
    return out / name


def ddp_worker(rank: int, world: int, init_file: str, per_rank: int, norm: str, out_dir: str) -> None:
    """One NCCL rank: DDP (SyncBN when ``norm`` is "bn") over its slice of the global
    batch, one SGD step; rank 0 saves gradients, parameters and BN running stats."""
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = tiny_cnn(norm=norm).cuda(rank)
        if norm == "bn":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[rank])
        x, y = batch(per_rank * world)
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        loss = nn.functional.cross_entropy(ddp(x[mine].cuda(rank)), y[mine].cuda(rank))
        loss.backward()
        grads = gradients(model)
        optimizer.step()
        if rank == 0:
            torch.save(
                {
                    "grads": grads,
                    "params": [p.detach().cpu() for p in model.parameters()],
                    "buffers": [b.detach().cpu() for b in model.buffers()],
                },
                os.path.join(out_dir, "ddp.pt"),
            )
    finally:
        dist.destroy_process_group()
