"""The measurement protocol every benchmark shares.

A benchmark compares a candidate A (the harness) with a baseline B measured in the
same process, on the same machine, at the same time: after ``warmup`` untimed rounds
it runs ``repeats`` rounds, alternating the order (A B, B A, A B, ...) so that slow
drift of a shared machine falls on both sides, and reports the median of the
per-round ratios A/B with their min and max. Rates are "higher is better"
(samples/s, steps/s); times are converted by the caller.

Each benchmark prints one JSON line and writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def busy_cpu_s() -> float:
    """Busy CPU seconds of the whole machine since boot (every core; /proc/stat jiffies)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def alternate(
    candidate: Callable[[], float], baseline: Callable[[], float], repeats: int = 5, warmup: int = 1
) -> dict[str, Any]:
    """Median ratio candidate/baseline over ``repeats`` alternating rounds.

    Each callable runs one measurement and returns a rate (higher is better).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        candidate()
        baseline()
    a_rates, b_rates, ratios = [], [], []
    for round_ in range(repeats):
        if round_ % 2 == 0:
            a, b = candidate(), baseline()
        else:
            b, a = baseline(), candidate()
        a_rates.append(a)
        b_rates.append(b)
        ratios.append(a / b)
    return {
        "ratio_median": round(statistics.median(ratios), 4),
        "ratio_min": round(min(ratios), 4),
        "ratio_max": round(max(ratios), 4),
        "candidate_median": round(statistics.median(a_rates), 4),
        "baseline_median": round(statistics.median(b_rates), 4),
        "ratios": [round(r, 4) for r in ratios],
        "repeats": repeats,
        "warmup": warmup,
    }


def rate(work: Callable[[], int]) -> float:
    """``work()`` returns how many units it processed; the rate in units per second."""
    start = time.perf_counter()
    units = work()
    return units / (time.perf_counter() - start)


def machine() -> dict[str, Any]:
    """Where the figures came from (a shared 2-core CPU gives noisy absolute numbers)."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        info["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.is_available()
    return info


def emit(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Print ``result`` as one JSON line and write it to ``benchmarks/results/<name>.json``,
    with the command line, the time and the machine."""
    script = Path(sys.argv[0])
    # ``python -m benchmarks.x`` shows as the module, the way the Makefile runs it.
    argv0 = ["-m", f"benchmarks.{script.stem}"] if script.parent == RESULTS_DIR.parent else [sys.argv[0]]
    record = {
        "benchmark": name,
        **result,
        "command": " ".join([".venv/bin/python", *argv0, *sys.argv[1:]]),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record), flush=True)
    return record
