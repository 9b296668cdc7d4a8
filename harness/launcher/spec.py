"""Sweep specs (``configs/sweeps/*.yaml``): load, validate, expand into runs.

A spec names a base run config and a grid; every grid combination times every
seed is one run, loaded with ``harness.config.load_config(base, opts)`` at
expansion time so that an invalid combination fails before anything is
submitted. Spec files may share values through ``_BASE_`` like run configs.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yacs.config import CfgNode as CN

from harness.config import ConfigError, device_count, flatten_config, get_cfg, global_batch_size, load_config
from harness.errors import UserError
from harness.launcher.naming import check_sweep_set_keys, opt_value, run_name, short_name
from harness.launcher.profiles import ClusterProfile, ProfileError, Shape, nodes_needed, shape_for
from harness.runformat import CONFIG_TO_RUN, flatten
from harness.runformat import device_count as devices_for
from harness.yamlfiles import read_yaml_chain


class SpecError(UserError, ValueError):
    """A sweep spec problem; the message names the spec file and the key."""


# Grid shorthands -> config keys: run.json's names for the keys a scaling grid varies. ``gpus``
# is DIST.GPUS here (run.json's ``gpus`` is the device count derived from it).
SHORTHANDS = {
    **{
        name: key
        for key, name in CONFIG_TO_RUN.items()
        if name in ("strategy", "nodes", "batch_size_per_gpu")
    },
    "gpus": "DIST.GPUS",
}
# Grid keys that are not config keys but derive one.
GLOBAL_BATCH = "global_batch"
# Keys whose values the run name already spells out in fixed places.
_NAMED_KEYS = {"DIST.STRATEGY", "DIST.GPUS", "DIST.NODES", "TRAIN.BATCH_SIZE_PER_GPU", GLOBAL_BATCH}
SPEC_KEYS = {
    "name",
    "description",
    "base",
    "grid",
    "scaling",
    "global_batch",
    "repeats",
    "seeds",
    "lr_scaling",
    "exclude",
    "overrides",
    "short_names",
    "timeout_min",
}
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class SweepSpec:
    path: str
    name: str
    base: str
    grid: dict[str, list[Any]]
    scaling: str = "weak"
    global_batch: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    lr_scaling: str | None = None
    exclude: list[dict[str, list[Any]]] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    short_names: dict[str, str] = field(default_factory=dict)
    timeout_min: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunPlan:
    """One expanded run: how to rebuild its config and what it asks for."""

    name: str
    base: str
    opts: list[str]
    overrides: dict[str, Any]
    config: dict[str, Any]
    shape: Shape | None = None

    @property
    def strategy(self) -> str:
        return self.config["DIST.STRATEGY"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": self.base,
            "opts": list(self.opts),
            "overrides": self.overrides,
            "config": self.config,
            "shape": self.shape.to_dict() if self.shape else None,
        }


def _canonical(key: str) -> str:
    return SHORTHANDS.get(key, key)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a spec file (with its ``_BASE_`` chain)."""
    path = os.path.abspath(os.fspath(path))
    return spec_from_dict(read_yaml_chain(path, SpecError, "sweep spec", prepare=_resolve_base), path)


def _resolve_base(data: dict[str, Any], file: str) -> None:
    """Each spec file's relative ``base`` is resolved against that file's own directory
    before the ``_BASE_`` chain is merged."""
    if isinstance(data.get("base"), str) and not os.path.isabs(data["base"]):
        data["base"] = os.path.normpath(os.path.join(os.path.dirname(file), data["base"]))


# ------------------------------------------------------------ key parsers
# Each takes the raw spec (and what earlier keys parsed to) and raises ``fail(message)``.
Fail = Callable[[str], SpecError]


def _parse_name(raw: dict[str, Any], fail: Fail) -> str:
    name = _required_string(raw, "name", fail)
    if not _NAME_OK.match(name):
        raise fail(f"key 'name' {name!r} must be filesystem-safe ([A-Za-z0-9._+-])")
    return name


def _parse_base(raw: dict[str, Any], path: str, fail: Fail) -> str:
    base = _required_string(raw, "base", fail)
    if not os.path.isabs(base):
        base = os.path.normpath(os.path.join(os.path.dirname(path), base))
    if not os.path.isfile(base):
        raise fail(f"key 'base': run config not found: {base}")
    return base


def _required_string(raw: dict[str, Any], key: str, fail: Fail) -> str:
    if not isinstance(raw.get(key), str) or not raw[key]:
        raise fail(f"key '{key}' is required (a string)")
    return raw[key]


def _parse_grid(raw: dict[str, Any], fail: Fail) -> dict[str, list[Any]]:
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, dict):
        raise fail("key 'grid' must be a mapping of config key -> list of values")
    grid: dict[str, list[Any]] = {}
    for key, values in grid_raw.items():
        if values is None:  # a child spec removes a parent's grid key with null
            continue
        if not isinstance(values, list) or not values:
            raise fail(f"grid key '{key}' must be a non-empty list, got {values!r}")
        canon = _canonical(key)
        if canon in grid:
            raise fail(f"grid key '{key}' repeats '{canon}'")
        if len(set(map(repr, values))) != len(values):
            raise fail(f"grid key '{key}' lists a value twice: {values}")
        grid[canon] = values
    if "SEED" in grid:
        raise fail("grid key 'SEED': use 'repeats' or 'seeds' for seeds")
    return grid


def _parse_scaling(raw: dict[str, Any], fail: Fail) -> str:
    scaling = raw.get("scaling", "weak")
    if scaling not in ("weak", "strong"):
        raise fail(f"key 'scaling' is {scaling!r}; choose weak or strong")
    return scaling


def _parse_global_batch(
    raw: dict[str, Any], grid: dict[str, list[Any]], scaling: str, fail: Fail
) -> list[int]:
    """The strong-scaling global batches, from the top level or the grid (removed from it)."""
    global_batch = _as_list(raw["global_batch"]) if raw.get("global_batch") is not None else []
    if GLOBAL_BATCH in grid:
        if global_batch:
            raise fail("give 'global_batch' either at the top level or in the grid, not both")
        global_batch = grid.pop(GLOBAL_BATCH)
    if scaling == "weak":
        if global_batch:
            raise fail(
                "key 'global_batch' only applies to scaling 'strong' (weak scaling fixes the per-GPU batch)"
            )
        return []
    if not global_batch:
        raise fail("scaling 'strong' needs key 'global_batch' (the fixed global batch)")
    if "TRAIN.BATCH_SIZE_PER_GPU" in grid:
        raise fail(
            "scaling 'strong' derives the per-GPU batch from 'global_batch'; "
            "remove 'batch_size_per_gpu' from the grid"
        )
    for value in global_batch:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(f"key 'global_batch' must be positive integers, got {value!r}")
    return global_batch


def _parse_seeds(raw: dict[str, Any], fail: Fail) -> list[int]:
    if "seeds" in raw and "repeats" in raw:
        raise fail("give either 'repeats' or 'seeds', not both")
    if "seeds" in raw:
        seeds = _as_list(raw["seeds"])
    else:
        repeats = raw.get("repeats", 1)
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise fail(f"key 'repeats' must be an integer >= 1, got {repeats!r}")
        seeds = list(range(repeats))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise fail(f"key 'seeds' must be a non-empty list of integers, got {seeds!r}")
    return seeds


def _parse_lr_scaling(raw: dict[str, Any], fail: Fail) -> str | None:
    lr_scaling = raw.get("lr_scaling")
    if lr_scaling is not None and lr_scaling not in ("none", "linear", "sqrt"):
        raise fail(f"key 'lr_scaling' is {lr_scaling!r}; choose none, linear or sqrt")
    return lr_scaling


def _parse_overrides(raw: dict[str, Any], grid: dict[str, list[Any]], fail: Fail) -> dict[str, Any]:
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise fail("key 'overrides' must be a mapping of config key -> value")
    overrides = flatten(overrides)
    clash = sorted(set(overrides) & set(grid))
    if clash:
        raise fail(f"key(s) {clash} appear both in 'overrides' and 'grid'")
    problem = check_sweep_set_keys(grid, overrides)
    if problem:
        raise fail(problem)
    return overrides


def _parse_exclude(raw: dict[str, Any], grid: dict[str, list[Any]], fail: Fail) -> list[dict[str, list[Any]]]:
    exclude: list[dict[str, list[Any]]] = []
    for i, rule in enumerate(raw.get("exclude") or []):
        if not isinstance(rule, dict) or not rule:
            raise fail(f"exclude rule {i} must be a non-empty mapping of grid key -> value(s)")
        canon_rule = {}
        for key, value in rule.items():
            canon = _canonical(key)
            if canon not in grid and canon not in ("SEED", GLOBAL_BATCH):
                raise fail(f"exclude rule {i} key '{key}' is not a grid key (grid: {sorted(grid)})")
            canon_rule[canon] = _as_list(value)
        exclude.append(canon_rule)
    return exclude


def _parse_short_names(raw: dict[str, Any], fail: Fail) -> dict[str, str]:
    short_names = raw.get("short_names") or {}
    if not isinstance(short_names, dict):
        raise fail("key 'short_names' must be a mapping of config key -> short name")
    for key, short in short_names.items():
        if not isinstance(short, str) or not _NAME_OK.match(short):
            raise fail(f"short_names['{key}'] must be a filesystem-safe string, got {short!r}")
    return {_canonical(k): v for k, v in short_names.items()}


def _parse_timeout(raw: dict[str, Any], fail: Fail) -> int | None:
    timeout_min = raw.get("timeout_min")
    if timeout_min is not None and (not isinstance(timeout_min, int) or timeout_min < 1):
        raise fail(f"key 'timeout_min' must be an integer >= 1, got {timeout_min!r}")
    return timeout_min


def spec_from_dict(raw: dict[str, Any], path: str) -> SweepSpec:
    """Validate a spec's merged mapping; every problem names ``path`` and the key."""

    def fail(message: str) -> SpecError:
        return SpecError(f"sweep spec {path}: {message}")

    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {unknown}; known keys: {sorted(SPEC_KEYS)}")
    name, base = _parse_name(raw, fail), _parse_base(raw, path, fail)
    grid = _parse_grid(raw, fail)
    scaling = _parse_scaling(raw, fail)
    global_batch = _parse_global_batch(raw, grid, scaling, fail)  # may take 'global_batch' out of grid
    seeds = _parse_seeds(raw, fail)
    return SweepSpec(
        path=path,
        name=name,
        base=base,
        grid=grid,
        scaling=scaling,
        global_batch=global_batch,
        seeds=seeds,
        lr_scaling=_parse_lr_scaling(raw, fail),
        exclude=_parse_exclude(raw, grid, fail),
        overrides=_parse_overrides(raw, grid, fail),
        short_names=_parse_short_names(raw, fail),
        timeout_min=_parse_timeout(raw, fail),
        raw=raw,
    )


def _excluded(combo: dict[str, Any], rules: list[dict[str, list[Any]]]) -> bool:
    return any(all(combo.get(k) in values for k, values in rule.items()) for rule in rules)


def expand_sweep(
    spec: SweepSpec, sweep_dir: str | os.PathLike, profile: ClusterProfile | None = None
) -> list[RunPlan]:
    """Every (grid combination, seed) not excluded, as a validated run.

    With a profile, each run also gets its resource shape; a ddp run whose GPUs
    do not fit one node gets ``DIST.NODES`` raised to the nodes it needs.
    """
    sweep_dir = Path(sweep_dir).resolve()

    def fail(message: str) -> SpecError:
        return SpecError(f"sweep spec {spec.path}: {message}")

    try:
        task = load_config(spec.base).TASK
    except ConfigError as e:
        raise fail(f"key 'base': {e}") from e
    known = set(flatten_config(get_cfg(task)))
    for where, keys in (("grid", spec.grid), ("overrides", spec.overrides)):
        for key in keys:
            if key not in known:
                raise fail(f"{where} key '{key}' is not a config key of workload '{task}'")
    try:
        base_cfg = load_config(spec.base, _opts_of(spec.overrides))
    except ConfigError as e:
        raise fail(f"'overrides': {e}") from e
    extra_keys = [k for k in spec.grid if k not in _NAMED_KEYS]
    shorts = [short_name(k, spec.short_names) for k in extra_keys]
    if len(set(shorts)) != len(shorts):
        raise fail(f"grid keys {extra_keys} shorten to clashing names {shorts}; set 'short_names'")

    axes = list(spec.grid.items())
    if spec.global_batch:
        axes.append((GLOBAL_BATCH, spec.global_batch))
    plans: list[RunPlan] = []
    seen: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*[v for _, v in axes]):
        for seed in spec.seeds:
            combo = dict(zip([k for k, _ in axes], values))
            combo["SEED"] = seed
            if _excluded(combo, spec.exclude):
                continue
            plan = _plan_run(spec, sweep_dir, base_cfg, combo, extra_keys, profile, fail)
            if plan.name in seen:
                raise fail(
                    f"two runs get the name {plan.name!r}: {seen[plan.name]} and {combo}; "
                    "set 'short_names' or drop a grid key"
                )
            seen[plan.name] = combo
            plans.append(plan)
    if not plans:
        raise fail("the grid and 'exclude' leave no runs")
    return plans


def _opts_of(values: dict[str, Any]) -> list[str]:
    opts: list[str] = []
    for key, value in values.items():
        opts += [key, opt_value(value)]
    return opts


def _plan_run(
    spec: SweepSpec,
    sweep_dir: Path,
    base_cfg: CN,
    combo: dict[str, Any],
    extra_keys: list[str],
    profile: ClusterProfile | None,
    fail: Any,
) -> RunPlan:
    settings: dict[str, Any] = dict(spec.overrides)
    if spec.lr_scaling is not None:
        settings["TRAIN.LR_SCALING"] = spec.lr_scaling
    settings.update({k: v for k, v in combo.items() if k != GLOBAL_BATCH})
    strategy = settings.get("DIST.STRATEGY", base_cfg.DIST.STRATEGY)
    gpus = settings.get("DIST.GPUS", base_cfg.DIST.GPUS)
    if GLOBAL_BATCH in combo:
        devices = devices_for(strategy, gpus)
        total = combo[GLOBAL_BATCH]
        if total % devices:
            raise fail(
                f"strong scaling: global_batch {total} does not divide over {devices} GPUs "
                f"(strategy {strategy}); exclude that combination or change global_batch"
            )
        settings["TRAIN.BATCH_SIZE_PER_GPU"] = total // devices
    batch = settings.get("TRAIN.BATCH_SIZE_PER_GPU", base_cfg.TRAIN.BATCH_SIZE_PER_GPU)
    nodes = settings.get("DIST.NODES", base_cfg.DIST.NODES)
    name = run_name(
        strategy,
        devices_for(strategy, gpus),
        int(nodes),
        int(batch),
        combo["SEED"],
        [(short_name(k, spec.short_names), combo[k]) for k in extra_keys],
    )
    identity = {
        "OUTPUT_DIR": str(sweep_dir / "runs"),
        "RUN_NAME": name,
        "SWEEP": spec.name,
        "LOG.WANDB.GROUP": settings.get("LOG.WANDB.GROUP") or spec.name,
    }  # a grid/override wins
    cfg = _load(spec, name, {**settings, **identity}, fail)
    if profile is not None:
        needed = nodes_needed(cfg, profile)
        if needed != cfg.DIST.NODES:
            # The name keeps the grid's values; the config records the real node count.
            settings["DIST.NODES"] = needed
            cfg = _load(spec, name, {**settings, **identity}, fail)
    shape = None
    if profile is not None:
        try:
            shape = shape_for(cfg, profile, name, spec.timeout_min)
        except ProfileError as e:
            raise fail(str(e)) from e
    overrides = dict(settings)
    overrides["global_batch"] = global_batch_size(cfg)
    overrides["devices"] = device_count(cfg)
    return RunPlan(
        name=name,
        base=spec.base,
        opts=_opts_of({**settings, **identity}),
        overrides=overrides,
        config=flatten_config(cfg),
        shape=shape,
    )


def _load(spec: SweepSpec, name: str, settings: dict[str, Any], fail: Any) -> CN:
    try:
        return load_config(spec.base, _opts_of(settings))
    except ConfigError as e:
        raise fail(f"run {name}: {e}") from e
