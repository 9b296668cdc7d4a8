"""Synthetic FER runs for the training benchmarks (P1, P2, P7): the data, the harness
config, a harness run from outside, and the minimal hand-written loop the harness is
compared with (same task, model, dataset object, loader settings and optimizer)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = "configs/fer/effnet_b0_synthetic.yaml"


def write_data(root: str, images: int) -> str:
    from efficientnet.synth import write_synthetic_fer

    return write_synthetic_fer(root, n=images, fmt="csv", seed=0)


def overrides(
    data: str,
    out: str,
    name: str,
    procs: int,
    steps: int,
    batch: int,
    workers: int,
    extra: list[str] | None = None,
) -> list[str]:
    return [
        "DATASET.ROOT",
        data,
        "OUTPUT_DIR",
        out,
        "RUN_NAME",
        name,
        "DIST.STRATEGY",
        "ddp" if procs > 1 else "single",
        "DIST.GPUS",
        str(procs),
        "TRAIN.BATCH_SIZE_PER_GPU",
        str(batch),
        "TRAIN.EPOCHS",
        "1",
        "TRAIN.MAX_STEPS_PER_EPOCH",
        str(steps),
        "EVAL.EVERY_EPOCHS",
        "0",
        "LOG.EVERY_N_STEPS",
        "5",
        "LOG.WARMUP_STEPS",
        "5",
        "LOG.PROGRESS",
        "False",
        "LOG.WANDB.MODE",
        "disabled",
        "DATA.NUM_WORKERS",
        str(workers),
        *(extra or []),
    ]


def harness_train(opts: list[str], threads: int | None = None) -> float:
    """``harness train`` in a fresh process; returns its wall time in seconds."""
    env = dict(os.environ, WANDB_MODE="disabled")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness", "train", "--config", CONFIG, *opts],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - start


def steady(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "train" and r["steady"]]


def reported_img_per_s(run_dir: Path, after_step: int = 0) -> float:
    """What the run reports: the median steady window throughput, of the windows after
    ``after_step`` (a multiple of the log window, so that windows start right after it)."""
    return statistics.median(r["throughput/img_per_s"] for r in steady(run_dir) if r["step"] > after_step)


def raw_loop_steps_per_s(opts: list[str], warmup: int) -> float:
    """A minimal hand-written loop on the harness's own task, model, dataset object,
    loader and optimizer: steps/s after ``warmup`` steps, in this process."""
    import torch

    from harness.config import load_config
    from harness.data import TrainSampler, build_loader
    from harness.optim import build_optimizer
    from harness.tasks import get_task

    cfg = load_config(CONFIG, opts)
    torch.manual_seed(cfg.SEED)
    task = get_task(cfg.TASK)(cfg)
    model = task.build_model()
    world, rank = 1, 0
    if "WORLD_SIZE" in os.environ:  # started by torchrun: plain DDP over gloo
        import torch.distributed as dist

        dist.init_process_group("gloo")
        world, rank = dist.get_world_size(), dist.get_rank()
        model = torch.nn.parallel.DistributedDataParallel(model)
    train, _ = task.build_datasets()
    sampler = TrainSampler(len(train), world, rank, cfg.SEED)
    loader = build_loader(
        train,
        sampler,
        cfg.TRAIN.BATCH_SIZE_PER_GPU,
        cfg.DATA.NUM_WORKERS,
        cfg.DATA.PIN_MEMORY,
        cfg.DATA.PREFETCH_FACTOR,
        cfg.DATA.PERSISTENT_WORKERS,
        drop_last=True,
    )
    optimizer = build_optimizer(cfg, model, cfg.TRAIN.LR)
    device = torch.device("cpu")
    model.train()
    steps = cfg.TRAIN.MAX_STEPS_PER_EPOCH
    start = None
    for step, batch in enumerate(loader):
        if step == warmup:
            start = time.perf_counter()
        if step == steps:
            break
        batch = task.prepare_batch(batch, device)
        loss = task.loss(task.forward(model, batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert start is not None, f"{steps} steps is not more than the {warmup} warm-up steps"
    return (steps - warmup) / (time.perf_counter() - start)
