"""How long submitting a 100-run sweep takes, and how many sbatch calls it makes.

Needs a running Slurm cluster (e.g. ``bash slurm/local-cluster.sh up`` and
``eval "$(bash slurm/local-cluster.sh env)"``). The jobs are submitted held
(``sbatch --hold``) and cancelled at the end, so nothing trains.

    .venv/bin/python -m benchmarks.bench_sweep_submit [--runs-per-shape 50] [--max-array-size 1000]

Prints expansion time (building and validating 100 configs), submission time
(pickling + sbatch), sbatch calls, and the time of one `harness status` query.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.protocol import emit
from harness.launcher.profiles import PROFILE_DIR
from harness.launcher.status import summary_line, sweep_status
from harness.launcher.sweep_ops import cancel, launch_sweep

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs-per-shape",
        type=int,
        default=50,
        help="runs per resource shape; two shapes (1 and 2 processes) -> 2x this many runs",
    )
    parser.add_argument("--max-array-size", type=int, default=1000, help="profile max_array_size")
    parser.add_argument("--cluster", default=str(PROFILE_DIR / "local.yaml"), help="base cluster profile")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    profile = yaml.safe_load(Path(args.cluster).read_text())
    profile.update(
        name="bench",
        max_array_size=args.max_array_size,
        additional_parameters={**(profile.get("additional_parameters") or {}), "hold": True},
    )
    profile_path = work / "bench.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    batches = [8, 16, 24, 32, 40]
    seeds = -(-args.runs_per_shape // len(batches))
    spec_path = work / "bench_submit.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "_BASE_": str(REPO / "configs" / "sweeps" / "fer_synthetic.yaml"),
                "name": "bench_submit",
                "grid": {"strategy": ["ddp"], "gpus": [1, 2], "batch_size_per_gpu": batches},
                "repeats": seeds,
            }
        )
    )

    # Imports (torch, the workloads) are paid once, outside the timings.
    launch_sweep(
        str(spec_path),
        backend="slurm",
        cluster=str(profile_path),
        root=str(work),
        dry_run=True,
        out=io.StringIO(),
    )
    # A dry run: the expansion cost alone (100 configs built and validated, nothing submitted).
    start = time.perf_counter()
    launch_sweep(
        str(spec_path),
        backend="slurm",
        cluster=str(profile_path),
        root=str(work),
        dry_run=True,
        out=io.StringIO(),
    )
    expand_s = time.perf_counter() - start

    start = time.perf_counter()
    sweep_dir = launch_sweep(
        str(spec_path), backend="slurm", cluster=str(profile_path), root=str(work), out=io.StringIO()
    )
    total_s = time.perf_counter() - start
    manifest = json.loads((sweep_dir / "manifest.json").read_text())

    start = time.perf_counter()
    rows, source = sweep_status(sweep_dir)
    status_s = time.perf_counter() - start
    cancel(sweep_dir, out=io.StringIO())
    emit(
        "p5_sweep_submit",
        {
            "metric": "harness sweep command wall time for the runs, and sbatch calls",
            "goal": "<= 5 s, one sbatch per resource shape",
            "met": total_s <= 5.0 and manifest["sbatch_calls"] == len(manifest["arrays"]),
            "runs": len(manifest["runs"]),
            "sbatch_calls": manifest["sbatch_calls"],
            "arrays": [len(a["runs"]) for a in manifest["arrays"]],
            "expand_s": round(expand_s, 2),
            "sweep_command_s": round(total_s, 2),
            "submit_s_approx": round(total_s - expand_s, 2),
            "status_query_s": round(status_s, 2),
            "status_source": source,
            "status_summary": summary_line(rows),
        },
    )


if __name__ == "__main__":
    main()
