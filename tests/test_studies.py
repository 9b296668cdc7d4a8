"""The shipped studies (configs/sweeps/studies/): every spec plans on the example GPU
cluster profile, and every tiny variant runs here and gives its figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.launcher.profiles import load_profile
from harness.launcher.spec import expand_sweep, load_spec
from harness.runformat import devices_from_config

STUDIES = Path("configs/sweeps/studies")
GPU_PROFILE = "slurm/clusters/gpu-cluster.example.yaml"
TINY = sorted(p.stem for p in STUDIES.glob("*_tiny.yaml"))
FULL = sorted(p.stem for p in STUDIES.glob("*.yaml") if not p.stem.endswith("_tiny"))


def test_each_study_has_a_tiny_variant() -> None:
    assert FULL == [
        "fer_amp",
        "fer_optimizers",
        "fer_profile",
        "fer_workers",
        "hrnet_batch_convergence",
        "hrnet_dp_epoch_time",
    ]
    assert TINY == [f"{name}_tiny" for name in FULL]


@pytest.mark.parametrize("name", FULL + TINY)
def test_study_plans_on_the_example_gpu_profile(name: str, tmp_path: Path) -> None:
    plans = expand_sweep(load_spec(STUDIES / f"{name}.yaml"), tmp_path, profile=load_profile(GPU_PROFILE))
    assert plans and all(plan.shape is not None for plan in plans)
    if name == "fer_optimizers":
        pairs = {(p.config["TRAIN.OPTIMIZER"], p.config["TRAIN.LR"]) for p in plans}
        assert pairs == {
            ("adam", 0.001),
            ("adagrad", 0.01),
            ("adadelta", 1.0),
            ("sgd", 0.05),
            ("sgd_nesterov", 0.05),
        }
        assert all(p.config["DATASET.VAL_FRACTION"] == 0.1 and not p.config["EVAL.AMP"] for p in plans)
    if name == "fer_workers":
        assert sorted(p.config["DATA.NUM_WORKERS"] for p in plans) == [0, 1, 2, 4, 8, 12, 16]
    if name == "hrnet_dp_epoch_time":
        grid = {(p.config["DIST.GPUS"], p.config["TRAIN.BATCH_SIZE_PER_GPU"]) for p in plans}
        assert grid == {(g, b) for g in (1, 2, 4) for b in (32, 64, 128)}
        assert all(p.strategy == "dp" and p.shape.gpus_per_node == p.config["DIST.GPUS"] for p in plans)
        assert all(p.config["MODEL.EXTRA.STAGE2.NUM_CHANNELS"] == [32, 64] for p in plans)  # W32
    if name == "fer_profile":
        assert plans[0].config["PROFILE.ENABLED"]


def _study_data(tmp_path: Path, workload: str) -> list[str]:
    if workload == "fer":
        from efficientnet.synth import write_synthetic_fer

        return ["DATASET.ROOT", write_synthetic_fer(str(tmp_path / "fer"), n=600, fmt="csv", seed=0)]
    from hrnet.synth import SynthSpec, generate

    root = str(tmp_path / "coco")
    generate(root, SynthSpec(train_images=24, val_images=8, seed=0))
    return ["DATASET.ROOT", root, "TEST.COCO_BBOX_FILE", ""]


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_tiny_study_runs_here_and_draws_its_figure(name: str, tmp_path: Path) -> None:
    from analysis.load import load_run_dirs
    from analysis.study_plots import STUDIES as FIGURES
    from harness.config import load_config
    from harness.spawn import launch

    plans = expand_sweep(load_spec(STUDIES / f"{name}.yaml"), tmp_path / "plan")
    data = _study_data(tmp_path, "fer" if name.startswith("fer") else "pose")
    runs = tmp_path / "runs"
    for plan in plans:
        assert devices_from_config(plan.config) <= 2
        cfg = load_config(
            plan.base,
            [*plan.opts, *data, "OUTPUT_DIR", str(runs), "RUN_NAME", plan.name, "LOG.WANDB.MODE", "disabled"],
        )
        assert launch(cfg) == "completed", plan.name
    study = name.removesuffix("_tiny")
    if study in FIGURES:
        figure = FIGURES[study](load_run_dirs([runs]), tmp_path / f"{study}.png")
        assert figure.stat().st_size > 1000
    else:
        assert list(runs.glob("*/profile/*")), "the profiler wrote nothing"
