"""The ``harness`` command: train, data, sweep, status, resubmit, cancel, analyze."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Only light imports at module level: `harness --help` and `harness status` load this module.
if TYPE_CHECKING:
    from yacs.config import CfgNode as CN


def _train_opts(args: argparse.Namespace) -> list[str]:
    from harness.config import ConfigError

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
        value = getattr(args, flag)
        if value is not None:
            opts += [key, str(value)]
    return opts


EXIT_PREEMPTED = 3  # the run stopped early (preempted) and resumes when started again


def train_config(cfg: CN, resume: str = "auto") -> int:
    """Train the run of ``cfg`` from this process (spawning local ranks when it needs
    them): the one path of ``harness train`` and of a sweep's run
    (``harness.launcher.run_one``). Returns 0 when completed, EXIT_PREEMPTED otherwise."""
    from harness.preemption import install_signal_handlers
    from harness.preflight import preflight
    from harness.spawn import launch, needs_spawn

    preflight(cfg)  # a run this machine cannot start leaves no run directory behind
    if not needs_spawn(cfg):
        install_signal_handlers()
    state = launch(cfg, resume=resume)
    print(f"run {state}: {cfg.OUTPUT_DIR}/{cfg.RUN_NAME}", flush=True)
    return 0 if state == "completed" else EXIT_PREEMPTED


def cmd_train(args: argparse.Namespace) -> int:
    from harness.config import load_config

    return train_config(load_config(args.config, _train_opts(args)), resume=args.resume)


def cmd_data_summary(args: argparse.Namespace) -> int:
    from harness.config import load_config
    from harness.tasks import get_workload

    cfg = load_config(args.config, args.opts)
    print(json.dumps(get_workload(cfg.TASK).summarize_data(cfg), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    # Every add_cli module is light: heavy imports (torch, pandas) happen inside the command run.
    from analysis.cli import add_cli as add_analysis
    from harness.benchmodel.cli import add_cli as add_bench_model
    from harness.commbench import add_cli as add_commbench
    from harness.evaluate import add_cli as add_eval
    from harness.launcher.cli import add_cli as add_launcher
    from harness.predict import add_cli as add_predict
    from harness.profiling import add_cli as add_profile
    from harness.tasks import WORKLOADS, get_workload

    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of user errors too (also HARNESS_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train one run (single, dp, or ddp with local processes)",
        description="Train one run from a YAML config. Trailing KEY VALUE pairs override "
        "config keys, e.g. TRAIN.LR 0.01 DATA.NUM_WORKERS 4.",
    )
    train.add_argument("--config", required=True, help="experiment YAML (may use _BASE_)")
    train.add_argument(
        "--gpus", type=int, help="devices (DIST.GPUS); on CPU the number of gloo processes for ddp"
    )
    train.add_argument("--strategy", choices=("single", "dp", "ddp"), help="DIST.STRATEGY")
    train.add_argument("--output-dir", help="OUTPUT_DIR: parent of the run directory")
    train.add_argument("--run-name", help="RUN_NAME: the run directory's name")
    train.add_argument(
        "--resume",
        default="auto",
        help="auto (default: continue from <run dir>/checkpoints/last.pt when it exists and "
        "was trained with the same config; a completed run is left as it is), force "
        "(continue even though identity keys changed; recorded in run.json "
        "resumed_with_changes), never, or a checkpoint path",
    )
    train.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    train.set_defaults(func=cmd_train)

    data = sub.add_parser("data", help="make synthetic data sets and summarise data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    summary = data_sub.add_parser(
        "summary",
        help="print the data set's split sizes and counts as JSON",
        description="Read the data set a config points at (DATASET.ROOT...) and print, as JSON, what each "
        "split holds, without training. FER: each split's size and per-class counts by class "
        "name (bad rows fail with the file and row named). Pose: images, annotations and "
        "persons (non-crowd, with keypoints) of the train and test sets.",
    )
    summary.add_argument("--config", required=True, help="experiment YAML (FER or pose)")
    summary.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    summary.set_defaults(func=cmd_data_summary)
    for name in WORKLOADS:  # each workload adds its own (synth-fer, synth-coco)
        get_workload(name).add_data_cli(data_sub)

    add_launcher(sub)
    add_commbench(sub)
    add_eval(sub)
    add_bench_model(sub)
    add_predict(sub)
    add_profile(sub)
    add_analysis(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from harness.errors import is_user_error, one_line

    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("HARNESS_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except Exception as e:  # user errors: one line, exit 2; anything else is a bug: traceback
        if debug or not is_user_error(e):
            raise
        print(f"harness: error: {one_line(e)}", file=sys.stderr)
        return 2
