"""The FER workload as the registry sees it (``harness.tasks.WORKLOADS["fer"]``): config
hooks and ``harness data`` subcommands, importable without torch. The training side is
``efficientnet.task.FERTask``."""

from __future__ import annotations

import argparse
import math
from typing import Any

from yacs.config import CfgNode as CN

from efficientnet.defaults import SYNTH_FORMATS, add_fer_defaults, validate_fer_config

NAME = "fer"
#: Key of the evaluator's result that analysis treats as the headline (``val/accuracy``).
PRIMARY_METRIC = "accuracy"
HIGHER_IS_BETTER = True


def add_config_defaults(cfg: CN) -> None:
    add_fer_defaults(cfg)


def recognizes(raw: dict) -> bool:
    """FER is the default workload of a YAML that names no TASK; it claims none itself."""
    return False


def finalize_config(cfg: CN, explicit: set[str]) -> None:
    """FER configs have no legacy keys to map."""


def rewrite_key(full_key: str, value: Any) -> tuple[str, Any]:
    """``DATASET.VAL_SPLIT`` given a number is the held-out fraction (``DATASET.VAL_FRACTION``):
    the split is a name, the fraction a float, and a config keeps one type per key."""
    if full_key == "DATASET.VAL_SPLIT":
        number = _decode_number(value)
        if number is not None:
            return "DATASET.VAL_FRACTION", number
    return full_key, value


def _decode_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def validate_config(cfg: CN) -> None:
    validate_fer_config(cfg)


def summarize_data(cfg: CN) -> dict[str, Any]:
    """``{split: {"size": n, "classes": {name: count}, "source": path}}`` of the train and val splits."""
    from efficientnet.data import summarize

    d = cfg.DATASET
    return summarize(d.ROOT, d.FORMAT, [d.TRAIN_SPLIT, d.VAL_SPLIT])


def add_data_cli(data_subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth-fer`` to the ``harness data`` subcommands."""
    parser = data_subparsers.add_parser(
        "synth-fer",
        help="write a synthetic, learnable FER2013-like data set",
        description="Write drawn 48x48 faces whose brows/mouth differ by class, in the Kaggle csv, "
        "torchvision or image-folder layout. Prints JSON with the DATASET.ROOT to use.",
    )
    parser.add_argument("out", metavar="OUT", help="output directory (created if missing)")
    parser.add_argument("--n", type=int, required=True, help="total number of images (>= 14)")
    parser.add_argument(
        "--format",
        choices=SYNTH_FORMATS,
        default="csv",
        dest="fmt",
        help="csv: OUT/fer2013.csv; torchvision: OUT/fer2013/fer2013.csv; "
        "folder: OUT/train/<Class>/*.png and OUT/test/<Class>/*.png",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="fraction of each class put in the test usages (half PublicTest, half PrivateTest)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing synthetic set in OUT")
    parser.set_defaults(func=_run_synth_fer)


def _run_synth_fer(args: argparse.Namespace) -> int:
    from efficientnet.synth import run_synth_fer

    return run_synth_fer(args)
