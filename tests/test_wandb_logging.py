"""The rank-aware logger with the real W&B client: offline runs, and a W&B that
cannot be reached costs a warning, never the run."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from harness.config import load_config
from harness.spawn import launch
from tests.spine_helpers import FER_SYNTH, fast_opts, records


def _closed_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again once this returns: connections are refused


def test_unreachable_wandb_warns_and_training_completes(
    fer_csv_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Online mode against a loopback port nobody listens on, with a bogus key.
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_local_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "online")
    cfg = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="nowandb",
            LOG__WANDB__MODE="online",
            LOG__WANDB__INIT_TIMEOUT=2,
            TRAIN__EPOCHS=1,
        ),
    )
    assert launch(cfg) == "completed"
    run_dir = tmp_path / "nowandb"
    kinds = [r["kind"] for r in records(run_dir)]
    assert kinds.count("train") == 2 and kinds.count("epoch") == 1 and kinds.count("val") == 1
    log_text = (run_dir / "train.log").read_text()
    assert log_text.count("W&B disabled for this run") == 1
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"


def test_offline_run_holds_the_metrics(
    fer_csv_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="offline",
            TRAIN__EPOCHS=1,
            SWEEP="demo-sweep",
            LOG__WANDB__TAGS="['a', 'b']",
        ),
    )
    assert launch(cfg) == "completed"
    run_dir = tmp_path / "offline"
    identity = json.loads((run_dir / "run.json").read_text())
    assert identity["wandb_group"] == "demo-sweep"
    segment = next((run_dir / "wandb").glob(f"offline-run-*-{identity['wandb_id']}"))
    data = next(segment.glob("run-*.wandb"))
    # The binary log holds the flattened config and the namespaced metric names.
    blob = data.read_bytes()
    needles = (b"throughput/img_per_s", b"val/accuracy", b"TRAIN.BATCH_SIZE_PER_GPU", b"derived/global_batch")
    for needle in needles:
        assert needle in blob, needle
