"""``harness analyze`` (and ``python -m analysis``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# Only light imports here: ``harness --help`` builds this parser (pandas and matplotlib are
# imported by run_analyze when the command runs).
from analysis.common import CACHE_ENV, AnalysisError

DESCRIPTION = """Analyse finished sweeps: steady-state throughput, weak/strong scaling efficiency
(DP and DDP, each against its own one-GPU baseline), a fitted communication model with
predictions, convergence curves and time to target. Writes scaling.csv, convergence.csv,
time_to_target.csv, model_fit.csv, runs.csv, plots (PNG/SVG) and report.md into --out."""


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _gpu_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--predict-gpus {text!r}: expected comma-separated integers, e.g. 16,64,256"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"--predict-gpus {text!r}: GPU counts must be >= 1")
    return values


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "sweep_dirs",
        nargs="*",
        metavar="SWEEP_DIR",
        help="sweep directory (with manifest.json and runs/), directory of run directories, "
        "or single run directory; several may be given",
    )
    parser.add_argument(
        "--wandb",
        metavar="ENTITY/PROJECT",
        help="also (or only) read runs from this W&B project via the public API",
    )
    parser.add_argument(
        "--group", metavar="G", help="W&B group to read with --wandb (usually the sweep name)"
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"where W&B runs are cached as JSON (default: ${CACHE_ENV} or ~/.cache/harness-analysis)",
    )
    parser.add_argument(
        "--refresh", action="store_true", help="refetch every W&B run instead of reading the cache"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default: <first SWEEP_DIR>/analysis, else reports/analysis)",
    )
    parser.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="KEY",
        help="config key (e.g. TRAIN.OPTIMIZER, TRAIN.AMP, DATA.NUM_WORKERS) or run.json "
        "field to compare runs by; repeat the flag or give a comma list",
    )
    parser.add_argument(
        "--target",
        type=float,
        metavar="X",
        help="absolute target on the primary metric for time-to-target (e.g. 0.6)",
    )
    parser.add_argument(
        "--target-fraction",
        type=float,
        metavar="F",
        help="target as this fraction of the best value any run reached (default 0.9 when "
        "--target is not given)",
    )
    parser.add_argument(
        "--data-bound-threshold",
        type=float,
        default=0.2,
        metavar="SHARE",
        help="data-wait share of the step above which a configuration is called data-bound (default 0.2)",
    )
    parser.add_argument(
        "--predict-gpus",
        type=_gpu_list,
        default=[16, 64, 256],
        metavar="N,N,...",
        help="GPU counts at which the fitted communication model predicts efficiency (default 16,64,256)",
    )
    parser.add_argument(
        "--push-wandb",
        action="store_true",
        help="log the tables and plots to W&B as one run with job_type=analysis in the "
        "sweep's group (mode from WANDB_MODE)",
    )
    parser.add_argument(
        "--format",
        default="png",
        metavar="png,svg",
        help="image formats of the plots: png, svg or png,svg (default png; svg doubles the drawing time)",
    )
    parser.add_argument(
        "--commbench",
        action="append",
        default=[],
        metavar="PATH",
        help="commbench.json (or a directory searched for them) from `harness commbench`: "
        "the model then predicts the measured topologies from their alpha-beta; "
        "those inside the SWEEP_DIRs are read anyway (repeatable)",
    )
    parser.add_argument(
        "--models",
        action="store_true",
        help="write the models table instead (analysis/models.py, docs/models.md): best "
        "validation metrics per MODEL.NAME joined with bench_model.json figures",
    )
    parser.add_argument(
        "--bench",
        action="append",
        default=[],
        metavar="DIR",
        help="with --models: more directories searched for bench_model.json (repeatable)",
    )
    parser.set_defaults(func=run_analyze)
    return parser


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` to the ``harness`` command's subcommands."""
    parser = subparsers.add_parser(
        "analyze",
        help="scaling, convergence and time-to-target report of sweeps",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(parser)


def run_analyze(args: argparse.Namespace) -> int:
    if args.models:
        from analysis.models import run_models

        return run_models(args)
    from analysis.report import build_report

    if not args.sweep_dirs and not args.wandb:
        print("harness analyze: give at least one SWEEP_DIR or --wandb ENTITY/PROJECT", file=sys.stderr)
        return 2
    by = [key for value in args.by for key in _list(value)]
    try:
        result = build_report(
            args.sweep_dirs,
            args.out,
            wandb_path=args.wandb,
            group=args.group,
            cache_dir=args.cache_dir,
            refresh=args.refresh,
            by=by,
            target=args.target,
            target_fraction=args.target_fraction,
            data_bound_threshold=args.data_bound_threshold,
            predict_gpus=args.predict_gpus,
            formats=_list(args.format),
            push_wandb=args.push_wandb,
            commbench=args.commbench,
        )
    except AnalysisError as e:
        print(f"harness analyze: {e}", file=sys.stderr)
        return 2
    runs = result.analysis.runset.runs
    print(f"analysed {int(runs['included'].sum())} of {len(runs)} runs; wrote {result.report}")
    for name, path in result.csvs.items():
        print(f"  {name}: {path}")
    print(f"  plots: {len(result.plot_files())} files in {result.out_dir}")
    if result.wandb_run_dir is not None:
        print(f"  W&B run: {result.wandb_run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(parser)
    args = parser.parse_args(argv)
    return args.func(args)
