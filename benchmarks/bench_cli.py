"""P6 and P8: wall time of the ``harness`` command measured from outside, start-up included.

    .venv/bin/python -m benchmarks.bench_cli [--runs 1000] [--repeats 5]

- P6 ``harness analyze SWEEP --out DIR`` over ``--runs`` generated run directories
  (8 configurations, as ``bench_analysis_load``), plots and report included. Goal <= 3 s.
- P8 ``harness --help`` and ``harness status SWEEP`` (the same sweep). Goal <= 0.5 s.

Each command alternates with a bare ``python -c pass`` (the interpreter's own start-up,
the floor no command can beat) so the JSON also says how much of it is the interpreter.
``--profile`` writes a cProfile of one ``analyze`` to benchmarks/results/p6_analyze.prof.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_analysis_load import make_sweep
from benchmarks.protocol import RESULTS_DIR, alternate, emit

HARNESS = [sys.executable, "-m", "harness"]


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def time_against_interpreter(command: list[str], repeats: int) -> dict:
    """Medians of the command's wall time and of ``python -c pass``, alternated."""
    # alternate() takes rates (higher is better): 1/seconds, so its ratio is floor_time / command_time.
    result = alternate(
        lambda: 1.0 / seconds(command), lambda: 1.0 / seconds([sys.executable, "-c", "pass"]), repeats=repeats
    )
    rates = [1.0 / r for r in (result["candidate_median"], result["baseline_median"])]
    return {
        "wall_s_median": round(rates[0], 3),
        "interpreter_s_median": round(rates[1], 3),
        "interpreter_share_median": result["ratio_median"],
        "command": " ".join(command[2:]),
    }


def add_manifest(sweep: Path) -> None:
    """A version-1 manifest listing every run (local backend), so ``harness status`` reads it."""
    names = sorted(p.name for p in (sweep / "runs").iterdir())
    manifest = json.loads((sweep / "manifest.json").read_text())
    manifest.update(
        version=1,
        name=sweep.name,
        backend="local",
        arrays=[],
        runs={n: {"name": n, "job_id": None, "submissions": []} for n in names},
    )
    (sweep / "manifest.json").write_text(json.dumps(manifest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="run directories in the analysed sweep")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per command")
    parser.add_argument("--profile", action="store_true", help="also profile one analyze (cProfile)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        sweep = make_sweep(root, args.runs)
        add_manifest(sweep)
        report = root / "report"
        analyze = [*HARNESS, "analyze", str(sweep), "--out", str(report)]
        p6 = time_against_interpreter(analyze, args.repeats)
        emit(
            "p6_analyze_1000",
            {
                "metric": f"harness analyze wall time over {args.runs} run directories",
                "goal": "<= 3 s",
                "met": p6["wall_s_median"] <= 3.0,
                "runs": args.runs,
                "files_written": len(list(report.iterdir())),
                **p6,
            },
        )
        help_ = time_against_interpreter([*HARNESS, "--help"], args.repeats)
        status = time_against_interpreter([*HARNESS, "status", str(sweep)], args.repeats)
        emit(
            "p8_cli_startup",
            {
                "metric": "wall time of harness --help and harness status SWEEP",
                "goal": "<= 0.5 s each",
                "met": max(help_["wall_s_median"], status["wall_s_median"]) <= 0.5,
                "help": help_,
                "status": {**status, "runs": args.runs},
            },
        )
        if args.profile:
            out = RESULTS_DIR / "p6_analyze.prof"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cProfile",
                    "-o",
                    str(out),
                    "-m",
                    "harness",
                    "analyze",
                    str(sweep),
                    "--out",
                    str(root / "profiled"),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            print(f"profile: {out} (python -m pstats {out})", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
