"""The small interface between the training engine and a workload.

A workload (FER classification, COCO pose) implements :class:`Task`. The
engine only ever talks to a model through ``Task.forward``/``Task.loss`` and to
validation through an :class:`Evaluator`, so it needs no workload knowledge.

Batches are dicts of tensors. Datasets index with ``(epoch, index)`` keys (see
``harness.data``) so that augmentation randomness is a function of
(seed, epoch, index) only.
"""

from __future__ import annotations

import argparse
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, cast

from yacs.config import CfgNode as CN

if TYPE_CHECKING:  # torch is imported by the workloads' training side, not by the registry
    import torch
    from torch import nn
    from torch.utils.data import Dataset

# The registry: the only place the engine names its workloads. Imported by name; never eval'd.
# Workload name -> "module:Class" of its Task (the training side; imports torch).
TASKS: dict[str, str] = {
    "fer": "efficientnet.task:FERTask",
    "pose": "hrnet.task:PoseTask",
}
# Workload name -> its light module (a Workload): config hooks and ``harness data`` subcommands,
# importable without torch, so that loading configs, planning sweeps and building the CLI stay light.
WORKLOADS: dict[str, str] = {
    "fer": "efficientnet.workload",
    "pose": "hrnet.workload",
}


class Workload(Protocol):
    """What a module named in WORKLOADS provides."""

    #: Its name in TASKS and WORKLOADS (the config's TASK).
    NAME: str
    #: Key of Evaluator.evaluate()'s result that analysis treats as the headline.
    PRIMARY_METRIC: str
    #: Whether a larger primary metric is better.
    HIGHER_IS_BETTER: bool

    def add_config_defaults(self, cfg: CN) -> None:
        """Add this workload's blocks/keys to a clone of the harness defaults."""

    def recognizes(self, raw: dict) -> bool:
        """Whether a YAML dict that names no TASK is a config of this workload."""

    def finalize_config(self, cfg: CN, explicit: set[str]) -> None:
        """Map legacy/official keys onto harness keys. ``explicit``: keys the
        YAML or command line set (full dotted names)."""

    def rewrite_key(self, full_key: str, value: Any) -> tuple[str, Any]:
        """The key and value a YAML or command-line leaf is merged as: ``(full_key, value)``
        unchanged, or another key this workload spells that way (checked as that key)."""

    def validate_config(self, cfg: CN) -> None:
        """Raise harness.config.ConfigError naming the key on a bad value."""

    def add_data_cli(self, data_subparsers: argparse._SubParsersAction) -> None:
        """Add this workload's ``harness data`` subcommands (heavy imports only inside them)."""

    def summarize_data(self, cfg: CN) -> dict[str, Any]:
        """The split sizes and counts ``harness data summary`` prints as JSON."""


class Evaluator(ABC):
    """Accumulates per-sample results on each rank; ``evaluate`` combines them.

    ``process`` receives every validation batch with its ``"index"`` entry (the
    dataset index of each sample). ``evaluate`` must gather results across ranks
    (``harness.distributed.gather_objects``) keyed by that index, so every
    sample counts exactly once, and return the same metrics dict on every rank.
    """

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def process(self, batch: dict[str, Any], outputs: Any) -> None: ...

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Metric name -> value (plain floats; lists/nested allowed for extras)."""


class Task(ABC):
    """One workload's training side. Subclasses are stateless apart from the frozen config;
    their configuration hooks live in the light Workload module (WORKLOADS)."""

    #: Name in TASKS (the Workload's NAME).
    name: str = ""
    #: The Workload's PRIMARY_METRIC.
    primary_metric: str = ""
    #: The Workload's HIGHER_IS_BETTER.
    higher_is_better: bool = True

    def __init__(self, cfg: CN):
        self.cfg = cfg

    # ---- building blocks
    @abstractmethod
    def build_model(self) -> nn.Module: ...

    @abstractmethod
    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val). Items are dicts with at least "input" and "index"."""

    @abstractmethod
    def build_evaluator(self, val_dataset: Dataset, output_dir: Path | None = None) -> Evaluator:
        """``output_dir``: where the evaluator may keep result files (in the run directory)."""

    def train_sample_weights(self, train_dataset: Dataset) -> torch.Tensor | None:
        """Per-sample weights for a weighted sampler, or None for uniform."""
        return None

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        return model(batch["input"])

    @abstractmethod
    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Mean loss over the batch (a scalar tensor)."""

    def train_metrics(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-step training metrics as 0-dim device tensors, batch means (e.g. ``{"acc": ...}``,
        logged as ``train/acc``). Never call ``.item()`` here: the trainer sums them on the
        device and synchronises only when it writes a record. Called under ``no_grad``."""
        return {}

    def eval_forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        """Outputs for validation (e.g. flip test); defaults to ``forward``."""
        return self.forward(model, batch)

    def prepare_batch(
        self, batch: dict[str, Any], device: torch.device, channels_last: bool = False
    ) -> dict[str, Any]:
        """Move tensors to the device; uint8 images become normalised floats here,
        on the device, so the loader ships 4x fewer bytes."""
        import torch

        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(device, non_blocking=True)
            out[k] = v
        x = out["input"]
        if x.dtype == torch.uint8:
            x = self.normalize(x.float().div_(255))
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out["input"] = x
        return out

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def batch_size(batch: dict[str, Any]) -> int:
        return int(batch["input"].shape[0])


def task_module(name: str) -> str:
    """The module that holds the Task class registered under ``name`` (not imported)."""
    try:
        return TASKS[name].split(":")[0]
    except KeyError:
        raise KeyError(f"unknown TASK {name!r}; choose one of {', '.join(sorted(TASKS))}") from None


def get_task(name: str) -> type[Task]:
    """The Task class registered under ``name``."""
    module = importlib.import_module(task_module(name))  # an unknown name: one KeyError naming the choices
    return getattr(module, TASKS[name].split(":")[1])


def get_workload(name: str) -> Workload:
    """The light Workload module registered under ``name``."""
    try:
        module: ModuleType = importlib.import_module(WORKLOADS[name])
    except KeyError:
        raise KeyError(f"unknown TASK {name!r}; choose one of {', '.join(sorted(WORKLOADS))}") from None
    return cast(Workload, module)


def task_for_raw_config(raw: dict) -> str:
    """The workload a YAML with no TASK key belongs to (default: fer)."""
    for name in WORKLOADS:
        if get_workload(name).recognizes(raw):
            return name
    return "fer"
