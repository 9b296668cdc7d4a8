"""``harness eval``: validation of a saved checkpoint, without training (like official
HRNet's ``tools/test.py``).

The checkpoint (``TEST.MODEL_FILE``) may be our own ``checkpoints/last.pt``, a bare
state_dict, or the official HRNet ``.pth`` layouts (``{"state_dict": ...}``, with or
without DataParallel's ``module.`` prefix). Validation runs single or DDP (each rank
validates its own shard; the evaluator counts every sample once) and writes a run
directory like training does: ``config.yaml``, ``run.json`` (``evaluate_only: true``),
``status.json``, ``metrics.jsonl`` with one ``val`` record, and ``vis/`` pictures.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.config import ConfigError

STRIP_PREFIXES = ("module.", "_orig_mod.")


def read_model_state(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, info) from any supported checkpoint layout. ``info`` holds the
    training position (epoch, global_step) when the file is our own last.pt."""
    import torch

    if not os.path.isfile(path):
        raise ConfigError(f"TEST.MODEL_FILE: checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:
            # Our last.pt also holds RNG states and plain Python values (a file the harness wrote).
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ConfigError(f"TEST.MODEL_FILE: cannot read checkpoint {path}: {e}") from e
    info: dict[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        info = {k: obj[k] for k in ("epoch", "global_step") if k in obj}
        obj = obj["model"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"TEST.MODEL_FILE: {path} holds no state_dict (a mapping of tensors)")
    state = {}
    for key, value in obj.items():
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state, info


def load_model_for_eval(cfg: Any, task: Any) -> tuple[Any, dict[str, Any]]:
    """The task's model with TEST.MODEL_FILE loaded strictly, and the checkpoint info."""
    path = cfg.TEST.MODEL_FILE
    if not path:
        raise ConfigError(
            "TEST.MODEL_FILE is empty: give the checkpoint to evaluate "
            "(e.g. `harness eval --config X.yaml TEST.MODEL_FILE runs/r/checkpoints/last.pt`)"
        )
    state, info = read_model_state(path)
    build_cfg = cfg.clone()
    build_cfg.defrost()
    build_cfg.TEST.MODEL_FILE = ""  # the pose builder would load it again with the official-only reader
    model = type(task)(build_cfg).build_model()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(
            f"TEST.MODEL_FILE: {path} does not match MODEL.NAME {cfg.MODEL.NAME}: {first}"
        ) from e
    return model, info


def run_evaluation(cfg: Any) -> dict[str, Any]:
    """Validate TEST.MODEL_FILE in this process's distributed world; returns the
    ``val/*`` metrics (on every rank)."""
    import torch

    from harness import distributed as du
    from harness import parallel, vis
    from harness.config import device_count, dump_config, flatten_config
    from harness.data import InferenceSampler, build_loader
    from harness.rundir import atomic_write_json, environment_info, git_commit, run_dir_for, slurm_job_id
    from harness.runlog import RunLogger, setup_text_logging
    from harness.tasks import get_task
    from harness.train import _set_cpu_threads, check_world
    from harness.world import world_info_from_env

    world = world_info_from_env()
    check_world(cfg, world)
    _set_cpu_threads(world)
    device = du.init_distributed(world, cfg.DIST.BACKEND)
    run_dir = run_dir_for(cfg)
    if du.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
    du.barrier()
    setup_text_logging(run_dir, du.is_main())
    task_cls = get_task(cfg.TASK)
    logger = RunLogger(run_dir, f"val/{task_cls.primary_metric}", task_cls.higher_is_better)
    started = time.time()
    try:
        if du.is_main():
            dump_config(cfg, run_dir / "config.yaml")
        task = task_cls(cfg)
        _, val_set = task.build_datasets()
        evaluator = task.build_evaluator(val_set, output_dir=run_dir / "results")
        batch = cfg.EVAL.BATCH_SIZE_PER_GPU or cfg.TRAIN.BATCH_SIZE_PER_GPU
        loader = build_loader(
            val_set,
            InferenceSampler(len(val_set), world.world_size, world.rank),
            batch,
            num_workers=cfg.DATA.NUM_WORKERS,
            pin_memory=cfg.DATA.PIN_MEMORY,
            prefetch_factor=cfg.DATA.PREFETCH_FACTOR,
            persistent_workers=False,
            drop_last=False,
        )
        model, info = load_model_for_eval(cfg, task)
        model = model.to(device).eval()
        if cfg.TRAIN.CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        num_params = sum(p.numel() for p in model.parameters())
        wandb_id = du.broadcast_object(secrets.token_hex(4))
        env = environment_info()
        identity = {
            "run_name": cfg.RUN_NAME,
            "sweep": cfg.SWEEP,
            "workload": cfg.TASK,
            "model": cfg.MODEL.NAME,
            "evaluate_only": True,
            "model_file": cfg.TEST.MODEL_FILE,
            "checkpoint": info,
            "strategy": cfg.DIST.STRATEGY,
            "gpus": device_count(cfg),
            "nodes": cfg.DIST.NODES,
            "world_size": world.world_size,
            "device_type": device.type,
            "eval_batch_per_gpu": batch,
            "primary_metric": f"val/{task_cls.primary_metric}",
            "higher_is_better": task_cls.higher_is_better,
            "num_params": num_params,
            "seed": cfg.SEED,
            "git_commit": git_commit(),
            "host": env["host"],
            "torch_version": env["torch_version"],
            "cuda_version": env["cuda_version"],
            "python_version": env["python_version"],
            "wandb_id": wandb_id,
            "wandb_project": cfg.LOG.WANDB.PROJECT,
            "wandb_group": cfg.LOG.WANDB.GROUP or cfg.SWEEP or cfg.RUN_NAME,
            "slurm_job_id": slurm_job_id(),
            "started_at": started,
        }
        if du.is_main():
            atomic_write_json(run_dir / "run.json", identity)
        logger.status(
            state="running",
            epoch=0,
            step=0,
            error=None,
            traceback=None,
            primary_metric=identity["primary_metric"],
            job_id=identity["slurm_job_id"],
        )
        settings = {
            "mode": cfg.LOG.WANDB.MODE,
            "project": cfg.LOG.WANDB.PROJECT,
            "entity": cfg.LOG.WANDB.ENTITY,
            "group": identity["wandb_group"],
            "job_type": "eval",
            "name": cfg.RUN_NAME,
            "tags": list(cfg.LOG.WANDB.TAGS) + ["eval"],
            "init_timeout": cfg.LOG.WANDB.INIT_TIMEOUT,
        }
        logger.start_wandb(settings, wandb_id, {**flatten_config(cfg), "run": identity})

        evaluator.reset()
        first = None
        t0 = time.perf_counter()
        with torch.no_grad():
            for raw in loader:
                prepared = task.prepare_batch(raw, device, cfg.TRAIN.CHANNELS_LAST)
                with parallel.autocast(cfg, device):
                    outputs = task.eval_forward(model, prepared)
                evaluator.process(prepared, outputs)
                first = first or (raw, outputs)
        metrics = {f"val/{k}": v for k, v in evaluator.evaluate().items()}
        metrics["time/eval_s"] = time.perf_counter() - t0
        epoch = int(info.get("epoch", 0))
        vis.write_validation_grid(cfg, run_dir, logger, *(first or (None, None)), epoch)
        logger.record(
            "val",
            metrics,
            step=int(info.get("global_step", 0)),
            epoch=epoch,
            elapsed=time.time() - started,
            samples=0,
        )
        logger.info(
            "evaluation of %s: %s",
            cfg.TEST.MODEL_FILE,
            {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)},
        )
        logger.status(state="completed", epoch=epoch, step=int(info.get("global_step", 0)))
        logger.finish(0)
        return metrics
    except BaseException as e:
        first_line = f"{type(e).__name__}: {e}".splitlines()[0]
        logger.status(state="failed", error=first_line, traceback=traceback.format_exc())
        logger.finish(1)
        raise
    finally:
        du.destroy_distributed()


def needs_spawn(cfg: Any) -> bool:
    from harness.spawn import needs_spawn as training_needs_spawn

    return training_needs_spawn(cfg)


def launch_evaluation(cfg: Any) -> str:
    """Evaluate in this process, or in DIST.GPUS local processes for ddp; returns the final state."""
    if not needs_spawn(cfg):
        run_evaluation(cfg)
        return "completed"
    from harness.local_ranks import start_local_ranks
    from harness.rundir import read_status, run_dir_for
    from harness.tasks import task_module

    start_local_ranks(_worker, (cfg,), cfg.DIST.GPUS, preload=[task_module(cfg.TASK)])
    return read_status(run_dir_for(cfg)).get("state", "completed")


def _worker(local_rank: int, cfg: Any) -> None:
    run_evaluation(cfg)


def run_job(cfg: Any) -> str:
    """A sweep run of JOB.KIND eval or bench-model inside an existing world (a Slurm task)."""
    if cfg.JOB.KIND == "bench-model":
        from harness.benchmodel.job import bench_cfg_run

        bench_cfg_run(cfg, list(cfg.JOB.ARGS))
        return "completed"
    run_evaluation(cfg)
    return "completed"


def run_local_job(cfg: Any) -> int:
    """The same on the local backend: ddp evaluation spawns DIST.GPUS local processes."""
    if cfg.JOB.KIND == "bench-model":
        run_job(cfg)
        return 0
    return 0 if launch_evaluation(cfg) == "completed" else 1


def eval_opts(args: argparse.Namespace) -> list[str]:
    """Config overrides from the command line (flags become their keys)."""
    opts = list(args.opts)
    flags = [o for o in opts[0::2] if o.startswith("--")]
    if flags:
        raise ConfigError(f"{flags[0]} came after the KEY VALUE overrides; put flags before them")
    for flag, key in (
        ("gpus", "DIST.GPUS"),
        ("strategy", "DIST.STRATEGY"),
        ("output_dir", "OUTPUT_DIR"),
        ("run_name", "RUN_NAME"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            opts += [key, str(value)]
    return opts


def eval_config(config: str, opts: list[str]) -> Any:
    """The run config of an evaluation: RUN_NAME defaults to ``eval-<checkpoint's run>``."""
    from harness.config import load_config

    cfg = load_config(config, opts, freeze=False)
    if "RUN_NAME" not in opts[0::2]:
        path = Path(cfg.TEST.MODEL_FILE or "model")
        source = path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
        cfg.RUN_NAME = f"eval-{source}-{cfg.DIST.STRATEGY}-g{cfg.DIST.GPUS}"
    cfg.freeze()
    return cfg


def cmd_eval(args: argparse.Namespace) -> int:
    cfg = eval_config(args.config, eval_opts(args))
    state = launch_evaluation(cfg)
    print(f"eval {state}: {Path(cfg.OUTPUT_DIR) / cfg.RUN_NAME}")
    return 0 if state == "completed" else 1


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="validate a checkpoint without training (writes a run directory with val records)",
        description="Validate TEST.MODEL_FILE (our last.pt, a bare state_dict, or an official HRNet .pth) "
        "on the config's validation set. Trailing KEY VALUE pairs override config keys.",
    )
    p.add_argument("--config", required=True, help="experiment YAML (may use _BASE_)")
    p.add_argument("--strategy", choices=("single", "ddp"), help="DIST.STRATEGY")
    p.add_argument("--gpus", type=int, help="DIST.GPUS (processes for ddp)")
    p.add_argument("--output-dir", help="OUTPUT_DIR: parent of the run directory")
    p.add_argument("--run-name", help="RUN_NAME (default eval-<checkpoint's run>-<strategy>-g<gpus>)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. TEST.MODEL_FILE PATH")
    p.set_defaults(func=cmd_eval)
