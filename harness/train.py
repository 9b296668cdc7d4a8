"""Train one run in this process, inside whatever distributed world the
environment describes (torchrun, Slurm/submitit, or none)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
import traceback
from pathlib import Path

import torch
from yacs.config import CfgNode as CN

from harness import distributed as du
from harness import preemption
from harness.bad_samples import skipped_samples
from harness.checkpoint import CheckpointError, check_model_state, load_checkpoint
from harness.config import dump_config, flatten_config, global_batch_size, resolve_wandb_mode
from harness.devices import usable_cores
from harness.resume_guard import check_resume
from harness.rundir import (
    atomic_write_json,
    environment_info,
    git_commit,
    read_json,
    read_status,
    run_dir_for,
    slurm_job_id,
    write_status,
)
from harness.runformat import CONFIG_YAML, RUN_JSON, run_fields_from_config
from harness.runlog import RunLogger, setup_text_logging
from harness.tasks import get_task
from harness.trainer import Trainer
from harness.watchdog import Watchdog
from harness.world import WorldInfo, world_info_from_env


def check_world(cfg: CN, world: WorldInfo) -> None:
    """The environment's world must be the one the config asks for."""
    expected = cfg.DIST.GPUS if cfg.DIST.STRATEGY == "ddp" else 1
    if world.world_size != expected:
        raise RuntimeError(
            f"the environment ({world.source}) has world size {world.world_size} but DIST.STRATEGY "
            f"{cfg.DIST.STRATEGY} with DIST.GPUS {cfg.DIST.GPUS} needs {expected} processes"
        )


def _set_cpu_threads(world: WorldInfo) -> None:
    """Split the cores among this node's processes, unless OMP_NUM_THREADS says otherwise."""
    if torch.cuda.is_available():
        return
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) > 0:
        # Set here too: a rank forked from a fork server has the OpenMP setting of the server's
        # environment, which may predate this launch's.
        torch.set_num_threads(int(requested))
        return
    torch.set_num_threads(max(1, usable_cores() // max(1, world.local_world_size)))


def _identity(cfg: CN, trainer: Trainer, task_cls: type, wandb_id: str, world: WorldInfo) -> dict:
    env = environment_info()
    previous = read_json(run_dir_for(cfg) / RUN_JSON, default={}) or {}
    return {
        # run_name, sweep, workload, model, strategy, gpus, nodes, batch_size_per_gpu, grad_accum, seed
        **run_fields_from_config(flatten_config(cfg)),
        "world_size": world.world_size,
        "device_type": trainer.device.type,
        "global_batch": global_batch_size(cfg),
        "lr": trainer.lr,
        "primary_metric": f"val/{task_cls.primary_metric}",
        "higher_is_better": task_cls.higher_is_better,
        "num_params": trainer.num_params,
        "steps_per_epoch": trainer.steps_per_epoch,
        "flops_per_sample": trainer.flops_per_sample,
        "peak_tflops_per_device": trainer.peak_tflops,
        "git_commit": git_commit(),
        "host": env["host"],
        "hosts": sorted(set(du.gather_objects(socket.gethostname()))),
        "torch_version": env["torch_version"],
        "cuda_version": env["cuda_version"],
        "python_version": env["python_version"],
        "wandb_id": wandb_id,
        "wandb_project": cfg.LOG.WANDB.PROJECT,
        "wandb_entity": cfg.LOG.WANDB.ENTITY,
        "wandb_group": wandb_group(cfg),
        "slurm_job_id": slurm_job_id(),
        "started_at": previous.get("started_at", time.time()),
        "skipped_samples": skipped_samples(trainer),  # DATA.ON_BAD_SAMPLE skip: {split: {reason: n}}
    }


def wandb_group(cfg: CN) -> str:
    return cfg.LOG.WANDB.GROUP or cfg.SWEEP or cfg.RUN_NAME


def run_training(cfg: CN, resume: str = "auto") -> str:
    """Train (or resume) the run of ``cfg``; returns "completed" or "preempted".

    On an error the run's status.json says failed, with the traceback, and the
    error propagates."""
    preemption.clear()  # a request belongs to the run that received it
    world = world_info_from_env()
    check_world(cfg, world)
    _set_cpu_threads(world)
    device = du.init_distributed(world, cfg.DIST.BACKEND, cfg.DIST.TIMEOUT_S)
    run_dir = run_dir_for(cfg)
    main = du.is_main()
    try:  # before anything in the run directory is written
        decision = check_resume(cfg, run_dir, resume)
    except BaseException:
        du.destroy_distributed()
        raise
    if decision.already_completed:
        setup_text_logging(None, main)
        logging.getLogger("harness").info(
            "run %s already completed (%s); nothing to do", cfg.RUN_NAME, run_dir
        )
        du.destroy_distributed()
        return "completed"
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    du.barrier()
    setup_text_logging(run_dir, main)
    task_cls = get_task(cfg.TASK)
    logger = RunLogger(run_dir, f"val/{task_cls.primary_metric}", task_cls.higher_is_better)
    previous = read_status(run_dir)
    watchdog: Watchdog | None = None
    trainer: Trainer | None = None
    try:
        # Beats start right after the rendezvous, so a slow data set build on one rank is not silence.
        watchdog = Watchdog(
            run_dir,
            du.rank(),
            du.world_size(),
            cfg.DIST.TIMEOUT_S,
            step=lambda: trainer.global_step if trainer is not None else 0,
        ).start()
        resume_path = decision.checkpoint
        trainer = Trainer(cfg, task_cls(cfg), world, device, run_dir, logger)
        state = load_checkpoint(resume_path) if resume_path else None
        if state is not None:
            check_model_state(trainer.raw_model, state["model"], resume_path)
        if main:
            dump_config(cfg, run_dir / CONFIG_YAML)
        if decision.changed:
            logger.warning(
                "--resume force: continuing %s with changed keys %s", run_dir, ", ".join(decision.changed)
            )
        if state is not None:
            trainer.load_state_dict(state)
            logger.best = state.get("best")
            logger.info(
                "resumed from %s at epoch %d, step %d", resume_path, trainer.epoch, trainer.global_step
            )
        logger.rewind(trainer.global_step)
        old_id = (state or {}).get("wandb_id") or (read_json(run_dir / RUN_JSON, {}) or {}).get("wandb_id")
        wandb_id = du.broadcast_object(old_id or secrets.token_hex(4))
        identity = _identity(cfg, trainer, task_cls, wandb_id, world)
        forced = sorted(
            set(read_json(run_dir / RUN_JSON, {}).get("resumed_with_changes") or []) | set(decision.changed)
        )
        if forced:  # --resume force: the run's history says which keys changed on the way
            identity["resumed_with_changes"] = forced
        if main:
            atomic_write_json(run_dir / RUN_JSON, identity)
        requeues = previous.get("requeues", 0) + (1 if previous.get("state") == "preempted" else 0)
        logger.status(
            state="running",
            epoch=trainer.epoch,
            step=trainer.global_step,
            requeues=requeues,
            error=None,
            traceback=None,
            failed_rank=None,
            silent_rank=None,
            signal=None,
            primary_metric=identity["primary_metric"],
            job_id=identity["slurm_job_id"] or previous.get("job_id", ""),
        )
        wandb_mode, wandb_mode_from = resolve_wandb_mode(cfg.LOG.WANDB.MODE)
        logger.info("W&B mode %s (from %s)", wandb_mode, wandb_mode_from)
        settings = {
            "mode": wandb_mode,
            "project": cfg.LOG.WANDB.PROJECT,
            "entity": cfg.LOG.WANDB.ENTITY,
            "group": identity["wandb_group"],
            "job_type": cfg.DIST.STRATEGY,
            "name": cfg.RUN_NAME,
            "tags": list(cfg.LOG.WANDB.TAGS),
            "init_timeout": cfg.LOG.WANDB.INIT_TIMEOUT,
        }
        wandb_config = {
            **flatten_config(cfg),
            "derived/world_size": world.world_size,
            "derived/global_batch": identity["global_batch"],
            "derived/lr": trainer.lr,
            "derived/num_params": trainer.num_params,
            "run": identity,
        }
        logger.start_wandb(settings, wandb_id, wandb_config)
        result = trainer.fit()
        logger.status(state=result, epoch=trainer.epoch, step=trainer.global_step)
        logger.info("run %s %s: %s", cfg.RUN_NAME, result, run_dir)
        logger.finish(0)
        return result
    except KeyboardInterrupt:
        logger.status(state="cancelled", error="interrupted by the user (KeyboardInterrupt)")
        logger.finish(1)
        raise
    except CheckpointError:
        # The checkpoint does not fit: the run directory is left as it was (status included).
        logger.finish(1)
        raise
    except BaseException as e:
        tb = traceback.format_exc()
        first = f"{type(e).__name__}: {e}".splitlines()[0]
        if not main:
            (run_dir / f"error-rank{du.rank()}.txt").write_text(tb)
            _report_from_survivor(run_dir, watchdog, first)
        logger.status(state="failed", error=first, traceback=tb)
        logger.warning("run failed: %s", first)
        logger.finish(1)
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()
        du.destroy_distributed()


def _report_from_survivor(run_dir: Path, watchdog: Watchdog | None, error: str) -> None:
    """A rank other than 0 failed (often because a peer died): when status.json still
    says running, record failed here, naming a peer on this host whose process is gone."""
    if read_status(run_dir).get("state") != "running":
        return
    dead = watchdog.dead_peers() if watchdog is not None else []
    fields = {"failed_rank": dead[0]} if dead else {}
    cause = f"rank {dead[0]}'s process is gone; " if dead else ""
    write_status(run_dir, state="failed", error=f"rank {du.rank()}: {cause}{error}"[:500], **fields)
