"""Config layer of the pose workload: official HRNet keys and their harness meaning.

Every key of the official ``lib/config/default.py`` is accepted, with the
official default, so that an official experiment YAML loads unmodified. Keys the
harness already owns (``TRAIN.LR``, ``TRAIN.OPTIMIZER`` ...) are shared and get
the official defaults here. Official keys that have a harness counterpart
(``GPUS``, ``WORKERS``, ``END_EPOCH`` ...) are mapped onto it by
:func:`finalize_pose_config`; see ``docs/pose.md`` for the table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from yacs.config import CfgNode as CN

from harness.config import ConfigError
from harness.runformat import device_count
from hrnet.defaults import BLOCK_NAMES, MODEL_NAMES, STAGE_KEYS, STAGES, add_pose_defaults

FUSE_METHODS = ("SUM",)
TARGET_TYPES = ("gaussian",)
# PoseHighResolutionNet predicts heatmaps at 1/4 of the input resolution.
HEATMAP_STRIDE = 4

__all__ = [
    "add_pose_defaults",
    "apply_cudnn_settings",
    "finalize_pose_config",
    "gpu_ids",
    "recognizes",
    "validate_pose_config",
]


# ------------------------------------------------------------------ mapping
def gpu_ids(value: Any) -> list[int] | None:
    """The device ids of an official ``GPUS`` value: ``(0,1)``, ``[0, 1]`` or ``0``."""
    if value is None:
        return None
    ids = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(ids, (list, tuple))
        or not ids
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
    ):
        raise ConfigError(
            f"config key 'GPUS' must be a device id or a tuple of device ids like (0,1,2,3), got {value!r}"
        )
    if len(set(ids)) != len(ids):
        raise ConfigError(f"config key 'GPUS' lists a device twice: {value!r}")
    return list(ids)


def finalize_pose_config(cfg: CN, explicit: set[str]) -> None:
    """Map the official keys the YAML/command line set onto the harness keys.

    A harness key that was itself set explicitly wins over its official
    counterpart. Afterwards the official keys mirror the effective harness
    values, so the saved config.yaml is self-consistent and reloads alike.
    """
    explicit = explicit or set()

    def mapped(legacy: Sequence[str], harness_key: str) -> bool:
        return any(k in explicit for k in legacy) and harness_key not in explicit

    cfg.TASK = "pose"
    ids = gpu_ids(cfg.GPUS)
    if ids is not None and "GPUS" in explicit:
        if "DIST.GPUS" not in explicit:
            cfg.DIST.GPUS = len(ids)
        if "DIST.STRATEGY" not in explicit:
            # Official HRNet trains with nn.DataParallel over the listed devices.
            cfg.DIST.STRATEGY = "dp" if len(ids) > 1 else "single"
    if mapped(["WORKERS"], "DATA.NUM_WORKERS"):
        cfg.DATA.NUM_WORKERS = cfg.WORKERS
    if mapped(["PIN_MEMORY"], "DATA.PIN_MEMORY"):
        cfg.DATA.PIN_MEMORY = cfg.PIN_MEMORY
    if mapped(["PRINT_FREQ"], "LOG.EVERY_N_STEPS"):
        cfg.LOG.EVERY_N_STEPS = cfg.PRINT_FREQ
    if mapped(["TRAIN.BEGIN_EPOCH", "TRAIN.END_EPOCH"], "TRAIN.EPOCHS"):
        epochs = cfg.TRAIN.END_EPOCH - cfg.TRAIN.BEGIN_EPOCH
        if epochs < 1:
            raise ConfigError(
                f"config keys 'TRAIN.END_EPOCH' ({cfg.TRAIN.END_EPOCH}) - "
                f"'TRAIN.BEGIN_EPOCH' ({cfg.TRAIN.BEGIN_EPOCH}) must be >= 1 epoch"
            )
        cfg.TRAIN.EPOCHS = epochs
    if cfg.TRAIN.NESTEROV and cfg.TRAIN.OPTIMIZER == "sgd" and "TRAIN.NESTEROV" in explicit:
        cfg.TRAIN.OPTIMIZER = "sgd_nesterov"
    if mapped(["TEST.BATCH_SIZE_PER_GPU"], "EVAL.BATCH_SIZE_PER_GPU"):
        cfg.EVAL.BATCH_SIZE_PER_GPU = cfg.TEST.BATCH_SIZE_PER_GPU
    _fold_data_dir(cfg)
    _mirror_official_keys(cfg)


def _fold_data_dir(cfg: CN) -> None:
    # As the official update_config: DATA_DIR prefixes these paths (absolute
    # paths are kept by os.path.join). Cleared so that a reload does not join twice.
    if not cfg.DATA_DIR:
        return
    cfg.DATASET.ROOT = os.path.join(cfg.DATA_DIR, cfg.DATASET.ROOT)
    if cfg.MODEL.PRETRAINED:
        cfg.MODEL.PRETRAINED = os.path.join(cfg.DATA_DIR, cfg.MODEL.PRETRAINED)
    if cfg.TEST.MODEL_FILE:
        cfg.TEST.MODEL_FILE = os.path.join(cfg.DATA_DIR, cfg.TEST.MODEL_FILE)
    cfg.DATA_DIR = ""


def _mirror_official_keys(cfg: CN) -> None:
    cfg.GPUS = tuple(range(device_count(cfg.DIST.STRATEGY, cfg.DIST.GPUS)))
    cfg.WORKERS = cfg.DATA.NUM_WORKERS
    cfg.PIN_MEMORY = cfg.DATA.PIN_MEMORY
    cfg.PRINT_FREQ = cfg.LOG.EVERY_N_STEPS
    cfg.TRAIN.END_EPOCH = cfg.TRAIN.BEGIN_EPOCH + cfg.TRAIN.EPOCHS
    cfg.TRAIN.NESTEROV = cfg.TRAIN.OPTIMIZER == "sgd_nesterov"
    if cfg.EVAL.BATCH_SIZE_PER_GPU:
        cfg.TEST.BATCH_SIZE_PER_GPU = cfg.EVAL.BATCH_SIZE_PER_GPU


# --------------------------------------------------------------- validation
def _size_pair(cfg: CN, key: str) -> list[int]:
    value = cfg.MODEL[key]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(
            f"config key 'MODEL.{key}' must be [width, height], two positive ints; got {value!r}"
        )
    return list(value)


def _int_list(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )


def _validate_stage(extra: CN, stage: str, block_names: Sequence[str]) -> None:
    where = f"MODEL.EXTRA.{stage}"
    if stage not in extra or not isinstance(extra[stage], dict):
        raise ConfigError(
            f"config key '{where}' is missing: pose_hrnet needs STAGE2, STAGE3 "
            f"and STAGE4 with {', '.join(STAGE_KEYS)}"
        )
    node = extra[stage]
    for key in STAGE_KEYS:
        if node.get(key) is None:
            raise ConfigError(f"config key '{where}.{key}' is not set")
    for key in ("NUM_MODULES", "NUM_BRANCHES"):
        value = node[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"config key '{where}.{key}' must be an int >= 1, got {value!r}")
    for key in ("NUM_BLOCKS", "NUM_CHANNELS"):
        if not _int_list(node[key]) or len(node[key]) != node.NUM_BRANCHES:
            raise ConfigError(
                f"config key '{where}.{key}' must list NUM_BRANCHES "
                f"({node.NUM_BRANCHES}) positive ints, got {node[key]!r}"
            )
    if node.BLOCK not in block_names:
        raise ConfigError(
            f"config key '{where}.BLOCK' is {node.BLOCK!r}; choose one of {', '.join(block_names)}"
        )
    if node.FUSE_METHOD not in FUSE_METHODS:
        raise ConfigError(
            f"config key '{where}.FUSE_METHOD' is {node.FUSE_METHOD!r}; "
            f"choose one of {', '.join(FUSE_METHODS)}"
        )


def validate_pose_config(cfg: CN) -> None:
    """Raise ConfigError naming the key for a bad pose value."""
    m = cfg.MODEL
    if m.NAME not in MODEL_NAMES:
        raise ConfigError(
            f"config key 'MODEL.NAME' is {m.NAME!r}; choose one of {', '.join(sorted(MODEL_NAMES))}"
        )
    if m.TARGET_TYPE not in TARGET_TYPES:
        raise ConfigError(
            f"config key 'MODEL.TARGET_TYPE' is {m.TARGET_TYPE!r}; choose one of {', '.join(TARGET_TYPES)}"
        )
    if not isinstance(m.NUM_JOINTS, int) or m.NUM_JOINTS < 1:
        raise ConfigError(f"config key 'MODEL.NUM_JOINTS' must be an int >= 1, got {m.NUM_JOINTS!r}")
    if not isinstance(m.SIGMA, (int, float)) or m.SIGMA <= 0:
        raise ConfigError(f"config key 'MODEL.SIGMA' must be > 0, got {m.SIGMA!r}")
    image, heatmap = _size_pair(cfg, "IMAGE_SIZE"), _size_pair(cfg, "HEATMAP_SIZE")
    if [h * HEATMAP_STRIDE for h in heatmap] != image:
        raise ConfigError(
            f"config key 'MODEL.HEATMAP_SIZE' {heatmap} must be MODEL.IMAGE_SIZE {image} / "
            f"{HEATMAP_STRIDE} on both axes (pose_hrnet predicts at stride {HEATMAP_STRIDE})"
        )
    _validate_extra(m.EXTRA, image)
    if not 0 <= cfg.DATASET.PROB_HALF_BODY <= 1:
        raise ConfigError(
            f"config key 'DATASET.PROB_HALF_BODY' must lie in [0, 1], got {cfg.DATASET.PROB_HALF_BODY}"
        )
    if cfg.DATASET.SCALE_FACTOR < 0 or cfg.DATASET.ROT_FACTOR < 0:
        raise ConfigError("config keys 'DATASET.SCALE_FACTOR' and 'DATASET.ROT_FACTOR' must be >= 0")
    if cfg.LOSS.USE_OHKM and not 1 <= cfg.LOSS.TOPK <= m.NUM_JOINTS:
        raise ConfigError(
            f"config key 'LOSS.TOPK' must lie in [1, MODEL.NUM_JOINTS={m.NUM_JOINTS}], got {cfg.LOSS.TOPK}"
        )


def _validate_extra(extra: CN, image: list[int]) -> None:
    """MODEL.EXTRA: the stages, the branch count against the image size, the stem and head."""
    block_names = sorted(BLOCK_NAMES)
    for stage in STAGES:
        _validate_stage(extra, stage, block_names)
    # Each extra branch halves the resolution and the fuse layers upsample by
    # powers of two, so the lowest branch must divide evenly.
    divisor = HEATMAP_STRIDE * 2 ** (extra.STAGE4.NUM_BRANCHES - 1)
    if any(v % divisor for v in image):
        raise ConfigError(
            f"config key 'MODEL.IMAGE_SIZE' {image} must be a multiple of {divisor} on both "
            f"axes for {extra.STAGE4.NUM_BRANCHES} branches"
        )
    if extra.FINAL_CONV_KERNEL not in (1, 3):
        raise ConfigError(
            f"config key 'MODEL.EXTRA.FINAL_CONV_KERNEL' must be 1 or 3, got {extra.FINAL_CONV_KERNEL!r}"
        )
    layers = extra.PRETRAINED_LAYERS
    if not isinstance(layers, (list, tuple)) or not all(isinstance(n, str) for n in layers):
        raise ConfigError(
            f"config key 'MODEL.EXTRA.PRETRAINED_LAYERS' must be a list of module "
            f"names (or ['*']), got {layers!r}"
        )
    stage1 = extra.STAGE1
    if stage1.BLOCK not in block_names:
        raise ConfigError(
            f"config key 'MODEL.EXTRA.STAGE1.BLOCK' is {stage1.BLOCK!r}; "
            f"choose one of {', '.join(block_names)}"
        )
    for key in ("NUM_BLOCKS", "NUM_CHANNELS"):
        if not _int_list(stage1[key]) or len(stage1[key]) != 1:
            raise ConfigError(
                f"config key 'MODEL.EXTRA.STAGE1.{key}' must be one positive int in a "
                f"list, got {stage1[key]!r}"
            )
    if not isinstance(extra.STEM_INPLANES, int) or extra.STEM_INPLANES < 1:
        raise ConfigError(
            f"config key 'MODEL.EXTRA.STEM_INPLANES' must be an int >= 1, got {extra.STEM_INPLANES!r}"
        )


def recognizes(raw: dict) -> bool:
    """Whether a raw YAML dict that names no TASK is a pose (official HRNet) config."""
    model, dataset = raw.get("MODEL"), raw.get("DATASET")
    name = model.get("NAME") if isinstance(model, dict) else None
    kind = dataset.get("DATASET") if isinstance(dataset, dict) else None
    return name in MODEL_NAMES or kind == "coco"


def apply_cudnn_settings(cfg: CN) -> None:
    """Apply the official CUDNN.* switches to torch.backends.cudnn."""
    import torch

    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED
