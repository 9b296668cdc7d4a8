"""P7, measurement check: the img/s a run reports vs samples / wall time from outside.

    .venv/bin/python -m benchmarks.bench_measurement [--short 20] [--long 50] [--repeats 3]

Per strategy (single, ddp with 2 gloo processes), ``harness train`` runs ``--short`` and
``--long`` optimizer steps in fresh processes, timed from outside. The difference of the
two wall times covers exactly the extra steps (start-up, data loading and the final
checkpoint cancel out), so the outside rate is extra samples / extra seconds. The run's
own figure is the median ``throughput/img_per_s`` of the long run's windows over the
same steps (after step ``--short``; a ddp(2) run on the CPU still speeds up by ~8%
between its windows at steps 10-20 and 25-50, so earlier windows would not compare).
Reported / outside, median over the alternating rounds. Goal: within 5% (0.95-1.05).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.fer_runs import harness_train, overrides, reported_img_per_s, write_data
from benchmarks.protocol import emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=20, help="steps of the short run")
    parser.add_argument("--long", type=int, default=50, help="steps of the long run")
    parser.add_argument("--batch", type=int, default=32, help="per-process batch")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (short, long alternate in order)")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="1 = single, N > 1 = ddp(N)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        global_max = max(args.procs) * args.batch
        data = write_data(f"{tmp}/fer", int(global_max * (args.long + 1) / 0.8) + 100)
        for procs in args.procs:
            ratios, outside, reported = [], [], []
            for round_ in range(args.repeats):
                lengths = (args.short, args.long) if round_ % 2 == 0 else (args.long, args.short)
                wall = {}
                for steps in lengths:
                    name = f"p{procs}-s{steps}-r{round_}"
                    opts = overrides(data, f"{tmp}/runs", name, procs, steps, args.batch, 0)
                    wall[steps] = harness_train(opts, threads=max(1, 2 // procs))
                samples = (args.long - args.short) * args.batch * procs
                outside.append(samples / (wall[args.long] - wall[args.short]))
                # The same steps as the outside figure: the long run's windows after step --short.
                long_run = Path(tmp) / "runs" / f"p{procs}-s{args.long}-r{round_}"
                reported.append(reported_img_per_s(long_run, after_step=args.short))
                ratios.append(reported[-1] / outside[-1])
            median = statistics.median(ratios)
            emit(
                f"p7_measurement_{'single' if procs == 1 else f'ddp{procs}'}",
                {
                    "metric": "reported img/s / outside img/s (difference of two run lengths)",
                    "goal": "0.95-1.05",
                    "met": 0.95 <= median <= 1.05,
                    "procs": procs,
                    "threads_per_process": max(1, 2 // procs),
                    "short_steps": args.short,
                    "long_steps": args.long,
                    "ratio_median": round(median, 4),
                    "ratio_min": round(min(ratios), 4),
                    "ratio_max": round(max(ratios), 4),
                    "ratios": [round(r, 4) for r in ratios],
                    "reported_img_per_s_median": round(statistics.median(reported), 2),
                    "outside_img_per_s_median": round(statistics.median(outside), 2),
                    "repeats": args.repeats,
                },
            )


if __name__ == "__main__":
    main()
