"""`harness train` end to end on synthetic FER: single and ddp(2) write the full run
directory, the throughput/timing fields, an offline W&B run, and learn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.spine_helpers import FER_SYNTH, fast_opts, harness_cli, records

CHANCE = 1 / 7
TRAIN_FIELDS = (
    "train/loss",
    "train/lr",
    "throughput/img_per_s",
    "throughput/img_per_s_per_device",
    "throughput/compute_img_per_s",
    "time/step_s",
    "time/data_wait_s",
    "time/data_wait_share",
    "memory/rss_gib",
    "steady",
    "time",
    "samples",
    "epoch",
    "step",
)


@pytest.mark.slow
@pytest.mark.parametrize("strategy, gpus", [("single", 1), ("ddp", 2)])
def test_train_writes_run_directory_and_learns(
    fer_csv_root: str, tmp_path: Path, strategy: str, gpus: int
) -> None:
    # Mild augmentation so that three short CPU epochs are enough to learn.
    opts = fast_opts(
        fer_csv_root,
        tmp_path,
        TRAIN__EPOCHS=3,
        TRAIN__MAX_STEPS_PER_EPOCH=0,
        TRAIN__BATCH_SIZE_PER_GPU=16 // gpus,
        TRAIN__OPTIMIZER="adamw",
        TRAIN__LR=0.004,
        TRAIN__LR_SCALING="none",
        MODEL__DROPOUT=0.0,
        DATASET__AUG__ROTATION=0.0,
        DATASET__AUG__SCALE="[1.0,1.0]",
        DATASET__AUG__CROP_PADDING=1,
        LOG__EVERY_N_STEPS=4,
        LOG__WANDB__MODE="offline",
    )
    proc = harness_cli(
        "train",
        "--config",
        FER_SYNTH,
        "--strategy",
        strategy,
        "--gpus",
        str(gpus),
        "--run-name",
        "e2e",
        *opts,
    )
    run_dir = tmp_path / "e2e"
    assert f"run completed: {tmp_path}/e2e" in proc.stdout
    for name in (
        "config.yaml",
        "run.json",
        "status.json",
        "metrics.jsonl",
        "checkpoints/last.pt",
        "train.log",
    ):
        assert (run_dir / name).is_file(), name

    frozen = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert frozen["DIST"]["STRATEGY"] == strategy and frozen["DIST"]["GPUS"] == gpus
    identity = json.loads((run_dir / "run.json").read_text())
    assert identity["world_size"] == (gpus if strategy == "ddp" else 1)
    assert identity["global_batch"] == 16 and identity["batch_size_per_gpu"] == 16 // gpus
    assert identity["primary_metric"] == "val/accuracy" and identity["num_params"] > 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["epoch"] == 3 and status["requeues"] == 0

    train = records(run_dir, "train")
    assert train and all(field in rec for rec in train for field in TRAIN_FIELDS)
    assert all(r["throughput/img_per_s"] > 0 and 0 <= r["time/data_wait_share"] <= 1 for r in train)
    assert [r["step"] for r in train] == sorted(r["step"] for r in train)
    per_device = train[-1]["throughput/img_per_s"] / gpus
    assert train[-1]["throughput/img_per_s_per_device"] == pytest.approx(per_device)
    val = records(run_dir, "val")
    assert [r["epoch"] for r in val] == [0, 1, 2]
    assert val[-1]["val/accuracy"] > 2 * CHANCE, [r["val/accuracy"] for r in val]
    assert (
        val[-1]["val/samples"]
        == json.loads(
            harness_cli("data", "summary", "--config", FER_SYNTH, "DATASET.ROOT", fer_csv_root).stdout
        )["val"]["size"]
    )
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{identity['wandb_id']}"))
    assert len(offline) == 1


def test_bad_input_names_the_problem(fer_csv_root: str, tmp_path: Path) -> None:
    proc = harness_cli("train", "--config", FER_SYNTH, "TRAIN.BATCH_SIZE", "8", check=False)
    assert proc.returncode == 2 and "TRAIN.BATCH_SIZE_PER_GPU" in proc.stderr
    missing = tmp_path / "nowhere.csv"
    proc = harness_cli(
        "train", "--config", FER_SYNTH, *fast_opts(str(missing), tmp_path, RUN_NAME="bad"), check=False
    )
    # Found before the run starts: one line, no traceback, and no run directory left behind.
    assert proc.returncode == 2 and "nowhere.csv" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_nan_loss_fails_with_the_step_and_keeps_the_checkpoint(fer_csv_root: str, tmp_path: Path) -> None:
    opts = fast_opts(fer_csv_root, tmp_path, RUN_NAME="nan", FAULT__NAN_AT_STEP=5)
    proc = harness_cli("train", "--config", FER_SYNTH, *opts, check=False)
    assert proc.returncode != 0
    status = json.loads((tmp_path / "nan" / "status.json").read_text())
    assert status["state"] == "failed" and "loss is nan" in status["error"] and "step 6" in status["error"]
    assert (tmp_path / "nan" / "checkpoints" / "last.pt").is_file()  # epoch 0's checkpoint survives
