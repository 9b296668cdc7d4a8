"""Cluster profiles (``slurm/clusters/*.yaml``) and the resource shape of a run.

A profile says what one cluster offers and how to start Python there; a shape is
what one run asks for (nodes, tasks per node, GPUs per node, CPUs, memory, time).
Runs with equal shapes share one Slurm job array.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yacs.config import CfgNode as CN

import harness
from harness.errors import UserError
from harness.launcher.shell_safety import check_profile_fields, check_python
from harness.runformat import device_count
from harness.yamlfiles import read_yaml_mapping


class ProfileError(UserError, ValueError):
    """A cluster profile problem; the message names the file and the key."""


PROFILE_DIR = Path(harness.__file__).resolve().parent.parent / "slurm" / "clusters"


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    path: str = ""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    # 0 means CPU-only nodes: ddp tasks use gloo and DIST.GPUS counts processes.
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    # At most one of the two memory rules; neither means "do not request --mem".
    mem_per_gpu_gb: float | None = None
    mem_per_task_gb: float | None = None
    timeout_min: int = 60
    signal_delay_s: int = 90
    # Timeouts a run may requeue after (preemptions always requeue).
    max_num_timeout: int = 3
    max_array_size: int = 1000
    array_parallelism: int = 256
    setup: tuple[str, ...] = ()
    # Shell command that starts Python on the nodes; empty uses this interpreter.
    python: str = ""
    additional_parameters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["setup"] = list(self.setup)
        return out


_INT_KEYS = (
    "gpus_per_node",
    "cpus_per_task",
    "timeout_min",
    "signal_delay_s",
    "max_num_timeout",
    "max_array_size",
    "array_parallelism",
)
_FLOAT_KEYS = ("mem_per_gpu_gb", "mem_per_task_gb")
_STR_KEYS = ("partition", "account", "qos", "constraint", "python")


def profile_from_dict(data: dict[str, Any], source: str, name: str = "") -> ClusterProfile:
    """Validate a profile mapping; errors name ``source`` and the key."""
    known = {f for f in ClusterProfile.__dataclass_fields__ if f not in ("path",)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(f"{source}: unknown profile key(s) {unknown}; known keys: {sorted(known)}")
    values: dict[str, Any] = {"name": str(data.get("name") or name), "path": source}
    for key in _INT_KEYS:
        if data.get(key) is not None:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ProfileError(f"{source}: profile key '{key}' must be an integer >= 0, got {value!r}")
            values[key] = value
    for key in ("max_array_size", "array_parallelism", "cpus_per_task", "timeout_min"):
        if key in values and values[key] < 1:
            raise ProfileError(f"{source}: profile key '{key}' must be >= 1, got {values[key]}")
    for key in _FLOAT_KEYS:
        if data.get(key) is not None:
            if isinstance(data[key], bool) or not isinstance(data[key], (int, float)) or data[key] <= 0:
                raise ProfileError(f"{source}: profile key '{key}' must be a number > 0, got {data[key]!r}")
            values[key] = float(data[key])
    if values.get("mem_per_gpu_gb") and values.get("mem_per_task_gb"):
        raise ProfileError(f"{source}: set only one of 'mem_per_gpu_gb' and 'mem_per_task_gb'")
    for key in _STR_KEYS:
        if data.get(key) is not None:
            values[key] = str(data[key])
    if not values["name"]:
        raise ProfileError(f"{source}: profile needs a 'name'")
    _script_fields(data, values, source)
    return ClusterProfile(**values)


def _script_fields(data: dict[str, Any], values: dict[str, Any], source: str) -> None:
    """setup, additional_parameters and python: fields pasted into the sbatch script,
    checked against injection (see shell_safety)."""

    def fail(message: str) -> ProfileError:
        return ProfileError(f"{source}: {message}")

    setup = data.get("setup") or []
    if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
        raise fail("profile key 'setup' must be a list of shell lines")
    values["setup"] = tuple(setup)
    extra = data.get("additional_parameters") or {}
    if not isinstance(extra, dict):
        raise fail("profile key 'additional_parameters' must be a mapping")
    values["additional_parameters"] = dict(extra)
    check_profile_fields(values, fail)
    if values.get("python"):
        values["python"] = check_python("profile key 'python'", values["python"], fail)


def load_profile(name_or_path: str | os.PathLike) -> ClusterProfile:
    """A profile by name (``slurm/clusters/<name>.yaml``) or by path."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or os.sep in text):
        path = PROFILE_DIR / f"{text}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ProfileError(
            f"cluster profile {text!r} not found (looked for {path}); "
            f"available: {', '.join(available) or 'none'}"
        )
    data = read_yaml_mapping(path, ProfileError, "cluster profile")
    return profile_from_dict(data, str(path), name=path.stem)


@dataclass(frozen=True, order=True)
class Shape:
    """The resources one run asks for; equal shapes share a job array."""

    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: int
    mem_gb: float | None
    timeout_min: int

    def label(self) -> str:
        mem = "-" if self.mem_gb is None else f"{self.mem_gb:g}G"
        return (
            f"N{self.nodes}xT{self.tasks_per_node} gpu/node={self.gpus_per_node} "
            f"cpu/task={self.cpus_per_task} mem={mem} time={self.timeout_min}m"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shape:
        return cls(**data)


def nodes_needed(cfg: CN, profile: ClusterProfile | None) -> int:
    """Nodes a run spans: DIST.NODES, or more when its GPUs do not fit one node."""
    nodes = cfg.DIST.NODES
    if profile is not None and profile.gpus_per_node > 0 and cfg.DIST.STRATEGY == "ddp":
        nodes = max(nodes, math.ceil(cfg.DIST.GPUS / profile.gpus_per_node))
    return nodes


def shape_for(cfg: CN, profile: ClusterProfile, run_name: str = "", timeout_min: int | None = None) -> Shape:
    """The resource shape of a run on ``profile``.

    ddp: one task per GPU (per process on CPU nodes) spread evenly over the nodes.
    dp: one task holding all the run's GPUs, so it must fit one node.
    """
    strategy, gpus = cfg.DIST.STRATEGY, cfg.DIST.GPUS
    gpn = profile.gpus_per_node
    who = f"run {run_name}" if run_name else "run"
    if strategy == "ddp":
        nodes = nodes_needed(cfg, profile)
        if gpus % nodes:
            raise ProfileError(f"{who}: ddp with {gpus} GPUs does not divide over {nodes} nodes")
        tasks_per_node = gpus // nodes
        if gpn and tasks_per_node > gpn:
            raise ProfileError(
                f"{who}: needs {tasks_per_node} GPUs per node but profile "
                f"'{profile.name}' has gpus_per_node {gpn}"
            )
        gpus_per_node = tasks_per_node if gpn else 0
    else:
        nodes, tasks_per_node = 1, 1
        wanted = device_count(strategy, gpus)
        if gpn and wanted > gpn:
            raise ProfileError(
                f"{who}: {strategy} needs {wanted} GPUs on one node but profile "
                f"'{profile.name}' has gpus_per_node {gpn}; exclude it or use ddp"
            )
        gpus_per_node = wanted if gpn else 0
    mem_gb = None
    if profile.mem_per_gpu_gb and gpus_per_node:
        mem_gb = profile.mem_per_gpu_gb * gpus_per_node
    elif profile.mem_per_task_gb:
        mem_gb = profile.mem_per_task_gb * tasks_per_node
    # dp's one task feeds all its GPUs: give it the CPUs ddp would get over its tasks,
    # so that a DP-vs-DDP comparison is not a comparison of data-loading budgets.
    cpus = profile.cpus_per_task * (max(1, gpus) if strategy == "dp" else 1)
    return Shape(
        nodes=nodes,
        tasks_per_node=tasks_per_node,
        gpus_per_node=gpus_per_node,
        cpus_per_task=cpus,
        mem_gb=mem_gb,
        timeout_min=timeout_min or profile.timeout_min,
    )
