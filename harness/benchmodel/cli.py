"""``harness bench-model``: the command, and the sweep-job entry point."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

CPU_RUNTIMES = "eager,bf16,channels_last,compile,onnxruntime,openvino"
GPU_RUNTIMES = "eager,bf16,fp16,channels_last,compile,onnxruntime"


def _sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for token in [t for t in text.split(",") if t]:
        try:
            height, width = (int(v) for v in token.lower().split("x"))
        except ValueError:
            raise ValueError(f"--sizes: {token!r} is not HEIGHTxWIDTH (e.g. 256x192)") from None
        sizes.append((height, width))
    return sizes


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag}: values must be >= 1, got {text!r}")
    return values


def run_bench(args: argparse.Namespace, cfg: Any = None) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Measure every requested (model, size, runtime); write the outputs to ``args.out``."""
    import torch

    from harness.benchmodel.catalogue import entry_from_config, pose_config_for, resolve_models
    from harness.benchmodel.measure import BenchSettings, bench_entry
    from harness.benchmodel.report import hardware, log_wandb, write_outputs
    from harness.benchmodel.runtimes import RUNTIMES

    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    runtimes = tuple((args.runtimes or (GPU_RUNTIMES if cuda else CPU_RUNTIMES)).split(","))
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ValueError(f"--runtimes: unknown {unknown}; choose from {', '.join(RUNTIMES)}")
    batches = _ints(args.batches or ("1,32,128" if cuda else "1,8"), "--batches")
    settings = BenchSettings(
        runtimes=runtimes,
        batches=batches,
        warmup=args.warmup,
        iters=args.iters,
        device=device,
        threads=torch.get_num_threads(),
        train_step=not args.no_train_step,
    )
    entries = [entry_from_config(cfg)] if cfg is not None else resolve_models(args.models)
    if not entries:
        raise ValueError("--models names no model")
    sizes = _sizes(args.sizes) if args.sizes else None
    machine = hardware()
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    command = "harness bench-model " + " ".join(shlex.quote(a) for a in (args.argv or sys.argv[2:]))
    for entry in entries:
        for size in sizes or entry.sizes:
            start = time.perf_counter()
            new = bench_entry(pose_config_for(entry, size), size, settings)
            rows += [{**row, **machine} for row in new]
            print(
                f"bench-model: {entry.name} {size[0]}x{size[1]}: "
                + ", ".join(
                    f"{r['runtime']} {r.get('latency_ms_median', float('nan')):.2f} ms ({r.get('status')})"
                    for r in new
                )
                + f" [{time.perf_counter() - start:.0f} s]",
                flush=True,
            )
            paths = write_outputs(rows, out, command)  # after each model: a killed run keeps its rows
    log_wandb(rows, paths, args.wandb, args.wandb_project, out, args.name or out.name)
    return rows, paths


def cmd_bench_model(args: argparse.Namespace) -> int:
    if args.config:
        from harness.benchmodel.job import bench_config_run

        return bench_config_run(args.config, list(args.opts), args)
    if args.opts:
        raise ValueError(f"KEY VALUE overrides {args.opts[:2]} need --config")
    rows, paths = run_bench(args)
    print(f"bench-model: {len(rows)} rows -> {paths['markdown']}")
    return 0 if all(r.get("status") in ("ok", "unavailable") for r in rows) else 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        default="tiny",
        help="comma-separated model names and groups: fer, fer-small, hrnet, tiny (default tiny)",
    )
    p.add_argument("--config", help="benchmark the model of this run config instead (writes to its run dir)")
    p.add_argument(
        "--sizes",
        help="input sizes HEIGHTxWIDTH,... (default per model: FER 48x48, HRNet 256x192 and 384x288)",
    )
    p.add_argument("--runtimes", help=f"comma-separated (default CPU: {CPU_RUNTIMES}; GPU: {GPU_RUNTIMES})")
    p.add_argument(
        "--batches",
        help="throughput batches; the largest also times the training step (default CPU 1,8; GPU 1,32,128)",
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    p.add_argument("--iters", type=int, default=5, help="timed calls per measurement (default 5)")
    p.add_argument("--device", choices=("auto", "cpu"), default="auto", help="auto uses CUDA when present")
    p.add_argument("--threads", type=int, default=0, help="torch/ORT/OpenVINO threads (default: torch's)")
    p.add_argument("--no-train-step", action="store_true", help="skip the training-step img/s")
    p.add_argument("--out", default="runs/bench-model", help="output directory (default runs/bench-model)")
    p.add_argument("--name", help="W&B run name (default: the output directory's name)")
    p.add_argument("--wandb", choices=("online", "offline", "disabled"), default="offline")
    p.add_argument("--wandb-project", default="scaling-harness-models")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="with --config: KEY VALUE overrides")
    p.set_defaults(func=cmd_bench_model, argv=None)


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench-model",
        help="inference/training-step benchmark per model x size x runtime (models table)",
        description="Params, GFLOPs, batch-1 latency (median, p90), throughput per batch, training-step "
        "img/s and peak memory per model x input size x runtime; CSV, Markdown, plots, W&B.",
    )
    add_arguments(p)
