"""``harness commbench``: collective bandwidth like nccl-tests, at the current world.

The world is torchrun's or Slurm's when their variables are set (also inside a
sweep job whose spec says ``job: {kind: commbench}``), else ``--gpus N`` local
processes (NCCL on GPUs, gloo on CPU). Every collective runs over message sizes
from ``--min-bytes`` to ``--max-bytes`` (doubling); each size's time is the mean
over ``--iters`` back-to-back calls after ``--warmup`` calls, taken on the
slowest rank. Rank 0 prints a table and writes ``<out>/commbench.json`` with
the measurements and an alpha-beta fit per collective (schema: docs/commbench.md).

torch is imported only inside the command, so ``harness --help`` stays light.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from analysis.commbench_data import OPS, RESULT_FILE, SCHEMA, bus_factor, fit_alpha_beta

DTYPES = ("float32", "float16", "bfloat16", "float64")
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1024,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1024**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1024**3,
    "GIB": 1024**3,
}


def parse_bytes(text: str) -> int:
    """``4K`` -> 4096, ``256M`` -> 268435456 (binary units, like nccl-tests' -b/-e)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a byte size (e.g. 4096, 4K, 16M, 1G)")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a message size must be at least 1 byte")
    return value


def _ops(text: str) -> list[str]:
    ops = [o.strip().replace("-", "_") for o in text.split(",") if o.strip()]
    unknown = [o for o in ops if o not in OPS]
    if unknown or not ops:
        raise argparse.ArgumentTypeError(f"--ops {text!r}: choose from {','.join(OPS)}")
    return ops


def message_sizes(min_bytes: int, max_bytes: int) -> list[int]:
    """min, 2·min, 4·min, ... up to max (max itself included)."""
    if min_bytes > max_bytes:
        raise ValueError(f"--min-bytes {min_bytes} is larger than --max-bytes {max_bytes}")
    sizes, size = [], min_bytes
    while size < max_bytes:
        sizes.append(size)
        size *= 2
    return sizes + [max_bytes]


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="local processes to spawn (one per GPU; gloo processes on CPU). Ignored under "
        "torchrun or Slurm, whose world is used as it is (default 2 when neither)",
    )
    parser.add_argument(
        "--min-bytes",
        type=parse_bytes,
        default=parse_bytes("4K"),
        metavar="SIZE",
        help="smallest message (default 4K)",
    )
    parser.add_argument(
        "--max-bytes",
        type=parse_bytes,
        default=parse_bytes("256M"),
        metavar="SIZE",
        help="largest message; sizes double from --min-bytes (default 256M)",
    )
    parser.add_argument("--iters", type=int, default=10, help="timed calls per size (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per size first (default 2)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=10.0,
        metavar="S",
        help="fewer timed calls (at least 1) for sizes whose --iters calls would take "
        "longer than this, judged from the warmup (default 10)",
    )
    parser.add_argument(
        "--ops",
        type=_ops,
        default=list(OPS),
        metavar="OP,OP",
        help=f"collectives to run (default {','.join(OPS)})",
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="element type (default float32)")
    parser.add_argument(
        "--backend",
        choices=("auto", "nccl", "gloo"),
        default="auto",
        help="process-group backend (default auto: nccl with CUDA, gloo without)",
    )
    parser.add_argument(
        "--out",
        default="runs/commbench",
        metavar="DIR",
        help=f"directory of {RESULT_FILE} (default runs/commbench)",
    )
    parser.add_argument("--label", default="", help="free text stored with the result, e.g. the link")
    return parser


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``commbench`` to the ``harness`` command's subcommands."""
    parser = subparsers.add_parser(
        "commbench",
        help="all-reduce/all-gather/reduce-scatter/broadcast bandwidth (nccl-tests style)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(parser)
    parser.set_defaults(func=cmd_commbench)


def _check(args: argparse.Namespace) -> None:
    for key in ("iters", "warmup"):
        if getattr(args, key) < (1 if key == "iters" else 0):
            raise SystemExit(f"harness commbench: error: --{key} must be >= {1 if key == 'iters' else 0}")
    if args.min_bytes > args.max_bytes:
        raise SystemExit(
            f"harness commbench: error: --min-bytes {args.min_bytes} > --max-bytes {args.max_bytes}"
        )


def cmd_commbench(args: argparse.Namespace) -> int:
    from harness.world import world_info_from_env

    _check(args)
    options = vars(args).copy()
    options.pop("func", None)
    if world_info_from_env().distributed:
        run_commbench(options, launcher=world_info_from_env().source)
        return 0
    nprocs = 2 if args.gpus is None else args.gpus
    if nprocs < 1:
        raise SystemExit("harness commbench: error: --gpus must be >= 1")
    import torch

    from harness.local_ranks import start_local_ranks

    if torch.cuda.is_available() and torch.cuda.device_count() < nprocs:
        raise SystemExit(
            f"harness commbench: error: --gpus {nprocs} but only {torch.cuda.device_count()} "
            "CUDA devices are visible"
        )
    start_local_ranks(_worker, (options,), nprocs, preload=["harness.commbench"])
    return 0


def _worker(local_rank: int, options: dict[str, Any]) -> None:
    run_commbench(options, launcher="spawn")


def run_commbench(options: dict[str, Any], launcher: str, out_dir: str | os.PathLike | None = None) -> dict:
    """Measure every collective at the current world; rank 0 writes and returns the result."""
    import torch
    import torch.distributed as dist

    from harness import distributed as du
    from harness.world import find_free_port, world_info_from_env

    world = world_info_from_env()
    device = du.init_distributed(world, options.get("backend", "auto"))
    if not dist.is_initialized():  # one process (e.g. a 1-task Slurm job): a group of one
        dist.init_process_group(
            du.resolve_backend(options.get("backend", "auto")),
            rank=0,
            world_size=1,
            init_method=f"tcp://127.0.0.1:{find_free_port()}",
        )
    try:
        backend = dist.get_backend()
        hosts = du.gather_objects(socket.gethostname())
        nodes = len(set(hosts))
        dtype = getattr(torch, options.get("dtype", "float32"))
        rows = []
        for op in options["ops"]:
            for size in message_sizes(options["min_bytes"], options["max_bytes"]):
                rows.append(_measure(op, size, dtype, device, options, world.world_size))
                if du.is_main():
                    _print_row(rows[-1])
        fits = {
            op: fit_alpha_beta(
                [r["bytes"] for r in rows if r["op"] == op],
                [r["time_s"] for r in rows if r["op"] == op],
                bus_factor(op, world.world_size),
            )
            for op in options["ops"]
        }
        result = {
            "schema": SCHEMA,
            "created_at": time.time(),
            "label": options.get("label", ""),
            "launcher": launcher,
            "backend": backend,
            "device_type": device.type,
            "dtype": options["dtype"],
            "world_size": world.world_size,
            "nodes": nodes,
            "gpus_per_node": world.world_size // max(1, nodes),
            "hosts": sorted(set(hosts)),
            "iters": options["iters"],
            "warmup": options["warmup"],
            "socket_ifname": os.environ.get(f"{'NCCL' if backend == 'nccl' else 'GLOO'}_SOCKET_IFNAME", ""),
            "torch_version": torch.__version__,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
            "results": rows,
            "fits": fits,
        }
        if du.is_main():
            path = Path(out_dir or options.get("out") or ".") / RESULT_FILE
            from harness.rundir import atomic_write_json

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, result)
            _print_fits(result)
            print(f"wrote {path}", flush=True)
        return result
    finally:
        du.destroy_distributed()


def _buffers(op: str, size: int, dtype: Any, device: Any, n: int) -> tuple[Any, Any, int]:
    """(input, output, total bytes) for ``op``; all-gather/reduce-scatter sizes are the
    whole gathered buffer, rounded to a multiple of the world size (nccl-tests' convention)."""
    import torch

    elem = torch.tensor([], dtype=dtype).element_size()
    count = max(1, size // elem)
    if op in ("all_gather", "reduce_scatter"):
        count = max(n, count // n * n)
    full = torch.ones(count, dtype=dtype, device=device)
    if op == "all_gather":
        return full[: count // n].clone(), full, count * elem
    if op == "reduce_scatter":
        return full, torch.empty(count // n, dtype=dtype, device=device), count * elem
    return full, None, count * elem


def _call(op: str, tensor: Any, output: Any) -> None:
    import torch.distributed as dist

    if op == "all_reduce":
        dist.all_reduce(tensor)
    elif op == "all_gather":
        dist.all_gather_into_tensor(output, tensor)
    elif op == "reduce_scatter":
        dist.reduce_scatter_tensor(output, tensor)
    else:
        dist.broadcast(tensor, src=0)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _slowest(value: float, device: Any) -> float:
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _measure(op: str, size: int, dtype: Any, device: Any, options: dict[str, Any], n: int) -> dict[str, Any]:
    import torch.distributed as dist

    tensor, output, nbytes = _buffers(op, size, dtype, device, n)
    warm_s = 0.0
    for _ in range(max(1, options["warmup"])):
        dist.barrier()
        _sync(device)
        start = time.perf_counter()
        _call(op, tensor, output)
        _sync(device)
        warm_s = time.perf_counter() - start
    # Every rank must run the same number of calls: agree on the slowest warmup.
    warm_s = _slowest(warm_s, device)
    iters = options["iters"]
    if warm_s * iters > options.get("budget_s", math.inf):
        iters = max(1, int(options["budget_s"] / max(warm_s, 1e-9)))
    dist.barrier()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        _call(op, tensor, output)
    _sync(device)
    time_s = _slowest((time.perf_counter() - start) / iters, device)
    algbw = nbytes / time_s
    return {
        "op": op,
        "bytes": nbytes,
        "count": int(tensor.numel() if op != "all_gather" else output.numel()),
        "iters": iters,
        "time_s": time_s,
        "algbw_gb_per_s": algbw / 1e9,
        "busbw_gb_per_s": algbw * bus_factor(op, n) / 1e9,
    }


def _print_row(row: dict[str, Any]) -> None:
    print(
        f"{row['op']:>15} {row['bytes']:>12d} B {row['time_s'] * 1e6:>12.1f} us "
        f"algbw {row['algbw_gb_per_s']:8.4f} GB/s busbw {row['busbw_gb_per_s']:8.4f} GB/s "
        f"({row['iters']} iters)",
        flush=True,
    )


def _print_fits(result: dict[str, Any]) -> None:
    print(
        f"topology: {result['nodes']} node(s) x {result['gpus_per_node']} process(es), "
        f"backend {result['backend']}",
        flush=True,
    )
    for op, fit in result["fits"].items():
        beta = fit.get("beta_bytes_per_s")
        bw = f"{beta / 1e9:.4f} GB/s ({beta * 8 / 1e6:.1f} Mbit/s)" if beta else "not identified"
        alpha = fit.get("alpha_s")
        alpha_text = f"{alpha * 1e6:.1f} us" if alpha is not None else "-"
        print(f"  {op:>15}: alpha {alpha_text}, bus bandwidth beta {bw}", flush=True)


def job_options(args: list[str]) -> dict[str, Any]:
    """Options of a sweep job from its spec's ``job.args`` (the command's own flags)."""
    parser = configure_parser(argparse.ArgumentParser(prog="commbench job", exit_on_error=False))
    try:
        options = vars(parser.parse_args([str(a) for a in args]))
    except (argparse.ArgumentError, SystemExit) as e:
        raise ValueError(f"job args {args}: {e}") from None
    return options


def run_job(cfg: Any, args: list[str]) -> str:
    """A sweep run of kind commbench: measure at this Slurm/torchrun world, write
    ``commbench.json`` and status.json into the run directory."""
    from harness.rundir import run_dir_for, write_status
    from harness.world import world_info_from_env

    options = job_options(args)
    options["backend"] = cfg.DIST.BACKEND
    run_dir = run_dir_for(cfg)
    main = world_info_from_env().rank == 0
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_status(run_dir, state="running", job_id=os.environ.get("SLURM_JOB_ID", ""), error=None)
    try:
        run_commbench(options, launcher=world_info_from_env().source, out_dir=run_dir)
    except BaseException as e:
        if main:
            write_status(run_dir, state="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    if main:
        write_status(run_dir, state="completed")
    return "completed"


def run_local_job(cfg: Any) -> int:
    """A commbench sweep run on the local backend: DIST.GPUS processes on this machine."""
    from harness.world import world_info_from_env

    if world_info_from_env().distributed or cfg.DIST.GPUS <= 1:
        run_job(cfg, list(cfg.JOB.ARGS))
        return 0
    if cfg.DIST.NODES > 1:
        raise SystemExit(f"DIST.NODES {cfg.DIST.NODES}: a multi-node commbench needs the slurm backend")
    from harness.local_ranks import start_local_ranks

    start_local_ranks(_job_worker, (cfg,), cfg.DIST.GPUS, preload=["harness.commbench"])
    return 0


def _job_worker(local_rank: int, cfg: Any) -> None:
    run_job(cfg, list(cfg.JOB.ARGS))


if __name__ == "__main__":  # python -m harness.commbench (e.g. under torchrun)
    sys.exit(cmd_commbench(configure_parser(argparse.ArgumentParser(prog="commbench")).parse_args()))
