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
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from yacs.config import CfgNode as CN

from harness.defaults import _C, CHOICES

BASE_KEY = "_BASE_"


class ConfigError(ValueError):
    """A configuration problem; the message names the key and the file."""


def get_harness_defaults() -> CN:
    """A mutable clone of the workload-agnostic defaults."""
    return _C.clone()


def get_cfg(task: str = "fer") -> CN:
    """A mutable clone of the harness defaults plus the workload's defaults."""
    from harness.tasks import get_task

    cfg = get_harness_defaults()
    cfg.TASK = task
    get_task(task).add_config_defaults(cfg)
    return cfg


# ---------------------------------------------------------------- YAML files
def read_yaml_chain(path: str | os.PathLike) -> dict:
    """The YAML at ``path`` merged over its ``_BASE_`` chain, as a plain dict."""
    return _read_yaml_chain(os.path.abspath(os.fspath(path)), ())


def read_yaml_mapping(path: str | os.PathLike, error: type[Exception] = ValueError,
                      what: str = "config file", seen: tuple[str, ...] = ()) -> dict:
    """A YAML file whose top level is a mapping; any problem raises ``error``
    naming the file (and the file whose ``_BASE_`` named it, if ``seen``)."""
    path = os.fspath(path)
    if path in seen:
        raise error(f"_BASE_ cycle: {' -> '.join(seen + (path,))}")
    if not os.path.isfile(path):
        where = f" (named as _BASE_ by {seen[-1]})" if seen else ""
        raise error(f"{what} not found: {path}{where}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise error(f"{what} {path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{what} {path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _read_yaml_chain(path: str, seen: tuple[str, ...]) -> dict:
    data = read_yaml_mapping(path, ConfigError, "config file", seen)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        _deep_update(merged, _read_yaml_chain(os.path.normpath(base_path), seen + (path,)))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


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


def _coerce(full_key: str, new: Any, old: Any, source: str) -> Any:
    new = _decode(new)
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


def merge_dict(cfg: CN, data: dict, source: str, explicit: set[str] | None = None,
               prefix: str = "", root: CN | None = None) -> None:
    """Merge a nested dict into ``cfg`` with key and type checks."""
    root = cfg if root is None else root
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in cfg:
            raise _unknown_key(full, root, source)
        current = cfg[key]
        if isinstance(current, CN):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{full}' (from {source}) is a section; "
                                  f"give it a mapping, not {value!r}")
            merge_dict(current, value, source, explicit, full + ".", root)
            continue
        cfg[key] = _coerce(full, value, current, source)
        if explicit is not None:
            explicit.add(full)


def merge_opts(cfg: CN, opts: Sequence[str], explicit: set[str] | None = None) -> None:
    """Merge ``["KEY", "VALUE", ...]`` command-line overrides into ``cfg``."""
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs, got an odd list: {list(opts)}")
    for key, value in zip(opts[0::2], opts[1::2]):
        nested: dict = {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        merge_dict(cfg, nested, "command line", explicit)


# --------------------------------------------------------------- validation
def _get(cfg: CN, full_key: str) -> Any:
    node: Any = cfg
    for part in full_key.split("."):
        node = node[part]
    return node


def validate_harness(cfg: CN) -> None:
    """Checks that hold for every workload; raises ConfigError naming the key."""
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; choose one of {', '.join(allowed)}")
    d, t = cfg.DIST, cfg.TRAIN
    positive = {"DIST.NODES": d.NODES, "TRAIN.EPOCHS": t.EPOCHS,
                "TRAIN.BATCH_SIZE_PER_GPU": t.BATCH_SIZE_PER_GPU, "TRAIN.GRAD_ACCUM": t.GRAD_ACCUM,
                "LOG.EVERY_N_STEPS": cfg.LOG.EVERY_N_STEPS, "TRAIN.LR_BASE_BATCH": t.LR_BASE_BATCH}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"config key '{key}' must be >= 1, got {value}")
    if d.GPUS < 0:
        raise ConfigError(f"config key 'DIST.GPUS' must be >= 0, got {d.GPUS}")
    if d.STRATEGY == "ddp" and d.GPUS == 0:
        raise ConfigError("DIST.STRATEGY ddp needs DIST.GPUS >= 1 (the number of processes)")
    if d.STRATEGY == "dp" and d.NODES > 1:
        raise ConfigError(f"DIST.STRATEGY dp runs in one process on one node; DIST.NODES is {d.NODES}. "
                          "Use ddp for multi-node runs")
    if d.STRATEGY == "single" and (d.GPUS > 1 or d.NODES > 1):
        raise ConfigError(f"DIST.STRATEGY single uses one device; DIST.GPUS is {d.GPUS} and "
                          f"DIST.NODES is {d.NODES}. Use dp or ddp")
    if d.STRATEGY == "ddp" and d.GPUS % d.NODES:
        raise ConfigError(f"DIST.GPUS ({d.GPUS}) must divide evenly over DIST.NODES ({d.NODES})")
    if t.BATCH_SIZE_PER_GPU % t.GRAD_ACCUM:
        raise ConfigError(f"TRAIN.BATCH_SIZE_PER_GPU ({t.BATCH_SIZE_PER_GPU}) must be divisible by "
                          f"TRAIN.GRAD_ACCUM ({t.GRAD_ACCUM}): the micro-batch is their quotient")
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
    return max(1, cfg.DIST.GPUS) if cfg.DIST.STRATEGY != "single" else 1


def default_run_name(cfg: CN) -> str:
    return (f"{cfg.TASK}-{cfg.DIST.STRATEGY}-g{device_count(cfg)}-"
            f"b{cfg.TRAIN.BATCH_SIZE_PER_GPU}-s{cfg.SEED}")


def load_config(path: str | os.PathLike | None = None, opts: Iterable[str] = (),
                freeze: bool = True) -> CN:
    """Defaults + ``_BASE_`` chain + YAML + ``KEY VALUE`` overrides, validated.

    The workload is ``TASK`` from the overrides, else from the YAML, else the
    workload that recognises the file (official HRNet files name no TASK).
    """
    from harness.tasks import get_task, task_for_raw_config

    opts = list(opts)
    source = os.fspath(path) if path is not None else "defaults"
    raw = read_yaml_chain(path) if path is not None else {}
    task_name = _task_from_opts(opts) or raw.get("TASK") or task_for_raw_config(raw)
    cfg = get_harness_defaults()
    if task_name not in _task_names():
        raise ConfigError(f"config key 'TASK' (from {source}) is {task_name!r}; "
                          f"choose one of {', '.join(_task_names())}")
    cfg.TASK = task_name
    task = get_task(task_name)
    task.add_config_defaults(cfg)
    explicit: set[str] = set()
    merge_dict(cfg, raw, source, explicit)
    merge_opts(cfg, opts, explicit)
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
    from harness.tasks import TASKS

    return sorted(TASKS)


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
    flat: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v
    walk(config_to_dict(cfg), "")
    return flat


def dump_config(cfg: CN, path: str | os.PathLike) -> None:
    from harness.rundir import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
