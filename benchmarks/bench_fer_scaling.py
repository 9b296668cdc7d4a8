"""P2, DDP scaling: the harness's 2-process gloo speedup over its 1-process run vs the same
speedup of a minimal torchrun DDP script (benchmarks/raw_ddp.py).

    .venv/bin/python -m benchmarks.bench_fer_scaling [--steps 30] [--repeats 3] [--threads 1]

EfficientNet-B0 at 48 px, 32 images per process, ``--threads`` threads per process on
both sides (OMP_NUM_THREADS), no loader workers, same task/dataset/loader/optimizer.
Harness img/s: median steady ``throughput/img_per_s``; raw: global img/s after warm-up.
Each round runs harness(1), harness(2), raw(1), raw(2), the order reversed every other
round. ``DDP_OPTS`` (e.g. ``--ddp-opts DIST.STATIC_GRAPH True``) go to the harness's
2-process runs. Goal: harness speedup / raw speedup >= 1.00.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.fer_runs import harness_train, overrides, reported_img_per_s, write_data
from benchmarks.protocol import emit


def raw(data: str, procs: int, steps: int, batch: int, threads: int, model: str) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={procs}",
        "-m",
        "benchmarks.raw_ddp",
        data,
        str(steps),
        str(batch),
        model,
    ]
    proc = subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])["img_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=32, help="per-process batch")
    parser.add_argument("--threads", type=int, default=1, help="threads per process, both sides")
    parser.add_argument("--repeats", type=int, default=3, help="rounds")
    parser.add_argument("--ddp-opts", nargs="*", default=[], help="KEY VALUE overrides for harness ddp runs")
    parser.add_argument("--name", default="p2_ddp_scaling", help="results file name")
    parser.add_argument("--model", default="efficientnet_b0", help="MODEL.NAME (tiny_cnn for a smoke run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(f"{tmp}/fer", int(2 * args.batch * (args.steps + 1) / 0.8) + 100)
        ratios, rows = [], []
        for round_ in range(args.repeats):

            def harness(procs: int, r: int = round_) -> float:
                name = f"h{procs}-r{r}"
                extra = ["MODEL.NAME", args.model, *(args.ddp_opts if procs > 1 else [])]
                harness_train(
                    overrides(data, f"{tmp}/runs", name, procs, args.steps, args.batch, 0, extra),
                    threads=args.threads,
                )
                return reported_img_per_s(Path(tmp) / "runs" / name)

            jobs = [
                ("h1", lambda: harness(1)),
                ("h2", lambda: harness(2)),
                ("r1", lambda: raw(data, 1, args.steps, args.batch, args.threads, args.model)),
                ("r2", lambda: raw(data, 2, args.steps, args.batch, args.threads, args.model)),
            ]
            if round_ % 2:
                jobs.reverse()
            x = {key: job() for key, job in jobs}
            row = {k: round(v, 2) for k, v in x.items()}
            row.update(harness_speedup=round(x["h2"] / x["h1"], 4), raw_speedup=round(x["r2"] / x["r1"], 4))
            rows.append(row)
            ratios.append(row["harness_speedup"] / row["raw_speedup"])
        emit(
            args.name,
            {
                "metric": "harness speedup S(2)=X(2)/X(1) / raw torchrun DDP speedup",
                "goal": ">= 1.00",
                "met": statistics.median(ratios) >= 1.0,
                "model": args.model,
                "image_px": 48,
                "batch_per_process": args.batch,
                "threads_per_process": args.threads,
                "steps": args.steps,
                "ddp_opts": args.ddp_opts,
                "ratio_median": round(statistics.median(ratios), 4),
                "ratio_min": round(min(ratios), 4),
                "ratio_max": round(max(ratios), 4),
                "rounds": rows,
                "repeats": args.repeats,
            },
        )


if __name__ == "__main__":
    main()
