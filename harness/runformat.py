"""The run directory format (docs/run-format.md) as data: the one place it is stated.

Training writes run directories with these names and fields; ``harness status``,
``harness analyze`` and the ``analysis`` package read them back. Standard library
only, so that readers (``analysis/`` on a laptop without torch) can import it: the
``harness`` package's ``__init__`` imports nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ------------------------------------------------------------------- files
RUN_JSON = "run.json"
STATUS_JSON = "status.json"
METRICS_JSONL = "metrics.jsonl"
#: Records a resume rolled back (past the checkpoint's step); kept, never read as history.
DISCARDED_JSONL = "metrics.discarded.jsonl"
CONFIG_YAML = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
CHECKPOINT = f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}"
WANDB_DIR = "wandb"
TRAIN_LOG = "train.log"
#: A sweep directory holds the manifest and ``runs/<run name>/``.
MANIFEST_JSON = "manifest.json"
SWEEP_RUNS_DIR = "runs"
#: Written by ``harness commbench`` into the directory it is given.
COMMBENCH_JSON = "commbench.json"
#: The files that make a run directory (the first two mark one).
RUN_FILES = (RUN_JSON, STATUS_JSON, METRICS_JSONL, CONFIG_YAML)
#: Sub-directories of a run directory that never hold run directories.
RUN_SUBDIRS = (CHECKPOINT_DIR, WANDB_DIR)


@dataclass(frozen=True)
class Field:
    """One documented key: its JSON type and what it means."""

    name: str
    type: type | tuple[type, ...]
    meaning: str
    #: Value a reader uses when the key is absent.
    default: Any = None
    #: Written only in some situations (a failure, a forced resume); otherwise always present.
    optional: bool = False


def _fields(*fields: Field) -> dict[str, Field]:
    return {f.name: f for f in fields}


_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))

# ----------------------------------------------------------------- run.json
RUN_FIELDS: dict[str, Field] = _fields(
    Field("run_name", str, "directory name", ""),
    Field("sweep", str, 'sweep name, "" outside a sweep', ""),
    Field("workload", str, "fer or pose (the config's TASK)", ""),
    Field("model", str, "MODEL.NAME", ""),
    Field("strategy", str, "single, dp or ddp", ""),
    Field("gpus", int, "devices sharing the global batch (see device_count)", 1),
    Field("nodes", int, "nodes the run spans (DIST.NODES)", 1),
    Field("world_size", int, "torch.distributed world size (1 for single and dp)", 1),
    Field("device_type", str, "cuda or cpu", ""),
    Field("batch_size_per_gpu", int, "TRAIN.BATCH_SIZE_PER_GPU", 0),
    Field("global_batch", int, "samples per optimizer step over all devices", 0),
    Field("grad_accum", int, "TRAIN.GRAD_ACCUM", 1),
    Field("lr", float, "learning rate after the scaling rule (peak, before warmup/schedule)", float("nan")),
    Field("seed", int, "SEED", 0),
    Field("primary_metric", str, "key in val records that is the headline (val/accuracy, val/AP)", ""),
    Field("higher_is_better", bool, "direction of the primary metric", True),
    Field("num_params", int, "trainable parameters of the model", 0),
    Field("steps_per_epoch", int, "optimizer steps in one epoch", 0),
    Field("flops_per_sample", _OPTIONAL_NUMBER, "training FLOPs per sample (null when not counted)"),
    Field("peak_tflops_per_device", _OPTIONAL_NUMBER, "the GPU's dense peak TFLOP/s, the MFU denominator"),
    Field("git_commit", str, 'commit of the code, "" when unknown', ""),
    Field("host", str, "host name of rank 0", ""),
    Field("hosts", list, "host names of all ranks (sorted, unique)", ()),
    Field("torch_version", str, "torch version", ""),
    Field("cuda_version", str, 'CUDA version, "" on CPU', ""),
    Field("python_version", str, "Python version", ""),
    Field("wandb_id", str, "W&B run id (stable across resumes)", ""),
    Field("wandb_project", str, "W&B project", ""),
    Field("wandb_entity", str, "W&B entity", ""),
    Field("wandb_group", str, "W&B group", ""),
    Field("slurm_job_id", str, 'SLURM_JOB_ID (array: <array job>_<index>), "" if none', ""),
    Field("started_at", float, "unix time of the first start", float("nan")),
    Field(
        "resumed_with_changes",
        list,
        "config keys changed by a `--resume force` (absent if none)",
        (),
        optional=True,
    ),
)

#: run.json fields that restate one config key (dotted config key -> field).
CONFIG_TO_RUN: dict[str, str] = {
    "RUN_NAME": "run_name",
    "SWEEP": "sweep",
    "TASK": "workload",
    "MODEL.NAME": "model",
    "DIST.STRATEGY": "strategy",
    "DIST.NODES": "nodes",
    "TRAIN.BATCH_SIZE_PER_GPU": "batch_size_per_gpu",
    "TRAIN.GRAD_ACCUM": "grad_accum",
    "SEED": "seed",
}
#: Config keys that ``gpus`` is derived from (with :func:`device_count`).
GPUS_FROM_CONFIG = ("DIST.STRATEGY", "DIST.GPUS")


def device_count(strategy: str, gpus: int) -> int:
    """Devices that share the global batch: 1 for ``single``, else ``DIST.GPUS`` (at least 1)."""
    return 1 if strategy == "single" else max(1, int(gpus))


def devices_from_config(flat: Mapping[str, Any]) -> int:
    """:func:`device_count` of a flat config (``{"DIST.STRATEGY": ..., "DIST.GPUS": ...}``)."""
    return device_count(flat["DIST.STRATEGY"], flat.get("DIST.GPUS", 1) or 1)


def run_fields_from_config(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The run.json fields a flat config determines (those of CONFIG_TO_RUN, and ``gpus``)."""
    out = {field: flat[key] for key, field in CONFIG_TO_RUN.items() if key in flat}
    if "DIST.STRATEGY" in flat:
        out["gpus"] = devices_from_config(flat)
    return out


# -------------------------------------------------------------- status.json
PENDING, RUNNING, COMPLETED, FAILED, PREEMPTED, CANCELLED = (
    "pending",
    "running",
    "completed",
    "failed",
    "preempted",
    "cancelled",
)
STATES = (PENDING, RUNNING, COMPLETED, FAILED, PREEMPTED, CANCELLED)

STATUS_FIELDS: dict[str, Field] = _fields(
    Field("state", str, " | ".join(STATES)),
    Field("epoch", int, "current (running) or last finished epoch, 0-based"),
    Field("step", int, "global optimizer step reached"),
    Field("heartbeat", float, "unix time of the last update (every log step)"),
    Field("started_at", float, "unix time of the first start"),
    Field("updated_at", float, "same as heartbeat"),
    Field("requeues", int, "how many times the run was preempted and resumed", 0),
    Field("error", (str, type(None)), "first line of the error (failed only)"),
    Field("traceback", (str, type(None)), "full traceback (failed only)"),
    Field("primary_metric", str, "as in run.json", ""),
    Field("best", _OPTIONAL_NUMBER, "best value of the primary metric so far"),
    Field("last_img_per_s", _OPTIONAL_NUMBER, "global throughput of the last train record"),
    Field("job_id", str, "scheduler job id of the latest start", ""),
    Field("failed_rank", (int, type(None)), "rank whose failure failed the run (failed only)"),
    Field("silent_rank", (int, type(None)), "rank the watchdog found silent (failed only)"),
    Field("signal", (str, type(None)), "signal that killed the failed rank (failed only)"),
    Field("exit_code", (int, type(None)), "exit code of the failed rank (failed only)", optional=True),
    Field("job_started_at", _OPTIONAL_NUMBER, "local backend: when the run's process started", optional=True),
    Field("job_ended_at", _OPTIONAL_NUMBER, "local backend: when the run's process ended", optional=True),
)

# ------------------------------------------------------------ metrics.jsonl
TRAIN, EPOCH, VAL = "train", "epoch", "val"
RECORD_KINDS = (TRAIN, EPOCH, VAL)

#: Keys every record has.
RECORD_FIELDS: dict[str, Field] = _fields(
    Field("kind", str, " | ".join(RECORD_KINDS)),
    Field("step", int, "global optimizer step at the time of the record (monotonic across resumes)"),
    Field("epoch", _NUMBER, "0-based epoch (train: a float, epoch + fraction done)"),
    Field("time", _NUMBER, "training wall seconds since the first start, accumulated across resumes"),
    Field("samples", int, "training samples seen so far, over all ranks"),
    Field("unix_time", _NUMBER, "unix time when the record was written"),
)


@dataclass(frozen=True)
class Metric:
    """A namespaced metric key (torchtitan style) with its unit."""

    key: str
    unit: str
    kinds: tuple[str, ...]
    meaning: str
    #: Present only on some devices or configurations (CUDA, a DDP comm hook, a FLOP count).
    optional: bool = False
    #: JSON type of the value (numbers unless said otherwise).
    type: type | tuple[type, ...] = (int, float)


def _metrics(*metrics: Metric) -> dict[str, Metric]:
    return {m.key: m for m in metrics}


_T, _E, _TE = (TRAIN,), (EPOCH,), (TRAIN, EPOCH)
#: Parts of the step that train records time (``time/<part>_s``, and ``time/<part>_share`` of the step):
#: the loop's laps, "other" (the remainder: the laps and it partition the step), and the DDP
#: communication (measured by the comm hook, so only under ddp; it overlaps the laps).
STEP_LAPS = ("data_wait", "h2d", "forward", "backward", "optimizer")
COMM_PARTS = ("comm", "comm_exposed")
STEP_PARTS = (*STEP_LAPS, "other", *COMM_PARTS)

METRICS: dict[str, Metric] = _metrics(
    Metric("train/loss", "", _TE, "mean loss over the window (train) or the epoch (epoch), all ranks"),
    Metric("train/lr", "", _TE, "learning rate at the last step of the window or epoch"),
    Metric(
        "train/acc", "0-1", _TE, "training accuracy of the window or epoch (classification)", optional=True
    ),
    Metric("throughput/img_per_s", "img/s", _TE, "global samples / wall time of the window or epoch"),
    Metric("throughput/img_per_s_per_device", "img/s", _T, "throughput/img_per_s / devices"),
    Metric("throughput/compute_img_per_s", "img/s", _T, "global samples / (window time - data wait)"),
    Metric("time/step_s", "s", _T, "mean wall time per optimizer step"),
    *[
        Metric(
            f"time/{part}_s",
            "s",
            _T,
            f"mean {part.replace('_', ' ')} time per step",
            optional=part in COMM_PARTS,
        )
        for part in STEP_PARTS
    ],
    *[
        Metric(
            f"time/{part}_share",
            "0-1",
            _TE if part == "data_wait" else _T,
            f"{part.replace('_', ' ')} time / step time",
            optional=part in COMM_PARTS,
        )
        for part in STEP_PARTS
    ],
    Metric("time/epoch_s", "s", _E, "wall time of the epoch, summed over resumes"),
    Metric("memory/rss_gib", "GiB", _T, "peak resident set size of the rank-0 process"),
    Metric("memory/max_allocated_gib", "GiB", _T, "CUDA peak allocated", optional=True),
    Metric("memory/max_reserved_gib", "GiB", _T, "CUDA peak reserved", optional=True),
    Metric("perf/flops_per_sample", "FLOP/sample", _T, "training FLOPs per sample", optional=True),
    Metric("perf/tflops_per_s", "TFLOP/s", _T, "achieved TFLOP/s per device", optional=True),
    Metric("perf/mfu", "0-1", _T, "model FLOPs utilisation (GPU only)", optional=True),
    Metric(
        "train/nonfinite_steps",
        "",
        _T,
        "steps skipped for a non-finite loss (TRAIN.NAN_POLICY skip)",
        optional=True,
        type=int,
    ),
    Metric("time/eval_s", "s", (VAL,), "wall time of the validation (`harness eval`)", optional=True),
    Metric("steps", "", _T, "optimizer steps in the window", type=int),
    Metric(
        "steady", "bool", _T, "false inside the first LOG.WARMUP_STEPS steps after a (re)start", type=bool
    ),
    Metric("val/loss", "", (VAL,), "validation loss", optional=True),
    Metric("val/accuracy", "0-1", (VAL,), "FER top-1 accuracy", optional=True),
    Metric("val/macro_f1", "0-1", (VAL,), "FER macro-averaged F1", optional=True),
    Metric("val/roc_auc", "0-1", (VAL,), "FER one-vs-rest ROC-AUC", optional=True),
    Metric("val/AP", "0-1", (VAL,), "COCO keypoint AP", optional=True),
)
#: Per-window peak memory keys: ``memory/peak_<what>_gib`` (GiB).
PEAK_MEMORY_PATTERN = "memory/peak_{}_gib"
#: Prefix of the validation metrics the workload's evaluator returns.
VAL_PREFIX = "val/"

# Shorthands the readers use.
IMG_PER_S = "throughput/img_per_s"
COMPUTE_IMG_PER_S = "throughput/compute_img_per_s"
STEP_S = "time/step_s"
EPOCH_S = "time/epoch_s"
DATA_WAIT_SHARE = "time/data_wait_share"


def wandb_epoch_key(key: str) -> str:
    """The W&B name of an epoch record's key: ``epoch/<last part>`` (``train/loss`` -> ``epoch/loss``),
    so that W&B plots epoch figures against the epoch, apart from the per-window ones."""
    return f"epoch/{key.split('/', 1)[-1]}"


def metric_unit(key: str) -> str:
    """The unit of a metric key ("" when unitless or unknown)."""
    if key in METRICS:
        return METRICS[key].unit
    if key.startswith("memory/") and key.endswith("_gib"):
        return "GiB"
    return ""


def check_types(data: Mapping[str, Any], fields: Mapping[str, Field | Metric], where: str) -> list[str]:
    """Problems with documented keys of ``data`` whose value has the wrong JSON type."""
    problems = []
    for name, spec in fields.items():  # Field and Metric both carry .type
        if name in data and not _has_type(data[name], spec.type):
            problems.append(
                f"{where}: {name} is {type(data[name]).__name__} {data[name]!r}, "
                f"documented as {_type_name(spec.type)}"
            )
    return problems


def _has_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not an int field
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def _type_name(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


# ---------------------------------------------------------------- config.yaml
def flatten(data: Mapping[str, Any], prefix: str = "", lists_as_tuples: bool = False) -> dict[str, Any]:
    """Nested mapping -> ``{"TRAIN.LR": ...}``: the dotted form of config.yaml that W&B,
    sweep specs and analysis tables use. ``lists_as_tuples`` makes the values hashable."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, full + ".", lists_as_tuples))
        elif lists_as_tuples and isinstance(value, list):
            flat[full] = tuple(value)
        else:
            flat[full] = value
    return flat
