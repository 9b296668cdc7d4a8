"""issue 10 items 18-19: preempted twice (during validation, during the checkpoint write),
and killed halfway through a checkpoint write: the run still ends bit-identical to an
uninterrupted one, and a partial checkpoint file is never picked up."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from harness import preemption
from harness.checkpoint import load_checkpoint
from harness.config import load_config
from harness.spawn import launch
from tests.faults.helpers import status
from tests.spine_helpers import FER_SYNTH, fast_opts, harness_cli, model_state, records
from tests.test_resume import DROPOUT_RUN, _training_view

RUN = dict(DROPOUT_RUN, CHECKPOINT__EVERY_N_STEPS=3)
pytestmark = pytest.mark.slow  # four trainings of 8 steps with validation, one in a subprocess


@pytest.fixture(scope="module")
def straight(fer_csv_root: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    cfg = load_config(FER_SYNTH, fast_opts(fer_csv_root, out, RUN_NAME="straight", **RUN))
    assert launch(cfg) == "completed"
    return out / "straight"


def _same_run(a: Path, b: Path) -> None:
    sa, sb = model_state(a), model_state(b)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} differs from the uninterrupted run"
    assert _training_view(a) == _training_view(b)


def test_preempted_during_validation_and_during_the_checkpoint_write_is_exact(
    straight: Path, fer_csv_root: str, tmp_path: Path
) -> None:
    # Real SIGTERMs to this process, through the handler `harness train` installs.
    previous = preemption.install_signal_handlers()
    try:
        opts = fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="twice",
            FAULT__PREEMPT_IN_VAL_AT_EPOCH=0,
            FAULT__PREEMPT_IN_CHECKPOINT_AT_STEP=6,
            **RUN,
        )
        cfg = load_config(FER_SYNTH, opts)
        run_dir = tmp_path / "twice"
        # 1: the signal lands in epoch 0's validation; the run stops at the next step boundary.
        assert launch(cfg) == "preempted"
        assert status(run_dir)["step"] == 5
        # 2: resumed; the signal lands while step 6's checkpoint is being written.
        assert launch(cfg) == "preempted"
        st = status(run_dir)
        assert st["step"] == 6 and st["requeues"] == 1
        # 3: resumed again, to the end.
        assert launch(cfg) == "completed"
        assert status(run_dir)["requeues"] == 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _same_run(straight, run_dir)
    assert [r["step"] for r in records(run_dir, "val")] == [4, 8]


def test_killed_while_writing_a_checkpoint_keeps_the_previous_one(
    straight: Path, fer_csv_root: str, tmp_path: Path
) -> None:
    opts = fast_opts(fer_csv_root, tmp_path, RUN_NAME="killed", FAULT__KILL_IN_CHECKPOINT_AT_STEP=6, **RUN)
    run_dir = tmp_path / "killed"
    proc = harness_cli("train", "--config", FER_SYNTH, *opts, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = list((run_dir / "checkpoints").glob(".last.pt.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # half a file, beside last.pt
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # intact: the previous one
    assert state["global_step"] == 4  # the epoch-end checkpoint before step 6
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"  # nobody could say
    # The relaunch resumes from step 4 (never from the partial file) and removes it.
    assert launch(load_config(FER_SYNTH, opts)) == "completed"
    assert not list((run_dir / "checkpoints").glob(".last.pt.*.tmp"))
    assert "resumed from" in (run_dir / "train.log").read_text()
    _same_run(straight, run_dir)
