"""Run states from status.json + scheduler info; sacct/squeue parsing; the status
table and JSON of hand-written sweep directories (no scheduler needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.launcher.job_state import JobInfo, parse_duration, parse_sacct, parse_squeue
from harness.launcher.manifest import write_manifest
from harness.launcher.status import derive_state, format_table, summary_line, sweep_status
from harness.rundir import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
NOW = 1_000_000.0


def test_parse_sacct_arrays_and_states() -> None:
    text = "\n".join(
        [
            "41_0|COMPLETED|12|node1",
            "41_[2-4%2]|PENDING|0|None assigned",
            "41_1|CANCELLED by 0|7|node2",
            "41_1.batch|CANCELLED|7|node2",
            "42|RUNNING|30|node[1-2]",
        ]
    )
    jobs = parse_sacct(text)
    assert jobs["41_0"] == JobInfo("COMPLETED", 12.0, "node1", "sacct")
    assert [jobs[f"41_{i}"].state for i in (2, 3, 4)] == ["PENDING"] * 3
    assert jobs["41_1"].state == "CANCELLED" and not jobs["41_1"].alive
    assert jobs["42"].alive and jobs["42"].nodelist == "node[1-2]"
    assert "41_1.batch" not in jobs


def test_parse_squeue_and_durations() -> None:
    jobs = parse_squeue("7_3|RUNNING|1:02:03|vm\n8|PENDING|0:00|\n")
    assert jobs["7_3"].elapsed_s == 3723 and jobs["8"].state == "PENDING"
    assert parse_duration("2-01:00:00") == 2 * 86400 + 3600 and parse_duration("5:07") == 307


@pytest.mark.parametrize(
    "status, job, expected",
    [
        ({"state": "completed"}, JobInfo("COMPLETED"), "completed"),
        ({"state": "failed", "error": "boom"}, JobInfo("FAILED"), "failed"),
        ({"state": "running", "heartbeat": NOW - 5}, JobInfo("RUNNING"), "running"),
        ({"state": "running", "heartbeat": NOW - 5}, JobInfo("GONE"), "running"),  # fresh heartbeat
        ({"state": "running", "heartbeat": NOW - 999}, JobInfo("RUNNING"), "running"),  # job still there
        ({"state": "running", "heartbeat": NOW - 999}, JobInfo("GONE"), "lost"),
        ({"state": "running", "heartbeat": NOW - 999}, None, "lost"),
        ({"state": "running", "heartbeat": NOW - 5}, JobInfo("PENDING"), "requeued"),
        ({"state": "preempted"}, JobInfo("PENDING"), "requeued"),
        ({"state": "preempted"}, JobInfo("COMPLETED"), "preempted"),
        ({"state": "running", "heartbeat": NOW}, JobInfo("CANCELLED"), "cancelled"),
        ({"state": "cancelled"}, None, "cancelled"),
        ({"state": "pending"}, JobInfo("PENDING"), "pending"),
        ({"state": "pending"}, JobInfo("RUNNING"), "running"),
        ({"state": "pending"}, None, "pending"),
        ({}, JobInfo("NODE_FAIL"), "failed"),
        ({"state": "pending"}, JobInfo("COMPLETED"), "lost"),
    ],
)
def test_derive_state(status: dict, job: JobInfo | None, expected: str) -> None:
    assert derive_state(status, job, lost_after_s=300, now=NOW)[0] == expected


def _sweep(tmp_path: Path, runs: dict[str, dict], job_ids: dict[str, str]) -> Path:
    sweep_dir = tmp_path / "sw"
    manifest = {"version": 1, "name": "sw", "runs": {}, "backend": "local", "arrays": []}
    for name, status in runs.items():
        manifest["runs"][name] = {"name": name, "job_id": job_ids.get(name), "submissions": []}
        if status:
            atomic_write_json(sweep_dir / "runs" / name / "status.json", status)
    write_manifest(sweep_dir, manifest)
    return sweep_dir


def test_status_table_and_json_of_a_sweep_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    now = time.time()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ddp-g2-b64-s0"])
    try:
        sweep_dir = _sweep(
            tmp_path,
            {
                "ddp-g1-b64-s0": {
                    "state": "completed",
                    "best": 0.61234,
                    "primary_metric": "val/accuracy",
                    "started_at": now - 100,
                    "heartbeat": now - 10,
                    "requeues": 1,
                },
                "ddp-g2-b64-s0": {
                    "state": "running",
                    "epoch": 2,
                    "step": 340,
                    "last_img_per_s": 812.5,
                    "started_at": now - 50,
                    "heartbeat": now - 1,
                },
                "dp-g2-b64-s0": {
                    "state": "failed",
                    "error": "RuntimeError: CUDA out of memory\nmore",
                    "started_at": now - 30,
                    "heartbeat": now - 20,
                },
                "dp-g1-b64-s0": {
                    "state": "running",
                    "step": 3,
                    "started_at": now - 4000,
                    "heartbeat": now - 3000,
                },
                "dp-g4-b64-s0": {},
            },
            {
                "ddp-g1-b64-s0": "local:999999",
                "ddp-g2-b64-s0": f"local:{sleeper.pid}",
                "dp-g1-b64-s0": "local:999998",
            },
        )
        rows, source = sweep_status(sweep_dir, lost_after_s=600)
        by_name = {r.name: r for r in rows}
        assert source == "local"
        assert by_name["ddp-g1-b64-s0"].state == "completed"
        assert by_name["ddp-g1-b64-s0"].detail == "val/accuracy=0.6123"
        assert by_name["ddp-g2-b64-s0"].state == "running"
        assert by_name["ddp-g2-b64-s0"].detail == "epoch 2 step 340 812.5 img/s"
        assert by_name["dp-g2-b64-s0"].detail == "RuntimeError: CUDA out of memory"
        assert by_name["dp-g1-b64-s0"].state == "lost"
        assert by_name["dp-g4-b64-s0"].state == "pending"
        assert summary_line(rows) == "5 runs: 1 pending, 1 running, 1 completed, 1 failed, 1 lost"
        table = format_table(rows)
        assert table.splitlines()[0].split() == ["RUN", "STATE", "DETAIL", "REQ", "JOB", "ELAPSED"]
        assert "0:01:30" in table  # completed: started -> last heartbeat

        capsys.readouterr()
        assert main(["status", str(sweep_dir), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["summary"] == {
            "total": 5,
            "pending": 1,
            "running": 1,
            "completed": 1,
            "failed": 1,
            "lost": 1,
        }
        assert {r["name"]: r["state"] for r in data["runs"]}["dp-g1-b64-s0"] == "lost"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_status_of_a_directory_without_manifest_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json not found" in err and "harness sweep SPEC" in err
