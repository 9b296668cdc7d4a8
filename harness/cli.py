"""The ``harness`` command: train, data, sweep, status, resubmit, cancel, analyze."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from harness.config import ConfigError, load_config


def _train_opts(args: argparse.Namespace) -> list[str]:
    opts = list(args.opts)
    flags = [o for o in opts[0::2] if o.startswith("--")]
    if flags:
        raise ConfigError(f"{flags[0]} came after the KEY VALUE overrides; put flags before them")
    for flag, key in (("gpus", "DIST.GPUS"), ("strategy", "DIST.STRATEGY"), ("output_dir", "OUTPUT_DIR"),
                      ("run_name", "RUN_NAME")):
        value = getattr(args, flag)
        if value is not None:
            opts += [key, str(value)]
    return opts


def cmd_train(args: argparse.Namespace) -> int:
    from harness.spawn import launch, needs_spawn
    from harness.preemption import install_signal_handlers

    cfg = load_config(args.config, _train_opts(args))
    if not needs_spawn(cfg):
        install_signal_handlers()
    state = launch(cfg, resume=args.resume)
    print(f"run {state}: {cfg.OUTPUT_DIR}/{cfg.RUN_NAME}")
    return 0 if state == "completed" else 3


def cmd_data_summary(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.opts)
    if cfg.TASK != "fer":
        raise ConfigError(f"`harness data summary` reads FER data; {args.config} is a {cfg.TASK} config")
    from efficientnet.data import summarize

    d = cfg.DATASET
    print(json.dumps(summarize(d.ROOT, d.FORMAT, [d.TRAIN_SPLIT, d.VAL_SPLIT]), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from analysis.cli import add_cli as add_analysis
    from efficientnet.synth import add_cli as add_synth_fer
    from harness.launcher.cli import add_cli as add_launcher
    from hrnet.synth import add_cli as add_synth_coco

    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train one run (single, dp, or ddp with local processes)",
                           description="Train one run from a YAML config. Trailing KEY VALUE pairs override "
                                       "config keys, e.g. TRAIN.LR 0.01 DATA.NUM_WORKERS 4.")
    train.add_argument("--config", required=True, help="experiment YAML (may use _BASE_)")
    train.add_argument("--gpus", type=int,
                       help="devices (DIST.GPUS); on CPU the number of gloo processes for ddp")
    train.add_argument("--strategy", choices=("single", "dp", "ddp"), help="DIST.STRATEGY")
    train.add_argument("--output-dir", help="OUTPUT_DIR: parent of the run directory")
    train.add_argument("--run-name", help="RUN_NAME: the run directory's name")
    train.add_argument("--resume", default="auto",
                       help="auto (default: continue from <run dir>/checkpoints/last.pt when it exists), "
                            "never, or a checkpoint path")
    train.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    train.set_defaults(func=cmd_train)

    data = sub.add_parser("data", help="make synthetic data sets and summarise data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    summary = data_sub.add_parser("summary",
                                  help="print split sizes and per-class counts (by class name) as JSON")
    summary.add_argument("--config", required=True, help="FER experiment YAML")
    summary.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    summary.set_defaults(func=cmd_data_summary)
    add_synth_fer(data_sub)
    add_synth_coco(data_sub)

    add_launcher(sub)
    add_analysis(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
