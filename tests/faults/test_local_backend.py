"""The local backend under faults: issue 10 items 5 (the scheduler killed: its run stops
too), 6 (`stalled`), 7 (`lost`, then `resubmit --only unfinished`) and 17 (train.log lines
once; ELAPSED counts the whole process). Real detached schedulers and gloo ranks."""

from __future__ import annotations

import collections
import io
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml

from harness.launcher.status import sweep_status
from harness.launcher.sweep_ops import cancel, launch_sweep, resubmit, wait_for_sweep
from tests.faults.helpers import BEAT_TIMEOUT_S, heartbeat, pid_gone, status, wait_for
from tests.spine_helpers import REPO, harness_cli

RUN = "ddp-g2-b8-s0"


def _sweep(tmp_path: Path, fer_csv_root: str, epochs: int) -> tuple[Path, int]:
    """A one-run local sweep (ddp, 2 gloo ranks); returns its directory and the scheduler pid."""
    spec = tmp_path / "faults.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "_BASE_": str(REPO / "configs" / "sweeps" / "fer_synthetic.yaml"),
                "name": "faults",
                "grid": {"gpus": [2], "batch_size_per_gpu": [8]},
                "overrides": {
                    "DATASET.ROOT": fer_csv_root,
                    "LOG.WANDB.MODE": "disabled",
                    "TRAIN.EPOCHS": epochs,
                    "TRAIN.MAX_STEPS_PER_EPOCH": 4,
                    "EVAL.EVERY_EPOCHS": 0,
                    "DATA.NUM_WORKERS": 0,
                    "DIST.TIMEOUT_S": BEAT_TIMEOUT_S,
                },
            }
        )
    )
    sweep_dir = launch_sweep(str(spec), backend="local", root=str(tmp_path), out=io.StringIO())
    job = json.loads((sweep_dir / "manifest.json").read_text())["runs"][RUN]["job_id"]
    assert job.startswith("local-queue:")
    return sweep_dir, int(job.split(":")[1])


def _training(sweep_dir: Path) -> tuple[int, list[int]]:
    """The run's process (run_one) and its ranks' pids, once both ranks train."""
    run_dir = sweep_dir / "runs" / RUN

    def ready():
        beats = [heartbeat(run_dir, r) for r in (0, 1)]
        return [b["pid"] for b in beats] if all(b and b["step"] >= 2 for b in beats) else None

    ranks = wait_for(ready, 240, "the run's ranks to train")
    job = json.loads((sweep_dir / "manifest.json").read_text())["runs"][RUN]["job_id"]
    assert job.startswith("local:")
    return int(job.split(":")[1]), ranks


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                pass


@pytest.mark.slow
def test_log_lines_once_and_elapsed_counts_the_whole_process(tmp_path: Path, fer_csv_root: str) -> None:
    sweep_dir, _ = _sweep(tmp_path, fer_csv_root, epochs=1)
    started = time.time()
    rows = wait_for_sweep(sweep_dir, poll_s=0.5, timeout_s=300)
    wall = time.time() - started
    assert [r.state for r in rows] == ["completed"]
    run_dir = sweep_dir / "runs" / RUN
    text = (run_dir / "train.log").read_text()
    lines = [x for x in text.splitlines() if re.match(r"\d\d:\d\d:\d\d \[rank", x)]
    assert sum(f"run {RUN} completed" in x for x in lines) == 1 and len(lines) >= 2, lines
    doubled = [line for line, n in collections.Counter(lines).items() if n > 1]
    assert not doubled, doubled[:3]
    st = status(run_dir)
    # ELAPSED: the process's life (imports and rank start-up included), not just the training part.
    training_part = st["heartbeat"] - st["started_at"]
    assert training_part + 1.0 < rows[0].elapsed_s <= wall + 1.0, (training_part, rows[0].elapsed_s, wall)


@pytest.mark.slow
def test_stalled_then_scheduler_killed_stops_the_run(tmp_path: Path, fer_csv_root: str) -> None:
    sweep_dir, scheduler = _sweep(tmp_path, fer_csv_root, epochs=500)
    run_one, ranks = _training(sweep_dir)
    run_dir = sweep_dir / "runs" / RUN
    try:
        os.killpg(run_one, signal.SIGSTOP)  # the whole run freezes; its job is still alive
        time.sleep(3)
        proc = harness_cli("status", str(sweep_dir), "--stalled-after", "2")
        assert re.search(rf"{RUN}\s+stalled\s+no step for \d+s", proc.stdout), proc.stdout
        rows, _ = sweep_status(sweep_dir)  # the default limit (30 min) is not reached
        assert rows[0].state == "running"
        os.killpg(run_one, signal.SIGCONT)
        step = heartbeat(run_dir, 0)["step"]
        wait_for(lambda: heartbeat(run_dir, 0)["step"] > step, 60, "training to go on after SIGCONT")

        os.kill(scheduler, signal.SIGKILL)  # the scheduler dies: its run must not go on alone
        wait_for(lambda: all(pid_gone(p) for p in [run_one, *ranks]), 90, "the run to stop with its parent")
        assert status(run_dir)["state"] == "preempted"  # stopped at a step boundary, checkpointed
        assert (run_dir / "checkpoints" / "last.pt").is_file()
        assert sweep_status(sweep_dir)[0][0].state == "preempted"
    finally:
        _kill_all([scheduler, run_one, *ranks])


@pytest.mark.slow
def test_lost_run_is_reported_and_resubmitted(tmp_path: Path, fer_csv_root: str) -> None:
    sweep_dir, scheduler = _sweep(tmp_path, fer_csv_root, epochs=500)
    run_one, ranks = _training(sweep_dir)
    run_dir = sweep_dir / "runs" / RUN
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "last.pt").is_file(), 120, "a first checkpoint")
        # Killed outside the scheduler's view (a node reboot): nothing gets to write a word.
        os.kill(scheduler, signal.SIGSTOP)
        os.killpg(run_one, signal.SIGKILL)
        os.kill(scheduler, signal.SIGKILL)
        wait_for(lambda: all(pid_gone(p) for p in [run_one, *ranks]), 30, "the run's processes to die")
        assert status(run_dir)["state"] == "running"
        time.sleep(2.5)
        assert sweep_status(sweep_dir, lost_after_s=2)[0][0].state == "lost"
        assert sweep_status(sweep_dir)[0][0].state == "running"  # not yet: the default limit is 10 min
        # Ten minutes later (the heartbeat moved back rather than the test waiting them out):
        st = status(run_dir)
        st["heartbeat"] -= 660
        (run_dir / "status.json").write_text(json.dumps(st))
        rows, _ = sweep_status(sweep_dir)
        assert rows[0].state == "lost" and "no heartbeat" in rows[0].detail
        assert harness_cli("status", str(sweep_dir)).stdout.count("lost") >= 1

        assert resubmit(sweep_dir, only="unfinished", out=io.StringIO()) == [RUN]
        wait_for(lambda: "resumed from" in (run_dir / "train.log").read_text(), 240, "the resubmitted run")
        assert sweep_status(sweep_dir)[0][0].state == "running"
    finally:
        cancel(sweep_dir, out=io.StringIO())
        _kill_all([scheduler, run_one, *ranks])
