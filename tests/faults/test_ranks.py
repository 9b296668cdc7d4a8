"""issue 10 items 4-6: no orphan, no hang. Real `harness train` runs with two gloo ranks:
rank 0 killed (-9), the launcher killed (-9), rank 1 frozen (SIGSTOP)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.helpers import BEAT_TIMEOUT_S, heartbeat, pid_gone, start_train, status, wait_for
from tests.spine_helpers import FER_SYNTH, fast_opts


def _ddp2(fer_csv_root: str, tmp_path: Path, name: str, **extra: object) -> list[str]:
    extra.setdefault("DIST__TIMEOUT_S", BEAT_TIMEOUT_S)
    return [
        "--config",
        FER_SYNTH,
        *fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME=name,
            DIST__STRATEGY="ddp",
            DIST__GPUS=2,
            TRAIN__EPOCHS=500,
            TRAIN__MAX_STEPS_PER_EPOCH=4,
            TRAIN__BATCH_SIZE_PER_GPU=8,
            EVAL__EVERY_EPOCHS=0,
            DATA__NUM_WORKERS=0,
            LOG__WANDB__MODE="disabled",
            **extra,
        ),
    ]


def _training_ranks(run_dir: Path, proc) -> list[int]:
    """Pids of ranks 0 and 1 once both have trained a few steps."""

    def ready():
        assert proc.poll() is None, f"the launcher ended early ({proc.returncode})"
        beats = [heartbeat(run_dir, r) for r in (0, 1)]
        return [b["pid"] for b in beats] if all(b and b["step"] >= 2 for b in beats) else None

    return wait_for(ready, 180, "both ranks to train")


def _cleanup(pids: list[int]) -> None:
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except OSError:
                pass


@pytest.mark.slow  # three Python processes that import torch, then a fault
def test_rank0_killed_is_recorded_failed_with_rank_signal_and_step(fer_csv_root: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "kill0"
    proc = start_train(*_ddp2(fer_csv_root, tmp_path, "kill0"), log=tmp_path / "out.log")
    pids = _training_ranks(run_dir, proc)
    try:
        os.kill(pids[0], signal.SIGKILL)
        assert proc.wait(timeout=60) != 0
        st = status(run_dir)
        assert st["state"] == "failed" and st["failed_rank"] == 0 and st["signal"] == "SIGKILL", st
        assert "rank 0" in st["error"] and "SIGKILL" in st["error"] and f"step {st['step']}" in st["error"]
        assert st["step"] >= 2
        wait_for(lambda: pid_gone(pids[1]), 30, "rank 1 to end")
    finally:
        _cleanup(pids)


@pytest.mark.slow  # three Python processes that import torch, then a fault
def test_launcher_killed_takes_its_ranks_with_it(fer_csv_root: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "orphan"
    proc = start_train(*_ddp2(fer_csv_root, tmp_path, "orphan"), log=tmp_path / "out.log")
    pids = _training_ranks(run_dir, proc)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # The parent-death signal is SIGTERM: the ranks agree to stop, checkpoint, and exit.
        wait_for(lambda: all(pid_gone(p) for p in pids), 60, "both ranks to end after the launcher")
        st = status(run_dir)
        assert st["state"] == "preempted", st
        assert (run_dir / "checkpoints" / "last.pt").is_file()
    finally:
        _cleanup(pids)


@pytest.mark.slow  # three Python processes that import torch, then a fault
def test_frozen_rank_fails_the_run_within_the_timeout_naming_it(fer_csv_root: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "frozen"
    timeout_s = 8
    proc = start_train(
        *_ddp2(fer_csv_root, tmp_path, "frozen", DIST__TIMEOUT_S=timeout_s), log=tmp_path / "out.log"
    )
    pids = _training_ranks(run_dir, proc)
    try:
        frozen_at = time.time()
        os.kill(pids[1], signal.SIGSTOP)
        proc.wait(timeout=60)
        took = time.time() - frozen_at
        st = status(run_dir)
        assert st["state"] == "failed" and st["silent_rank"] == 1, st
        assert st["error"].startswith(f"rank 1 (pid {pids[1]}") and "no heartbeat" in st["error"]
        assert took < timeout_s + 10, took  # the watchdog, not a 600 s (or 1800 s) collective timeout
        wait_for(lambda: all(pid_gone(p) for p in pids), 30, "no rank left, the frozen one included")
        assert "sent no heartbeat" in (tmp_path / "out.log").read_text()
    finally:
        _cleanup(pids)
    assert json.loads((run_dir / "heartbeat" / "rank1.json").read_text())["pid"] == pids[1]


def test_die_with_parent_delivers_the_requested_signal(tmp_path: Path) -> None:
    """The mechanism behind run_one (SIGTERM) and Slurm tasks (submitit's USR2, which stops at
    a step boundary and requeues): the child learns of its parent's kill -9 by a signal."""
    import subprocess
    import sys

    from tests.spine_helpers import REPO

    got, ready = tmp_path / "got", tmp_path / "ready"
    child = (
        "import pathlib, signal, sys, time\n"
        "from harness.local_ranks import die_with_parent\n"
        "from harness.rundir import atomic_write_text\n"
        "def on(s, f):\n"
        f"    atomic_write_text({str(got)!r}, signal.Signals(s).name); sys.exit(0)\n"  # whole or absent
        "signal.signal(signal.SIGUSR2, on)\n"
        "die_with_parent(signal.SIGUSR2)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
            "print(p.pid, flush=True)\ntime.sleep(300)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child_pid = int(parent.stdout.readline())
    try:
        wait_for(ready.exists, 120, "the child to arm its parent-death signal")
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        wait_for(got.exists, 20, "the parent-death signal")
        assert got.read_text() == "SIGUSR2"
        wait_for(lambda: pid_gone(child_pid), 20, "the child to exit")
    finally:
        _cleanup([child_pid, parent.pid])
