"""P9, rank start: CPU that a 2-rank DDP `harness train` costs the machine, ranks forked from
a fork server (the default without GPUs) vs spawned as fresh interpreters (HARNESS_RANK_START=spawn).

    .venv/bin/python -m benchmarks.bench_rank_start [--steps 4] [--repeats 5]

Each round runs the same short run (tiny CNN, 2 gloo ranks, W&B disabled) as a separate
`harness train` process once per start method; the figure is the machine's busy CPU seconds
over the run, read from /proc/stat (a fork server's children are not the launcher's to wait
for, so the launcher's rusage would miss them). The rate compared is runs per busy CPU second:
the ratio is spawn's CPU over forkserver's. Also reported: the wall time of each side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.fer_runs import CONFIG, overrides, write_data
from benchmarks.protocol import alternate, busy_cpu_s, emit

REPO = Path(__file__).resolve().parents[1]


def run_once(opts: list[str], method: str, walls: list[float]) -> float:
    env = {**os.environ, "HARNESS_RANK_START": method, "WANDB_MODE": "disabled"}
    cpu0, wall0 = busy_cpu_s(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness", "train", "--config", CONFIG, *opts],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    walls.append(time.perf_counter() - wall0)
    return 1.0 / (busy_cpu_s() - cpu0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of each run")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(f"{tmp}/fer", 400)
        count = 0
        walls: dict[str, list[float]] = {"forkserver": [], "spawn": []}

        def side(method: str) -> float:
            nonlocal count
            count += 1
            opts = overrides(
                data, f"{tmp}/runs", f"{method}-{count}", 2, args.steps, 8, 0, ["MODEL.NAME", "tiny_cnn"]
            )
            return run_once(opts, method, walls[method])

        result = alternate(lambda: side("forkserver"), lambda: side("spawn"), repeats=args.repeats)
    result["busy_cpu_s_forkserver"] = round(1.0 / result["candidate_median"], 2)
    result["busy_cpu_s_spawn"] = round(1.0 / result["baseline_median"], 2)
    result["wall_s_median"] = {k: round(sorted(v)[len(v) // 2], 2) for k, v in walls.items()}
    emit("p9_rank_start", result)


if __name__ == "__main__":
    main()
