"""Models table (issue 11): FER backbones, val/roc_auc, harness eval, bench-model, predict,
validation pictures and the fer_models sweep joined by `harness analyze --models`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from efficientnet.backbones import BACKBONES, build_backbone
from efficientnet.metrics import average_ranks, roc_auc_ovr

REPO = Path(__file__).resolve().parents[1]
# No test here reads W&B output back (W&B failures never fail a run, so an unread W&B run
# proves nothing): the runs go without it.
ENV = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
POSE_FAST = [
    "MODEL.IMAGE_SIZE",
    "[64, 96]",
    "MODEL.HEATMAP_SIZE",
    "[16, 24]",
    "TRAIN.EPOCHS",
    "1",
    "EVAL.VIS_SAMPLES",
    "3",
    "TRAIN.BATCH_SIZE_PER_GPU",
    "4",
    "EVAL.BATCH_SIZE_PER_GPU",
    "4",
]


def _harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x1_0", "mnasnet0_5"])
def test_backbones_take_grey_input_and_give_seven_logits(name: str) -> None:
    grey = torch.rand(2, 1, 48, 48)
    for in_channels in (1, 3):  # 1: one-channel stem; 3: RGB stem with the grey channel replicated
        model = build_backbone(name, 7, in_channels, {"DROPOUT": 0.1}).eval()
        assert model(grey).shape == (2, 7)
    assert {"efficientnet_b3", "mobilenet_v3_large", "resnet50"} <= set(BACKBONES)


def test_replicated_grey_input_equals_summed_stem_weights() -> None:
    """The two grey options agree: an RGB stem on three equal channels is the 1-channel
    stem with the RGB weights summed (what MODEL.PRETRAINED loading does)."""
    torch.manual_seed(0)
    rgb = build_backbone("resnet18", 7, 3, {}).eval()
    grey = build_backbone("resnet18", 7, 1, {}).eval()
    state = rgb.state_dict()
    state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    grey.load_state_dict(state)
    x = torch.rand(2, 1, 48, 48)
    torch.testing.assert_close(grey(x), rgb(x), rtol=1e-4, atol=1e-5)


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 200)
    probs = rng.random((200, 4)) + np.eye(4)[targets] * 0.5
    probs[:5, 0] = probs[5:10, 0]  # ties count half
    expected = []
    for c in range(4):
        pos, neg = probs[targets == c, c], probs[targets != c, c]
        expected.append(
            ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum())
            / (len(pos) * len(neg))
        )
    assert roc_auc_ovr(probs, targets) == pytest.approx(np.mean(expected), abs=1e-12)
    assert roc_auc_ovr(np.eye(3)[[0, 1, 2, 0]], np.array([0, 1, 2, 0])) == 1.0
    assert np.isnan(roc_auc_ovr(np.full((4, 2), np.nan), np.array([0, 1, 0, 1])))


@pytest.mark.parametrize("distinct", [1, 3, 50, 10_000])
def test_average_ranks_equal_scipy_rankdata(distinct: int) -> None:
    from scipy.stats import rankdata

    values = np.random.default_rng(distinct).integers(0, distinct, 500).astype(np.float32)
    np.testing.assert_array_equal(average_ranks(values), rankdata(values))


def test_bench_model_checks_exports_then_times(tmp_path: Path) -> None:
    from harness.benchmodel.catalogue import resolve_models
    from harness.benchmodel.measure import BenchSettings, bench_entry
    from harness.benchmodel.report import write_outputs

    settings = BenchSettings(
        runtimes=("eager", "onnxruntime", "openvino", "fp16"),
        batches=(1, 2),
        warmup=1,
        iters=2,
        device=torch.device("cpu"),
        threads=1,
    )
    (entry,) = resolve_models("tiny_cnn")
    rows = bench_entry(entry, (48, 48), settings)
    by_runtime = {r["runtime"]: r for r in rows}
    assert by_runtime["fp16"]["status"] == "unavailable"  # CUDA only
    for runtime in ("eager", "onnxruntime", "openvino"):
        row = by_runtime[runtime]
        assert row["status"] == "ok", row
        assert row["check_passed"] and row["check_max_abs_err"] <= row["check_allowed_err"]
        assert row["latency_ms_median"] > 0 and row["throughput_img_per_s"] > 0
    assert by_runtime["eager"]["params"] == 22119 and by_runtime["eager"]["gflops"] > 0
    assert by_runtime["eager"]["weights_fp16_mb"] < by_runtime["eager"]["weights_fp32_mb"]
    assert by_runtime["eager"]["train_img_per_s"] > 0
    paths = write_outputs(rows, tmp_path, "test")
    assert "onnxruntime" in paths["markdown"].read_text()
    assert paths["latency_plot"].stat().st_size > 0 and paths["throughput_plot"].stat().st_size > 0


@pytest.mark.slow
def test_eval_reproduces_training_validation_on_synthetic_coco(tmp_path: Path) -> None:
    """`harness eval` on training's last.pt gives the same AP and the same predicted keypoints
    as training's own last validation, single and with 2 DDP processes (each person once)."""
    from hrnet.synth import SynthSpec, generate

    root = tmp_path / "coco"
    generate(str(root), SynthSpec(train_images=8, val_images=4, seed=3))
    config = str(REPO / "configs/pose/tiny_synthetic.yaml")
    data = [
        "DATASET.ROOT",
        str(root),
        "TEST.COCO_BBOX_FILE",
        str(root / "person_detection_results/COCO_val_detections.json"),
    ]
    _harness(
        "train",
        "--config",
        config,
        "--output-dir",
        str(tmp_path),
        "--run-name",
        "train",
        *data,
        *POSE_FAST,
        cwd=tmp_path,
    )
    train_dir = tmp_path / "train"
    trained = [json.loads(x) for x in (train_dir / "metrics.jsonl").read_text().splitlines()]
    trained_val = [r for r in trained if r["kind"] == "val"][-1]
    assert list((train_dir / "vis").glob("val-epoch*.png"))
    for strategy, gpus in (("single", "1"), ("ddp", "2")):
        _harness(
            "eval",
            "--config",
            config,
            "--strategy",
            strategy,
            "--gpus",
            gpus,
            "--output-dir",
            str(tmp_path),
            "--run-name",
            f"eval-{strategy}",
            *data,
            *POSE_FAST,
            "TEST.MODEL_FILE",
            str(train_dir / "checkpoints/last.pt"),
            cwd=tmp_path,
        )
        eval_dir = tmp_path / f"eval-{strategy}"
        run = json.loads((eval_dir / "run.json").read_text())
        assert run["evaluate_only"] is True and run["world_size"] == int(gpus)
        assert json.loads((eval_dir / "status.json").read_text())["state"] == "completed"
        (record,) = [json.loads(x) for x in (eval_dir / "metrics.jsonl").read_text().splitlines()]
        for key in ("val/AP", "val/AP50", "val/AR"):
            assert record[key] == pytest.approx(trained_val[key], abs=1e-9), key
        ours = json.loads((eval_dir / "results/keypoints_results.json").read_text())
        theirs = json.loads((train_dir / "results/keypoints_results.json").read_text())
        assert len(ours) == len(theirs) > 0
        key = lambda r: (r["image_id"], r["center"])  # noqa: E731
        for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key)):
            np.testing.assert_allclose(a["keypoints"], b["keypoints"], rtol=1e-5, atol=1e-3)
        assert list((eval_dir / "vis").glob("val-epoch*.png"))
    # An official-layout file ({"state_dict": ...} with DataParallel's "module." prefix) loads too.
    state = torch.load(train_dir / "checkpoints/last.pt", weights_only=False)["model"]
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "official.pth")
    _harness(
        "eval",
        "--config",
        config,
        "--output-dir",
        str(tmp_path),
        "--run-name",
        "eval-official",
        *data,
        *POSE_FAST,
        "TEST.MODEL_FILE",
        str(tmp_path / "official.pth"),
        cwd=tmp_path,
    )
    (record,) = [json.loads(x) for x in (tmp_path / "eval-official/metrics.jsonl").read_text().splitlines()]
    assert record["val/AP"] == pytest.approx(trained_val["val/AP"], abs=1e-9)
    # predict: the skeleton over each validation image.
    _harness(
        "predict",
        "--config",
        config,
        "--images",
        str(root / "images/val"),
        "--out",
        str(tmp_path / "pred"),
        *data,
        *POSE_FAST,
        "TEST.MODEL_FILE",
        str(train_dir / "checkpoints/last.pt"),
        cwd=tmp_path,
    )
    assert len(list((tmp_path / "pred").glob("*.png"))) == 4 + 1  # one per image and the grid


@pytest.mark.slow
def test_fer_models_sweep_gives_the_models_table(tmp_path: Path) -> None:
    """The short fer_models sweep (train + bench-model per backbone) through the local
    backend, then `harness analyze --models` joins them per model."""
    _harness(
        "data", "synth-fer", "data/synth_fer", "--n", "300", "--format", "csv", "--seed", "0", cwd=tmp_path
    )
    _harness(
        "sweep",
        str(REPO / "configs/sweeps/fer_models_short.yaml"),
        "--backend",
        "local",
        "--root",
        "sw",
        "--wait",
        "--poll",
        "2",
        cwd=tmp_path,
    )
    sweep = tmp_path / "sw/fer_models_short"
    _harness("analyze", "--models", str(sweep), "--out", str(tmp_path / "table"), cwd=tmp_path)
    import pandas as pd

    table = pd.read_csv(tmp_path / "table/models.csv").set_index("model")
    assert set(table.index) == {"tiny_cnn", "squeezenet1_1"}
    for model in table.index:
        row = table.loc[model]
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["roc_auc"] <= 1 and 0 <= row["macro_f1"] <= 1
        assert row["latency_cpu_ms"] > 0 and row["latency_cpu_onnxruntime_ms"] > 0 and row["params"] > 0
    assert "ROC-AUC" in (tmp_path / "table/models.md").read_text()
    train_runs = [d for d in (sweep / "runs").iterdir() if "job=train" in d.name]
    assert all(list((d / "vis").glob("*.png")) for d in train_runs)
    # predict on FER images laid out by class folder: predicted and true expression.
    faces = tmp_path / "faces/Happy"
    faces.mkdir(parents=True)
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((48, 48)) * 255).astype(np.uint8)).save(faces / "a.png")
    tiny = next(d for d in train_runs if "tiny_cnn" in d.name)
    _harness(
        "predict",
        "--config",
        str(REPO / "configs/fer/effnet_b0_synthetic.yaml"),
        "--images",
        str(tmp_path / "faces"),
        "--out",
        str(tmp_path / "pred"),
        "MODEL.NAME",
        "tiny_cnn",
        "TEST.MODEL_FILE",
        str(tiny / "checkpoints/last.pt"),
        cwd=tmp_path,
    )
    assert (tmp_path / "pred/a.png").is_file() and (tmp_path / "pred/grid.png").is_file()
