"""The local backend: the small synthetic sweep runs on this machine, detached
from the launching process, one run after another on CPU. Cancelling a queued
run and resubmitting it goes through the same path as on Slurm."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import yaml

from harness.launcher.local_queue import plan_starts
from harness.launcher.sweep_ops import cancel, launch_sweep, resubmit, wait_for_sweep

REPO = Path(__file__).resolve().parents[1]
RUNS = ("ddp-g1-b16-s0", "ddp-g1-b32-s0", "ddp-g2-b16-s0", "ddp-g2-b32-s0")


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory, fer_csv_root: str) -> Path:
    """The small synthetic sweep run by the local backend (with a cancel and a resubmit)."""
    tmp_path = tmp_path_factory.mktemp("local")
    spec = tmp_path / "local_sweep.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "_BASE_": str(REPO / "configs" / "sweeps" / "fer_synthetic.yaml"),
                "name": "local_sweep",
                "overrides": {"DATASET.ROOT": fer_csv_root, "LOG.WANDB.MODE": "disabled"},
            }
        )
    )
    sweep_dir = launch_sweep(str(spec), backend="local", root=str(tmp_path), out=io.StringIO())
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    queue_ids = {run["job_id"] for run in manifest["runs"].values()}
    assert len(queue_ids) == 1
    scheduler_pid = int(queue_ids.pop().split(":")[1])
    # A new session: closing the launching terminal (SIGHUP to its session) does not reach it.
    assert os.getsid(scheduler_pid) == scheduler_pid != os.getsid(0)

    # The last run is still queued behind the others: cancelling it means it never starts.
    assert cancel(sweep_dir, ["ddp-g2-b32-s0"], out=io.StringIO()) == ["ddp-g2-b32-s0"]
    rows = {r.name: r.state for r in wait_for_sweep(sweep_dir, poll_s=1, timeout_s=300)}
    assert rows == {**dict.fromkeys(RUNS[:3], "completed"), "ddp-g2-b32-s0": "cancelled"}
    assert not (sweep_dir / "runs" / "ddp-g2-b32-s0" / "metrics.jsonl").exists()

    assert resubmit(sweep_dir, only="unfinished", out=io.StringIO()) == ["ddp-g2-b32-s0"]
    rows = {r.name: r.state for r in wait_for_sweep(sweep_dir, poll_s=1, timeout_s=300)}
    assert rows == dict.fromkeys(RUNS, "completed")
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    for name in RUNS:
        run = manifest["runs"][name]
        assert run["job_id"].startswith("local:"), run["job_id"]
        assert f"run {name} completed" in (sweep_dir / "runs" / name / "train.log").read_text()
    assert json.loads((sweep_dir / "runs" / "ddp-g2-b16-s0" / "run.json").read_text())["world_size"] == 2
    return sweep_dir


@pytest.mark.slow
def test_report_from_the_real_sweep(local_sweep: Path, tmp_path: Path) -> None:
    """issue 5: the report and every plot come from a real small sweep and open as images."""
    import csv
    import xml.etree.ElementTree as ET

    from PIL import Image

    from analysis.report import build_report

    result = build_report(
        [str(local_sweep)], tmp_path / "report", target_fraction=0.9, formats=("png", "svg")
    )
    text = result.report.read_text()
    assert text.startswith(f"# Scaling report: {local_sweep.name}")
    for section in ("## Summary", "## Scaling table", "## Diagnosis", "## Communication model"):
        assert f"\n{section}\n" in text, section
    # The scaling table in the report holds each measured point (global batch column included).
    assert text.count("| ddp |") >= 4
    with open(result.csvs["scaling"]) as f:
        rows = list(csv.DictReader(f))
    by_gpus = {(r["gpus"], r["batch_size_per_gpu"]): r for r in rows}
    assert set(by_gpus) == {("1", "16"), ("2", "16"), ("1", "32"), ("2", "32")}
    assert all(r["scaling"] == "weak" and r["strategy"] == "ddp" for r in rows)
    assert float(by_gpus[("1", "16")]["efficiency"]) == 1.0
    assert float(by_gpus[("2", "32")]["throughput_median"]) > 0
    files = result.plot_files()
    assert any(str(p).endswith(".png") for p in files) and any(str(p).endswith(".svg") for p in files)
    for path in files:
        if str(path).endswith(".png"):
            with Image.open(path) as image:
                image.verify()
            assert Path(path).name in text  # embedded in report.md
        else:
            ET.parse(path)


def test_gpu_packing_gives_disjoint_free_gpus_in_queue_order() -> None:
    needs = [("a", 2), ("b", 4), ("c", 1), ("d", 1)]
    starts, free = plan_starts(needs, ["0", "1", "2", "3"], gpu_mode=True, any_running=False)
    # a takes two GPUs, b (four) must wait, c and d fill the rest.
    assert starts == [("a", ["0", "1"]), ("c", ["2"]), ("d", ["3"])] and free == []
    starts, free = plan_starts([("b", 4)], ["2", "0"], gpu_mode=True, any_running=True)
    assert starts == [] and free == ["2", "0"]
    assert plan_starts([("x", 0), ("y", 0)], [], gpu_mode=False, any_running=False) == ([("x", [])], [])
    assert plan_starts([("y", 0)], [], gpu_mode=False, any_running=True) == ([], [])
