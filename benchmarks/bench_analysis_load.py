"""How fast the analysis reads a large sweep: 1000 synthetic run directories.

Run from the repository root: ``.venv/bin/python -m benchmarks.bench_analysis_load [--runs 1000]``.
Prints runs/s for loading (run.json, status.json, config.yaml, metrics.jsonl of every
run) and for the whole table computation (``analysis.pipeline.analyze``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from analysis.load import load_run_dirs
from analysis.pipeline import analyze
from benchmarks.protocol import emit
from tests.analysis_fixtures import write_run


def make_sweep(root: Path, runs: int) -> Path:
    """``runs`` run directories over 8 configurations (DP/DDP × 1/2/4/8 GPUs), each
    run with its own name, seed and config file (no two config files alike)."""
    sweep = root / "bench"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "manifest.json").write_text(json.dumps({"spec": {"scaling": "weak"}}))
    shapes = [(s, g) for g in (1, 2, 4, 8) for s in ("dp", "ddp")]
    templates = {
        shape: write_run(
            root / "templates", strategy=shape[0], gpus=shape[1], throughput=100.0 * shape[1] ** 0.9
        )
        for shape in shapes
    }
    for i in range(runs):
        template = templates[shapes[i % len(shapes)]]
        dest = sweep / "runs" / f"{template.name}-r{i}"
        shutil.copytree(template, dest)
        meta = json.loads((dest / "run.json").read_text())
        meta.update(run_name=dest.name, seed=i)
        (dest / "run.json").write_text(json.dumps(meta))
        config = (dest / "config.yaml").read_text()
        config = config.replace(f"RUN_NAME: {template.name}", f"RUN_NAME: {dest.name}")
        (dest / "config.yaml").write_text(config.replace("SEED: 0", f"SEED: {i}", 1))
    return sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="number of run directories")
    parser.add_argument("--repeats", type=int, default=3, help="timed loads; the best is reported")
    parser.add_argument("--keep", metavar="DIR", help="write the sweep here and keep it")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    try:
        sweep = make_sweep(root, args.runs)
        load_times, analyze_times = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            runset = load_run_dirs([sweep])
            load_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            analyze(runset)
            analyze_times.append(time.perf_counter() - start)
        assert len(runset.runs) == args.runs and runset.runs["included"].all()
        load_s, analyze_s = min(load_times), min(analyze_times)
        emit(
            "analysis_load",
            {
                "metric": "in-process load and table computation of a large sweep (P6 parts)",
                "runs": args.runs,
                "records": len(runset.records),
                "load_s": round(load_s, 3),
                "load_runs_per_s": round(args.runs / load_s, 1),
                "analyze_s": round(analyze_s, 3),
                "analyze_runs_per_s": round(args.runs / analyze_s, 1),
                "repeats": args.repeats,
            },
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
