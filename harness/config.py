"""Experiment configuration: harness defaults, workload defaults, YAML loading.

The engine's defaults (``harness/defaults.py``) are workload-agnostic. Each
workload (see ``harness.tasks``) adds its own ``MODEL``/``DATASET``/``TEST`` blocks
(and may add keys to the harness blocks). ``load_config`` never mutates a module-level node: it clones
the defaults, merges the ``_BASE_`` chain, the YAML and ``KEY VALUE``
overrides, lets the workload map legacy keys, validates, and freezes.
"""

from __future__ import annotations

import ast
import difflib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import yaml
from yacs.config import CfgNode as CN

from harness import runformat, yamlfiles
from harness.defaults import _C, CHOICES
from harness.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration problem; the message names the key and the file."""


def get_harness_defaults() -> CN:
    """A mutable clone of the workload-agnostic defaults."""
    return _C.clone()


def get_cfg(task: str = "fer") -> CN:
    """A mutable clone of the harness defaults plus the workload's defaults."""
    from harness.tasks import get_workload

    cfg = get_harness_defaults()
    cfg.TASK = task
    get_workload(task).add_config_defaults(cfg)
    return cfg


# ---------------------------------------------------------------- YAML files
def read_yaml_chain(path: str | os.PathLike) -> dict:
    """The run config at ``path`` merged over its ``_BASE_`` chain, as a plain dict."""
    return yamlfiles.read_yaml_chain(path, ConfigError, "config file")


# ------------------------------------------------------------------ merging
def _decode(value: Any) -> Any:
    """YAML/CLI strings that spell Python literals become those literals."""
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _all_keys(node: CN, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CN):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _unknown_key(full_key: str, cfg: CN, source: str) -> ConfigError:
    candidates = _all_keys(cfg)
    close = difflib.get_close_matches(full_key, candidates, n=3, cutoff=0.6)
    if not close:
        leaf = full_key.rsplit(".", 1)[-1]
        close = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf][:3]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key '{full_key}' (from {source}).{hint}")


# YAML 1.1's spellings of booleans, which yaml.safe_load accepts in files; the command
# line accepts the same, so `LOG.WANDB.ENABLED false` means what it means in YAML.
_YAML_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _coerce(full_key: str, new: Any, old: Any, source: str) -> Any:
    new = _decode(new)
    if isinstance(old, bool) and isinstance(new, str) and new.lower() in _YAML_BOOLS:
        return _YAML_BOOLS[new.lower()]
    if old is None or new is None:
        return new
    if isinstance(old, bool) or isinstance(new, bool):
        if isinstance(old, bool) and isinstance(new, bool):
            return new
    elif isinstance(old, float) and isinstance(new, int):
        return float(new)
    elif isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return type(old)(new)
    elif isinstance(old, CN) and isinstance(new, dict):
        return new
    elif type(old) is type(new):
        return new
    raise ConfigError(
        f"config key '{full_key}' (from {source}) expects {type(old).__name__} "
        f"like {old!r}, got {type(new).__name__} {new!r}"
    )


KeyRewrite = Callable[[str, Any], tuple[str, Any]]


def merge_dict(
    cfg: CN,
    data: dict,
    source: str,
    explicit: set[str] | None = None,
    prefix: str = "",
    root: CN | None = None,
    rewrite: KeyRewrite | None = None,
) -> None:
    """Merge a nested dict into ``cfg`` with key and type checks. ``rewrite(full_key, value)``
    (the workload's) may send a leaf value to another key first, e.g. a fraction given as a split."""
    root = cfg if root is None else root
    for key, value in data.items():
        full = f"{prefix}{key}"
        if rewrite is not None and not isinstance(value, dict):
            target, value = rewrite(full, value)
            if target != full:
                merge_dict(root, _nest(target, value), source, explicit, root=root)
                continue
        if key not in cfg:
            raise _unknown_key(full, root, source)
        current = cfg[key]
        if isinstance(current, CN):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key '{full}' (from {source}) is a section; give it a mapping, not {value!r}"
                )
            merge_dict(current, value, source, explicit, full + ".", root, rewrite)
            continue
        cfg[key] = _coerce(full, value, current, source)
        if explicit is not None:
            explicit.add(full)


def _nest(full_key: str, value: Any) -> dict:
    nested: dict = {}
    node = nested
    parts = full_key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def merge_opts(
    cfg: CN, opts: Sequence[str], explicit: set[str] | None = None, rewrite: KeyRewrite | None = None
) -> None:
    """Merge ``["KEY", "VALUE", ...]`` command-line overrides into ``cfg``."""
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs, got an odd list: {list(opts)}")
    for key, value in zip(opts[0::2], opts[1::2]):
        merge_dict(cfg, _nest(key, value), "command line", explicit, rewrite=rewrite)


# --------------------------------------------------------------- validation
def _get(cfg: CN, full_key: str) -> Any:
    node: Any = cfg
    for part in full_key.split("."):
        node = node[part]
    return node


def _check_ranges(cfg: CN) -> None:
    """Counts that must be >= 1, and intervals that must be >= 0 (0 disables)."""
    positive = {
        "DIST.NODES": cfg.DIST.NODES,
        "TRAIN.EPOCHS": cfg.TRAIN.EPOCHS,
        "TRAIN.BATCH_SIZE_PER_GPU": cfg.TRAIN.BATCH_SIZE_PER_GPU,
        "TRAIN.GRAD_ACCUM": cfg.TRAIN.GRAD_ACCUM,
        "LOG.EVERY_N_STEPS": cfg.LOG.EVERY_N_STEPS,
        "TRAIN.LR_BASE_BATCH": cfg.TRAIN.LR_BASE_BATCH,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"config key '{key}' must be >= 1, got {value}")
    not_negative = {
        "CHECKPOINT.EVERY_EPOCHS": cfg.CHECKPOINT.EVERY_EPOCHS,
        "CHECKPOINT.EVERY_N_STEPS": cfg.CHECKPOINT.EVERY_N_STEPS,
        "EVAL.EVERY_EPOCHS": cfg.EVAL.EVERY_EPOCHS,
    }
    for key, value in not_negative.items():
        if value < 0:
            raise ConfigError(f"config key '{key}' must be >= 0 (0 disables), got {value}")


def validate_harness(cfg: CN) -> None:
    """Checks that hold for every workload; raises ConfigError naming the key."""
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; choose one of {', '.join(allowed)}")
    _check_ranges(cfg)
    d, t = cfg.DIST, cfg.TRAIN
    if d.GPUS < 0:
        raise ConfigError(f"config key 'DIST.GPUS' must be >= 0, got {d.GPUS}")
    if d.STRATEGY == "ddp" and d.GPUS == 0:
        raise ConfigError("DIST.STRATEGY ddp needs DIST.GPUS >= 1 (the number of processes)")
    if d.STRATEGY == "dp" and d.NODES > 1:
        raise ConfigError(
            f"DIST.STRATEGY dp runs in one process on one node; DIST.NODES is {d.NODES}. "
            "Use ddp for multi-node runs"
        )
    if d.STRATEGY == "single" and (d.GPUS > 1 or d.NODES > 1):
        raise ConfigError(
            f"DIST.STRATEGY single uses one device; DIST.GPUS is {d.GPUS} and "
            f"DIST.NODES is {d.NODES}. Use dp or ddp"
        )
    if d.STRATEGY == "ddp" and d.GPUS % d.NODES:
        raise ConfigError(f"DIST.GPUS ({d.GPUS}) must divide evenly over DIST.NODES ({d.NODES})")
    if t.BATCH_SIZE_PER_GPU % t.GRAD_ACCUM:
        raise ConfigError(
            f"TRAIN.BATCH_SIZE_PER_GPU ({t.BATCH_SIZE_PER_GPU}) must be divisible by "
            f"TRAIN.GRAD_ACCUM ({t.GRAD_ACCUM}): the micro-batch is their quotient"
        )
    if t.LR <= 0:
        raise ConfigError(f"config key 'TRAIN.LR' must be > 0, got {t.LR}")
    if t.WARMUP_EPOCHS < 0 or t.WARMUP_EPOCHS > t.EPOCHS:
        raise ConfigError(f"TRAIN.WARMUP_EPOCHS ({t.WARMUP_EPOCHS}) must lie in [0, TRAIN.EPOCHS={t.EPOCHS}]")
    if list(t.LR_STEP) != sorted(t.LR_STEP):
        raise ConfigError(f"TRAIN.LR_STEP must be increasing, got {list(t.LR_STEP)}")
    if cfg.DATA.NUM_WORKERS < 0:
        raise ConfigError(f"DATA.NUM_WORKERS must be >= 0, got {cfg.DATA.NUM_WORKERS}")


# --------------------------------------------------------------- public API
def global_batch_size(cfg: CN) -> int:
    """Samples per optimizer step over all devices."""
    return cfg.TRAIN.BATCH_SIZE_PER_GPU * device_count(cfg)


def device_count(cfg: CN) -> int:
    """Devices that share the global batch (at least 1)."""
    return runformat.device_count(cfg.DIST.STRATEGY, cfg.DIST.GPUS)


# wandb's own spellings: "dryrun" is its old name for offline, "run" for online.
_WANDB_MODE_ALIASES = {
    "online": "online",
    "run": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}


def resolve_wandb_mode(config_mode: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The W&B mode a run uses and where it came from: ``WANDB_MODE`` in the
    environment, when set, overrides ``LOG.WANDB.MODE`` (so a cluster or a shell can
    switch every run on or off without editing configs); else the config's mode."""
    environ = os.environ if environ is None else environ
    raw = (environ.get("WANDB_MODE") or "").strip()
    if not raw:
        return config_mode, "LOG.WANDB.MODE"
    mode = _WANDB_MODE_ALIASES.get(raw.lower())
    if mode is None:
        raise ConfigError(
            f"environment variable WANDB_MODE is {raw!r}; choose one of online, offline, "
            "disabled (or unset it to use LOG.WANDB.MODE)"
        )
    return mode, "WANDB_MODE"


def default_run_name(cfg: CN) -> str:
    return f"{cfg.TASK}-{cfg.DIST.STRATEGY}-g{device_count(cfg)}-b{cfg.TRAIN.BATCH_SIZE_PER_GPU}-s{cfg.SEED}"


def load_config(path: str | os.PathLike | None = None, opts: Iterable[str] = (), freeze: bool = True) -> CN:
    """Defaults + ``_BASE_`` chain + YAML + ``KEY VALUE`` overrides, validated.

    The workload is ``TASK`` from the overrides, else from the YAML, else the
    workload that recognises the file (official HRNet files name no TASK).
    """
    from harness.tasks import get_workload, task_for_raw_config

    opts = list(opts)
    source = os.fspath(path) if path is not None else "defaults"
    raw = read_yaml_chain(path) if path is not None else {}
    task_name = _task_from_opts(opts) or raw.get("TASK") or task_for_raw_config(raw)
    cfg = get_harness_defaults()
    if task_name not in _task_names():
        raise ConfigError(
            f"config key 'TASK' (from {source}) is {task_name!r}; choose one of {', '.join(_task_names())}"
        )
    cfg.TASK = task_name
    task = get_workload(task_name)
    task.add_config_defaults(cfg)
    explicit: set[str] = set()
    merge_dict(cfg, raw, source, explicit, rewrite=task.rewrite_key)
    merge_opts(cfg, opts, explicit, rewrite=task.rewrite_key)
    task.finalize_config(cfg, explicit)
    validate_harness(cfg)
    task.validate_config(cfg)
    if not cfg.RUN_NAME:
        cfg.RUN_NAME = default_run_name(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def _task_from_opts(opts: list[str]) -> str | None:
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == "TASK":
            return value
    return None


def _task_names() -> list[str]:
    from harness.tasks import WORKLOADS

    return sorted(WORKLOADS)


def config_to_dict(cfg: CN) -> dict:
    """A plain nested dict (lists, not tuples) of a config."""

    def convert(node: Any) -> Any:
        if isinstance(node, CN):
            return {k: convert(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [convert(v) for v in node]
        return node

    return convert(cfg)


def flatten_config(cfg: CN) -> dict[str, Any]:
    """``{"TRAIN.LR": 0.1, ...}``: the form W&B and analysis tables use."""
    return runformat.flatten(config_to_dict(cfg))


def dump_config(cfg: CN, path: str | os.PathLike) -> None:
    from harness.rundir import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
