"""issue 10 item 21: W&B killed mid-run (its wandb-core service process, SIGKILL): training
goes on to the end with the local metrics complete and one warning at most. (A bad key
against an unreachable server: tests/test_wandb_logging.py::test_unreachable_wandb_warns...)"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.faults.helpers import start_train, wait_for
from tests.spine_helpers import FER_SYNTH, fast_opts, records


def _descendants(root: int) -> list[tuple[int, str]]:
    children: dict[int, list[int]] = {}
    cmdlines = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
            cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append((child, cmdlines.get(child, "")))
            todo.append(child)
    return out


def _train_records_so_far(run_dir: Path) -> int:
    try:
        return len(records(run_dir, "train"))
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or a line half-written
        return 0


@pytest.mark.slow
def test_wandb_killed_mid_run_costs_nothing_but_a_warning(
    fer_csv_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("WANDB") and "SERVICE" in k]:
        monkeypatch.delenv(name)  # an in-process W&B run of this session: the child must start its own core
    opts = fast_opts(
        fer_csv_root,
        tmp_path,
        RUN_NAME="wbkill",
        # Long enough (240 steps) that wandb-core is killed mid-run even on an idle machine.
        TRAIN__EPOCHS=60,
        TRAIN__MAX_STEPS_PER_EPOCH=4,
        EVAL__EVERY_EPOCHS=20,
        LOG__WANDB__MODE="offline",
        DATA__NUM_WORKERS=0,
    )
    run_dir = tmp_path / "wbkill"
    proc = start_train("--config", FER_SYNTH, *opts, env={"WANDB_MODE": "offline"}, log=tmp_path / "out.log")
    try:
        # The first train record means W&B is up and training has begun.
        wait_for(lambda: _train_records_so_far(run_dir), 180, "training to start")
        core = wait_for(lambda: [p for p, cmd in _descendants(proc.pid) if "wandb" in cmd], 60, "wandb-core")
        for pid in core:
            os.kill(pid, signal.SIGKILL)
        assert proc.poll() is None, "the run ended before W&B could be killed mid-run"
        assert proc.wait(timeout=300) == 0, (tmp_path / "out.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    kinds = [r["kind"] for r in records(run_dir)]
    assert kinds.count("train") == 120 and kinds.count("epoch") == 60 and kinds.count("val") == 3
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    warnings = [
        line
        for line in (run_dir / "train.log").read_text().splitlines()
        if "W&B" in line and "WARNING" in line
    ]
    assert len(warnings) <= 1, warnings
