"""bench-model of one run config, into that run's directory: what a sweep job of
``command: bench-model`` runs (and ``harness bench-model --config FILE``)."""

from __future__ import annotations

import argparse
import time
import traceback
from typing import Any


def bench_config_run(config: str, opts: list[str], args: argparse.Namespace | None = None) -> int:
    """``harness bench-model --config FILE [KEY VALUE ...]``."""
    from harness.config import load_config

    return bench_cfg_run(load_config(config, opts), [], args, argv=["--config", config, *opts])


def bench_cfg_run(
    cfg: Any, flags: list[str], args: argparse.Namespace | None = None, argv: list[str] | None = None
) -> int:
    """Benchmark the model of run config ``cfg``; rows go to ``<run dir>/bench_model.*``,
    with run.json (``kind: bench-model``) and status.json like any run. ``flags``:
    bench-model options (JOB.ARGS of a sweep run)."""
    from harness.benchmodel.cli import add_arguments, run_bench
    from harness.rundir import atomic_write_json, run_dir_for, write_status

    run_dir = run_dir_for(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if args is None:
        parser = argparse.ArgumentParser(prog="bench-model")
        add_arguments(parser)
        args = parser.parse_args(flags)
        if cfg.LOG.WANDB.MODE != "offline":
            args.wandb = cfg.LOG.WANDB.MODE
    args.out, args.name = str(run_dir), cfg.RUN_NAME
    args.argv = argv or ["--config", "<sweep run>", *flags]
    atomic_write_json(
        run_dir / "run.json",
        {
            "run_name": cfg.RUN_NAME,
            "sweep": cfg.SWEEP,
            "kind": "bench-model",
            "workload": cfg.TASK,
            "model": cfg.MODEL.NAME,
            "started_at": time.time(),
        },
    )
    write_status(run_dir, state="running")
    try:
        rows, _ = run_bench(args, cfg)
    except BaseException as e:
        write_status(
            run_dir,
            state="failed",
            error=f"{type(e).__name__}: {e}".splitlines()[0],
            traceback=traceback.format_exc(),
        )
        raise
    write_status(run_dir, state="completed")
    print(f"bench-model: {len(rows)} rows -> {run_dir}")
    return 0
