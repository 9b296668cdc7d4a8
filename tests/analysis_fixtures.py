"""Synthetic run directories that follow docs/run-format.md, with known numbers.

Used by the analysis tests and ``benchmarks/bench_analysis_load.py``. Steady
train records carry ``throughput * (1 - jitter, 1, 1 + jitter)`` in turn, so with
a multiple of 3 steady records the median is exactly ``throughput`` and the
quartiles ``throughput * (1 -/+ jitter)``; warmup records are 3x slower so a
reader that keeps them gets a visibly wrong number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.config import config_to_dict, get_harness_defaults

PRIMARY = {"fer": ("val/accuracy", True), "pose": ("val/AP", True)}
STARTED_AT = 1_760_000_000.0
MODEL_NAME = {"fer": "efficientnet_b0", "pose": "pose_hrnet_w32"}


def default_metric(samples: float, global_batch: int) -> float:
    """Accuracy that rises with samples seen, more slowly for larger global batches."""
    return 0.7 * (1.0 - math.exp(-samples / (400.0 * (1.0 + global_batch / 64.0))))


def run_config(
    *,
    workload: str,
    strategy: str,
    gpus: int,
    nodes: int,
    batch_size_per_gpu: int,
    seed: int,
    run_name: str,
    sweep: str,
    epochs: int,
    log_every: int,
    warmup_steps: int,
    extra: dict[str, Any] | None = None,
) -> dict:
    cfg = get_harness_defaults()
    cfg.TASK = workload
    cfg.SEED = seed
    cfg.RUN_NAME = run_name
    cfg.SWEEP = sweep
    cfg.DIST.STRATEGY = strategy
    cfg.DIST.GPUS = gpus
    cfg.DIST.NODES = nodes
    cfg.TRAIN.BATCH_SIZE_PER_GPU = batch_size_per_gpu
    cfg.TRAIN.EPOCHS = epochs
    cfg.LOG.EVERY_N_STEPS = log_every
    cfg.LOG.WARMUP_STEPS = warmup_steps
    data = config_to_dict(cfg)
    data["MODEL"] = {"NAME": MODEL_NAME[workload]}
    for dotted, value in (extra or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def write_run(
    root: str | Path,
    name: str | None = None,
    *,
    workload: str = "fer",
    strategy: str = "ddp",
    gpus: int = 1,
    nodes: int = 1,
    batch_size_per_gpu: int = 32,
    seed: int = 0,
    throughput: float = 100.0,
    compute_throughput: float | None = None,
    data_wait_share: float = 0.05,
    jitter: float = 0.02,
    state: str = "completed",
    epochs: int = 3,
    steps_per_epoch: int = 20,
    log_every: int = 5,
    warmup_steps: int = 5,
    mark_steady: bool = True,
    hosts: Sequence[str] | None = None,
    num_params: int = 4_000_000,
    sweep: str = "",
    error: str = "",
    loss0: float = 2.0,
    metric_fn: Callable[[float, int], float] = default_metric,
    config: dict[str, Any] | None = None,
    stop_after_epoch: int | None = None,
) -> Path:
    """Write one run directory under ``root`` and return its path."""
    global_batch = batch_size_per_gpu * gpus
    name = name or f"{workload}-{strategy}-g{gpus}-b{batch_size_per_gpu}-s{seed}"
    run_dir = Path(root) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    primary, higher = PRIMARY[workload]
    hosts = (
        list(hosts)
        if hosts is not None
        else (["host-a"] if nodes == 1 else [f"node{i + 1}" for i in range(nodes)])
    )
    run_json = {
        "run_name": name,
        "sweep": sweep,
        "workload": workload,
        "model": MODEL_NAME[workload],
        "strategy": strategy,
        "gpus": gpus,
        "nodes": nodes,
        "world_size": gpus if strategy == "ddp" else 1,
        "device_type": "cuda",
        "batch_size_per_gpu": batch_size_per_gpu,
        "global_batch": global_batch,
        "grad_accum": 1,
        "lr": 0.1,
        "seed": seed,
        "primary_metric": primary,
        "higher_is_better": higher,
        "num_params": num_params,
        "git_commit": "",
        "host": hosts[0],
        "hosts": sorted(hosts),
        "torch_version": "2.14.1",
        "cuda_version": "12.8",
        "python_version": "3.11",
        "wandb_id": f"id-{name}",
        "wandb_project": "p",
        "wandb_entity": "",
        "wandb_group": sweep,
        "slurm_job_id": "",
        "started_at": STARTED_AT,
    }
    compute = compute_throughput if compute_throughput is not None else throughput / (1.0 - data_wait_share)
    records: list[dict] = []
    step, samples, clock, n_steady = 0, 0, 0.0, 0
    best = None
    last_epoch = epochs - 1 if stop_after_epoch is None else stop_after_epoch
    for epoch in range(last_epoch + 1):
        epoch_start = clock
        for _ in range(steps_per_epoch // log_every):
            steady = step >= warmup_steps
            factor = (1.0 - jitter, 1.0, 1.0 + jitter)[n_steady % 3] if steady else 1 / 3
            n_steady += steady
            x = throughput * factor
            step += log_every
            samples += log_every * global_batch
            clock += log_every * global_batch / x
            record = {
                "kind": "train",
                "step": step,
                "epoch": step / steps_per_epoch,
                "time": clock,
                "samples": samples,
                "unix_time": STARTED_AT + clock,
                "train/loss": loss0 * math.exp(-samples / 2000.0),
                "train/lr": 0.1,
                "throughput/img_per_s": x,
                "throughput/img_per_s_per_device": x / gpus,
                "throughput/compute_img_per_s": compute * factor,
                "time/step_s": global_batch / x,
                "time/data_wait_s": data_wait_share * global_batch / x,
                "time/data_wait_share": data_wait_share,
                "memory/rss_gib": 1.0,
                "steps": log_every,
            }
            if mark_steady:
                record["steady"] = steady
            records.append(record)
        records.append(
            {
                "kind": "epoch",
                "step": step,
                "epoch": epoch,
                "time": clock,
                "samples": samples,
                "unix_time": STARTED_AT + clock,
                "train/loss": loss0 * math.exp(-samples / 2000.0),
                "train/lr": 0.1,
                "time/epoch_s": clock - epoch_start,
                "throughput/img_per_s": steps_per_epoch * global_batch / (clock - epoch_start),
                "time/data_wait_share": data_wait_share,
            }
        )
        value = metric_fn(samples, global_batch)
        best = value if best is None else max(best, value)
        records.append(
            {
                "kind": "val",
                "step": step,
                "epoch": epoch,
                "time": clock,
                "samples": samples,
                "unix_time": STARTED_AT + clock,
                primary: value,
                "val/loss": 1.0 - value,
            }
        )
    status = {
        "state": state,
        "epoch": last_epoch,
        "step": step,
        "heartbeat": STARTED_AT + clock,
        "started_at": STARTED_AT,
        "updated_at": STARTED_AT + clock,
        "requeues": 0,
        "error": error,
        "traceback": f"Traceback...\n{error}" if error else "",
        "primary_metric": primary,
        "best": best,
        "last_img_per_s": throughput,
    }
    cfg = run_config(
        workload=workload,
        strategy=strategy,
        gpus=gpus,
        nodes=nodes,
        batch_size_per_gpu=batch_size_per_gpu,
        seed=seed,
        run_name=name,
        sweep=sweep,
        epochs=epochs,
        log_every=log_every,
        warmup_steps=warmup_steps,
        extra=config,
    )
    (run_dir / "run.json").write_text(json.dumps(run_json, indent=1))
    (run_dir / "status.json").write_text(json.dumps(status, indent=1))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with open(run_dir / "metrics.jsonl", "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return run_dir


def write_sweep(
    root: str | Path, name: str, runs: Sequence[dict[str, Any]], scaling: str | None = "weak"
) -> Path:
    """A sweep directory ``root/name`` with ``manifest.json`` and ``runs/<run>``;
    each item of ``runs`` holds keyword arguments of :func:`write_run`."""
    sweep_dir = Path(root) / name
    (sweep_dir / "runs").mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {"name": name}
    if scaling is not None:
        spec["scaling"] = scaling
    names = [write_run(sweep_dir / "runs", sweep=name, **kwargs).name for kwargs in runs]
    (sweep_dir / "manifest.json").write_text(json.dumps({"sweep": name, "spec": spec, "runs": names}))
    return sweep_dir
