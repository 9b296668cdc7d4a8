"""End to end: a tiny HRNet trained on synthetic COCO through `harness train`, single and ddp(2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrnet.evaluation import METRIC_NAMES
from hrnet.synth import SynthSpec, generate

TINY_CONFIG = "configs/pose/tiny_synthetic.yaml"
# Smaller crops than the tiny config's 96x128 keep this test to seconds of compute per
# epoch; SIGMA 2 (the official value in heatmap pixels) learns far faster than a
# one-pixel gaussian.
FAST = [
    "MODEL.IMAGE_SIZE",
    "[64, 96]",
    "MODEL.HEATMAP_SIZE",
    "[16, 24]",
    "MODEL.SIGMA",
    "2.0",
    "TRAIN.EPOCHS",
    "12",
    "TRAIN.LR",
    "0.005",
    "TRAIN.LR_STEP",
    "[]",
    "EVAL.EVERY_EPOCHS",
    "4",
]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("synth_coco_e2e"))
    generate(root, SynthSpec(train_images=64, val_images=12, seed=1))
    return root


def _train(output_dir: Path, run_name: str, root: str, *args: str) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "train",
        "--config",
        TINY_CONFIG,
        "--output-dir",
        str(output_dir),
        "--run-name",
        run_name,
        *args,
        "DATASET.ROOT",
        root,
        *FAST,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return output_dir / run_name


def _check_run(run_dir: Path, strategy: str, world_size: int) -> list[float]:
    for name in ("config.yaml", "run.json", "status.json", "metrics.jsonl", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), f"{name} missing in {run_dir}"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["workload"] == "pose" and run["primary_metric"] == "val/AP"
    assert run["strategy"] == strategy and run["world_size"] == world_size
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["kind"] == "val"]
    assert [r["epoch"] for r in val] == [3, 7, 11]
    for r in val:
        assert all(f"val/{name}" in r for name in METRIC_NAMES)
    return [r["val/AP"] for r in val]


@pytest.mark.slow
def test_tiny_hrnet_single_process_learns_synthetic_coco(synth_root: str, tmp_path: Path) -> None:
    ap = _train_and_check(
        tmp_path, synth_root, "single", 1, "--strategy", "single", "LOG.WANDB.MODE", "disabled"
    )
    assert ap[-1] > 0 and ap[-1] > ap[0], f"AP per validation: {ap}"


@pytest.mark.slow
def test_tiny_hrnet_ddp_two_processes_learns_synthetic_coco(synth_root: str, tmp_path: Path) -> None:
    # Half the per-process batch keeps the global batch (and so the step count) of the
    # single-process run.
    ap = _train_and_check(
        tmp_path,
        synth_root,
        "ddp",
        2,
        "--strategy",
        "ddp",
        "--gpus",
        "2",
        "TRAIN.BATCH_SIZE_PER_GPU",
        "8",
        "EVAL.BATCH_SIZE_PER_GPU",
        "8",
    )
    assert ap[-1] > 0 and ap[-1] > ap[0], f"AP per validation: {ap}"
    assert list((tmp_path / "runs" / "ddp" / "wandb").glob("offline-run-*")), "no offline W&B run"


def _train_and_check(tmp_path: Path, root: str, name: str, world_size: int, *args: str) -> list[float]:
    run_dir = _train(tmp_path / "runs", name, root, *args)
    strategy = "ddp" if world_size > 1 else "single"
    return _check_run(run_dir, strategy, world_size)


@pytest.fixture(scope="module")
def tiny_val_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Just enough images for one W32 step and a validation pass of a few persons."""
    root = str(tmp_path_factory.mktemp("synth_coco_w32"))
    generate(root, SynthSpec(train_images=4, val_images=2, seed=2))
    return root


@pytest.mark.slow
def test_official_hrnet_yaml_trains_unmodified(tiny_val_root: str, tmp_path: Path) -> None:
    """The official w32_256x192 file, byte for byte, drives a one-step W32 run and a
    validation pass on a tiny set: only the data location and the one-CPU device set come
    from the command line. The config mapping itself is covered in test_hrnet_config.py."""
    synth_root = tiny_val_root
    official = Path(__file__).parent / "fixtures" / "hrnet_official" / "w32_256x192_adam_lr1e-3.yaml"
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "train",
        "--config",
        str(official),
        "--strategy",
        "single",
        "--gpus",
        "1",
        "--output-dir",
        str(tmp_path),
        "--run-name",
        "w32",
        "DATASET.ROOT",
        synth_root,
        "DATASET.TRAIN_SET",
        "train",
        "DATASET.TEST_SET",
        "val",
        "TEST.USE_GT_BBOX",
        "True",
        "MODEL.INIT_WEIGHTS",
        "False",
        "TRAIN.BATCH_SIZE_PER_GPU",
        "2",
        "TEST.BATCH_SIZE_PER_GPU",
        "8",
        "TRAIN.END_EPOCH",
        "1",
        "TRAIN.MAX_STEPS_PER_EPOCH",
        "1",
        "WORKERS",
        "0",
        "LOG.WANDB.MODE",
        "disabled",
        "LOG.PROGRESS",
        "False",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = json.loads((tmp_path / "w32" / "run.json").read_text())
    assert run["model"] == "pose_hrnet" and run["num_params"] == 28_536_113
    records = [json.loads(line) for line in (tmp_path / "w32" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1]
    assert "val/AP" in [r for r in records if r["kind"] == "val"][0]
