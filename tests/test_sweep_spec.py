"""Sweep spec expansion: grid sizes, weak/strong batches, names, exclusion, errors,
idempotent re-runs. No scheduler is involved."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from harness.launcher.manifest import ManifestError, new_manifest, write_manifest
from harness.launcher.naming import format_value
from harness.launcher.profiles import ClusterProfile, profile_from_dict
from harness.launcher.spec import SpecError, expand_sweep, load_spec
from harness.launcher.sweep_ops import launch_sweep
from harness.rundir import write_status

REPO = Path(__file__).resolve().parents[1]
BASE = str(REPO / "configs" / "fer" / "effnet_b0_synthetic.yaml")
GPU8 = ClusterProfile(name="gpu8", gpus_per_node=8, cpus_per_task=4, mem_per_gpu_gb=32, timeout_min=60)


def write_spec(tmp_path: Path, **fields: object) -> Path:
    spec = {"name": "s", "base": BASE, **fields}
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def expand(tmp_path: Path, profile: ClusterProfile | None = None, **fields: object):
    return expand_sweep(load_spec(write_spec(tmp_path, **fields)), tmp_path / "out", profile)


def test_weak_grid_size_names_and_configs(tmp_path: Path) -> None:
    plans = expand(
        tmp_path,
        grid={"strategy": ["dp", "ddp"], "gpus": [1, 2, 4, 8], "batch_size_per_gpu": [32, 64, 128]},
        repeats=2,
    )
    assert len(plans) == 2 * 4 * 3 * 2
    names = [p.name for p in plans]
    assert len(set(names)) == len(names)
    assert names[0] == "dp-g1-b32-s0" and names[1] == "dp-g1-b32-s1"
    run = {p.name: p for p in plans}["ddp-g4-b64-s1"]
    assert run.config["DIST.STRATEGY"] == "ddp" and run.config["DIST.GPUS"] == 4
    assert run.config["TRAIN.BATCH_SIZE_PER_GPU"] == 64 and run.config["SEED"] == 1
    assert run.overrides["global_batch"] == 256
    assert run.config["OUTPUT_DIR"] == str((tmp_path / "out" / "runs").resolve())
    assert run.config["RUN_NAME"] == "ddp-g4-b64-s1"
    assert run.config["SWEEP"] == "s" and run.config["LOG.WANDB.GROUP"] == "s"


def test_strong_scaling_derives_per_gpu_batch(tmp_path: Path) -> None:
    plans = expand(
        tmp_path,
        grid={"strategy": ["ddp"], "gpus": [1, 2, 4, 8]},
        scaling="strong",
        global_batch=256,
        lr_scaling="linear",
    )
    assert [(p.config["DIST.GPUS"], p.config["TRAIN.BATCH_SIZE_PER_GPU"]) for p in plans] == [
        (1, 256),
        (2, 128),
        (4, 64),
        (8, 32),
    ]
    assert {p.overrides["global_batch"] for p in plans} == {256}
    assert {p.config["TRAIN.LR_SCALING"] for p in plans} == {"linear"}


def test_strong_scaling_indivisible_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"global_batch 256 does not divide over 3 GPUs"):
        expand(tmp_path, grid={"strategy": ["ddp"], "gpus": [1, 3]}, scaling="strong", global_batch=256)


def test_extra_grid_keys_in_names_and_exclusion(tmp_path: Path) -> None:
    plans = expand(
        tmp_path,
        grid={
            "strategy": ["dp", "ddp"],
            "gpus": [1, 2],
            "TRAIN.OPTIMIZER": ["sgd", "adam"],
            "TRAIN.LR": [0.001],
        },
        exclude=[{"strategy": "dp", "gpus": 2}, {"TRAIN.OPTIMIZER": "adam", "strategy": ["dp"]}],
    )
    names = sorted(p.name for p in plans)
    assert names == sorted(
        [
            "dp-g1-b32-optimizer=sgd-lr=0.001-s0",
            "ddp-g1-b32-optimizer=sgd-lr=0.001-s0",
            "ddp-g1-b32-optimizer=adam-lr=0.001-s0",
            "ddp-g2-b32-optimizer=sgd-lr=0.001-s0",
            "ddp-g2-b32-optimizer=adam-lr=0.001-s0",
        ]
    )


def test_short_names_and_value_formatting(tmp_path: Path) -> None:
    plans = expand(
        tmp_path,
        grid={"DATA.NUM_WORKERS": [0, 4], "TRAIN.CHANNELS_LAST": [True]},
        short_names={"DATA.NUM_WORKERS": "nw"},
        seeds=[7],
    )
    assert [p.name for p in plans] == [
        "ddp-g1-b32-nw=0-channels_last=true-s7",
        "ddp-g1-b32-nw=4-channels_last=true-s7",
    ]
    assert format_value("a b/c") == "a_b_c" and format_value(1e-4) == "0.0001"


def test_nodes_follow_the_profile_and_shapes(tmp_path: Path) -> None:
    plans = expand(
        tmp_path,
        GPU8,
        grid={"strategy": ["dp", "ddp"], "gpus": [8, 16]},
        exclude=[{"strategy": "dp", "gpus": 16}],
    )
    by_name = {p.name: p for p in plans}
    assert set(by_name) == {"dp-g8-b32-s0", "ddp-g8-b32-s0", "ddp-g16-b32-s0"}
    dp, ddp8, ddp16 = by_name["dp-g8-b32-s0"], by_name["ddp-g8-b32-s0"], by_name["ddp-g16-b32-s0"]
    assert (dp.shape.nodes, dp.shape.tasks_per_node, dp.shape.gpus_per_node) == (1, 1, 8)
    assert (ddp8.shape.nodes, ddp8.shape.tasks_per_node, ddp8.shape.gpus_per_node) == (1, 8, 8)
    assert (ddp16.shape.nodes, ddp16.shape.tasks_per_node, ddp16.shape.gpus_per_node) == (2, 8, 8)
    assert ddp16.config["DIST.NODES"] == 2
    assert dp.shape.mem_gb == 256 and ddp8.shape.cpus_per_task == 4


def test_dp_that_does_not_fit_a_node_fails_before_submission(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"dp needs 16 GPUs on one node .* gpus_per_node 8"):
        expand(tmp_path, GPU8, grid={"strategy": ["dp"], "gpus": [16]})


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"grid": {"TRAIN.OPTIMISER": ["sgd"]}},
            r"grid key 'TRAIN.OPTIMISER' is not a config key of workload 'fer'",
        ),
        ({"grid": {"gpus": 2}}, r"grid key 'gpus' must be a non-empty list"),
        ({"grid": {"gpus": [1]}, "bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
        ({"grid": {"strategy": ["ddp"]}, "scaling": "strong"}, r"needs key 'global_batch'"),
        (
            {"grid": {"batch_size_per_gpu": [8]}, "scaling": "strong", "global_batch": 64},
            r"remove 'batch_size_per_gpu'",
        ),
        ({"grid": {"gpus": [1]}, "scaling": "diagonal"}, r"key 'scaling' is 'diagonal'"),
        (
            {"grid": {"gpus": [1]}, "exclude": [{"TRAIN.LR": 0.1}]},
            r"exclude rule 0 key 'TRAIN.LR' is not a grid key",
        ),
        ({"grid": {"strategy": ["single"], "gpus": [2]}}, r"run single-g1-b32-s0: .*DIST.STRATEGY single"),
        (
            {"grid": {"TRAIN.OPTIMIZER": ["sgd", "lion"]}},
            r"run ddp-g1-b32-optimizer=lion-s0: .*TRAIN.OPTIMIZER",
        ),
        ({"grid": {"gpus": [1]}, "exclude": [{"gpus": 1}]}, r"leave no runs"),
        ({"grid": {"gpus": [1]}, "repeats": 0}, r"key 'repeats' must be an integer >= 1"),
        ({"grid": {"gpus": [1]}, "base": "missing.yaml"}, r"key 'base': run config not found"),
    ],
)
def test_invalid_specs_name_the_file_and_key(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        expand(tmp_path, **fields)
    assert str(tmp_path / "s.yaml") in str(info.value)


def test_spec_base_chain_and_relative_base(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text(
        yaml.safe_dump(
            {"name": "parent", "base": BASE, "grid": {"gpus": [1, 2], "strategy": ["ddp"]}, "repeats": 2}
        )
    )
    (tmp_path / "child.yaml").write_text(
        yaml.safe_dump({"_BASE_": "parent.yaml", "name": "child", "grid": {"gpus": [4]}, "repeats": 1})
    )
    spec = load_spec(tmp_path / "child.yaml")
    assert spec.name == "child" and spec.seeds == [0] and spec.grid["DIST.GPUS"] == [4]
    assert [p.name for p in expand_sweep(spec, tmp_path / "out")] == ["ddp-g4-b32-s0"]


def test_profile_validation_names_file_and_key() -> None:
    with pytest.raises(ValueError, match=r"p.yaml: unknown profile key\(s\) \['gpu_per_node'\]"):
        profile_from_dict({"name": "x", "gpu_per_node": 4}, "p.yaml")
    with pytest.raises(ValueError, match=r"p.yaml: profile key 'max_array_size' must be >= 1"):
        profile_from_dict({"name": "x", "max_array_size": 0}, "p.yaml")


def test_rerun_skips_finished_runs_and_rejects_changed_spec(tmp_path: Path) -> None:
    grid = {"strategy": ["ddp"], "gpus": [1, 2]}
    spec_path = write_spec(tmp_path, grid=grid)
    root = tmp_path / "root"
    spec = load_spec(spec_path)
    sweep_dir = (root / "s").resolve()
    plans = expand_sweep(spec, sweep_dir)
    write_manifest(sweep_dir, new_manifest(spec, plans, sweep_dir, "local", None))
    write_status(
        sweep_dir / "runs" / "ddp-g1-b32-s0", state="completed", best=0.5, primary_metric="val/accuracy"
    )
    out = io.StringIO()
    launch_sweep(str(spec_path), backend="local", root=str(root), dry_run=True, out=out)
    table = out.getvalue()
    assert "ddp-g1-b32-s0  skip (completed)" in table
    assert "ddp-g2-b32-s0  submit" in table
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert manifest["name"] == "s" and set(manifest["runs"]) == {"ddp-g1-b32-s0", "ddp-g2-b32-s0"}
    assert manifest["runs"]["ddp-g2-b32-s0"]["opts"][-2:] == ["LOG.WANDB.GROUP", "s"]

    write_spec(tmp_path, grid={**grid, "gpus": [1, 4]})
    changed = r"different spec.*added: ddp-g4-b32-s0.*removed: ddp-g2-b32-s0.*--force"
    with pytest.raises(ManifestError, match=changed):
        launch_sweep(str(spec_path), backend="local", root=str(root), dry_run=True, out=io.StringIO())
    out = io.StringIO()
    launch_sweep(str(spec_path), backend="local", root=str(root), dry_run=True, force=True, out=out)
    assert "ddp-g1-b32-s0  skip (completed)" in out.getvalue()


SHIPPED = {
    "fer_weak": 72,
    "fer_strong": 24,
    "hrnet_w32_weak": 72,
    "hrnet_w32_strong": 24,
    "fer_optimizers": 14,
    "fer_amp": 48,
    "fer_loader_workers": 40,
    "fer_synthetic": 4,
    "fer_synthetic_strong": 4,
    "fer_synthetic_slurm": 4,
    "hrnet_synthetic": 2,
}


def test_every_shipped_spec_expands_on_the_gpu_template(tmp_path: Path) -> None:
    from harness.launcher.profiles import load_profile

    profile = load_profile("gpu-cluster.example")
    found = {}
    for path in sorted((REPO / "configs" / "sweeps").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.name == path.stem, f"{path}: name should match the file name"
        found[spec.name] = len(expand_sweep(spec, tmp_path / spec.name, profile))
    # Other specs (e.g. the demo's) may live beside these; each of them expanded above.
    assert {name: found.get(name) for name in SHIPPED} == SHIPPED
