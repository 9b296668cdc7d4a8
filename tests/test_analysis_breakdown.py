"""The diagnosis uses the measured communication shares when runs logged them, the report shows
MFU or achieved FLOP/s beside efficiency, and older runs without them keep the inferred rule."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.load import load_run_dirs
from analysis.pipeline import Options, analyze
from analysis.report_text import diagnosis_section, scaling_section
from tests.analysis_fixtures import write_sweep


def _add_to_train_records(run_dir: Path, values: dict[str, float]) -> None:
    """Hand-written breakdown metrics, as the trainer writes them, on every train record."""
    path = run_dir / "metrics.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in recs:
        if rec["kind"] == "train":
            rec.update(values)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def _sweep(tmp_path: Path, exposed_at_4: float | None) -> Path:
    # E(4) = 200 / (4 * 100) = 0.5: half of the 4-GPU step is lost against ideal scaling.
    runs = [
        dict(strategy="ddp", gpus=1, throughput=100, data_wait_share=0.05),
        dict(strategy="ddp", gpus=4, throughput=200, data_wait_share=0.05),
    ]
    sweep = write_sweep(tmp_path / f"s{exposed_at_4}", "diag", runs, scaling="weak")
    for run in sorted((sweep / "runs").iterdir()):
        gpus = json.loads((run / "run.json").read_text())["gpus"]
        extra = {"perf/tflops_per_s": 0.002 if gpus == 1 else 0.001}
        if gpus == 4 and exposed_at_4 is not None:
            extra.update(
                {
                    "time/comm_share": exposed_at_4 + 0.1,
                    "time/comm_exposed_share": exposed_at_4,
                    "perf/mfu": 0.125,
                }
            )
        _add_to_train_records(run, extra)
    return sweep


def _analysis(sweep: Path):
    return analyze(load_run_dirs([sweep]), Options())


def _point(a, gpus: int) -> pd.Series:
    return a.scaling[a.scaling["gpus"] == gpus].iloc[0]


def test_measured_exposed_communication_decides(tmp_path: Path) -> None:
    # 40% of the step is exposed communication: most of the 50% lost.
    a = _analysis(_sweep(tmp_path, 0.4))
    four = _point(a, 4)
    assert four["comm_exposed_share"] == 0.4 and four["comm_share"] == 0.5
    assert four["diagnosis"] == "communication-bound (exposed comm 40% of the step)"
    assert four["mfu"] == 0.125
    # 5% exposed: the lost time is elsewhere (each device's step got slower).
    a = _analysis(_sweep(tmp_path, 0.05))
    assert _point(a, 4)["diagnosis"] == "compute-slowdown (exposed comm 5% of the step)"


def test_runs_without_the_measurement_keep_the_inferred_rule(tmp_path: Path) -> None:
    a = _analysis(_sweep(tmp_path, None))
    four = _point(a, 4)
    assert pd.isna(four["comm_exposed_share"]) and pd.isna(four["mfu"])
    assert four["diagnosis"] == "communication-bound"


def test_report_shows_mfu_or_achieved_flops_beside_efficiency(tmp_path: Path) -> None:
    a = _analysis(_sweep(tmp_path, 0.4))
    table = scaling_section(a)
    header = next(line for line in table.splitlines() if line.startswith("| workload"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[cells.index("efficiency") + 1] == "MFU or achieved FLOP/s per device"
    assert "MFU 12.5%" in table  # the 4-GPU point has a GPU peak
    assert "2 GFLOP/s" in table  # the baseline does not: its achieved rate
    diagnosis = diagnosis_section(a)
    assert "exposed comm" in diagnosis and "40.0%" in diagnosis
