"""Start a run: in this process, or as DIST.GPUS local processes for ddp when no
distributed environment exists (like detectron2's ``launch``)."""
from __future__ import annotations

import os
import signal
from typing import Any

import torch
import torch.multiprocessing as mp
from yacs.config import CfgNode as CN

from harness.distributed import find_free_port, world_info_from_env
from harness.rundir import read_status, run_dir_for
from harness.train import run_training


def needs_spawn(cfg: CN) -> bool:
    return (cfg.DIST.STRATEGY == "ddp" and cfg.DIST.GPUS > 1
            and not world_info_from_env().distributed)


def launch(cfg: CN, resume: str = "auto") -> str:
    """Run ``cfg`` to the end; returns "completed" or "preempted"."""
    if not needs_spawn(cfg):
        return run_training(cfg, resume)
    if cfg.DIST.NODES > 1:
        raise RuntimeError(f"DIST.NODES {cfg.DIST.NODES}: a multi-node run needs one launcher per node; "
                           "submit it with `harness sweep --backend slurm` or start it with torchrun")
    nprocs = cfg.DIST.GPUS
    if torch.cuda.is_available() and torch.cuda.device_count() < nprocs:
        raise RuntimeError(f"DIST.GPUS {nprocs} but only {torch.cuda.device_count()} CUDA devices "
                           "are visible")
    port = find_free_port()
    context = mp.start_processes(_worker, args=(cfg, resume, nprocs, port), nprocs=nprocs, join=False,
                                 start_method="spawn")
    forward = _forward_signals([p.pid for p in context.processes])
    try:
        while not context.join(timeout=1):
            pass
    finally:
        for sig, handler in forward.items():
            signal.signal(sig, handler)
    return read_status(run_dir_for(cfg)).get("state", "completed")


def _forward_signals(pids: list[int]) -> dict[int, Any]:
    """Preemption signals sent to the launcher reach every worker."""
    def forward(signum: int, frame: object) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        previous[sig] = signal.signal(sig, forward)
    return previous


def _worker(local_rank: int, cfg: CN, resume: str, nprocs: int, port: int) -> None:
    os.environ.update({"RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(nprocs),
                       "LOCAL_WORLD_SIZE": str(nprocs), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from harness.preemption import install_signal_handlers

    install_signal_handlers()
    run_training(cfg, resume)
