"""P1, loop overhead: steady train steps/s of the harness vs a minimal hand-written loop.

    .venv/bin/python -m benchmarks.bench_loop_overhead [--steps 40] [--workers 0 1] [--repeats 5]

Both sides use the same task, model (EfficientNet-B0, 48 px), dataset object, loader
settings (the harness's ``build_loader``), optimizer, batch and thread count (this
process's, both in this process). The harness's steps/s is 1 / median ``time/step_s``
of its steady windows (P7 checks that this figure matches the outside clock); the
loop's is its steps after the same warm-up over their wall time. Goal: >= 0.98.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.fer_runs import CONFIG, overrides, raw_loop_steps_per_s, steady, write_data
from benchmarks.protocol import alternate, emit


def compare(data: str, tmp: str, workers: int, steps: int, batch: int, repeats: int, model: str) -> dict:
    from harness.config import load_config
    from harness.spawn import launch

    threads = torch.get_num_threads()
    extra = ["MODEL.NAME", model]
    count = 0

    def harness() -> float:
        nonlocal count
        count += 1
        name = f"w{workers}-{count}"
        launch(load_config(CONFIG, overrides(data, f"{tmp}/runs", name, 1, steps, batch, workers, extra)))
        torch.set_num_threads(threads)  # the run sets its own; give the loop the same
        return 1.0 / statistics.median(r["time/step_s"] for r in steady(Path(tmp) / "runs" / name))

    def loop() -> float:
        opts = overrides(data, f"{tmp}/runs", "raw", 1, steps, batch, workers, extra)
        return raw_loop_steps_per_s(opts, warmup=5)  # = LOG.WARMUP_STEPS of the harness runs

    return {"threads": threads, **alternate(harness, loop, repeats=repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="DATA.NUM_WORKERS values")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--model", default="efficientnet_b0", help="MODEL.NAME (tiny_cnn for a smoke run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(f"{tmp}/fer", int(args.batch * (args.steps + 1) / 0.8) + 100)
        for workers in args.workers:
            result = compare(data, tmp, workers, args.steps, args.batch, args.repeats, args.model)
            emit(
                f"p1_loop_overhead_w{workers}",
                {
                    "metric": "steady train steps/s, harness / minimal loop",
                    "goal": ">= 0.98",
                    "met": result["ratio_median"] >= 0.98,
                    "workers": workers,
                    "batch": args.batch,
                    "model": args.model,
                    "steps": args.steps,
                    **result,
                },
            )


if __name__ == "__main__":
    main()
