"""Sweeps (issue 10, items 8 and 10): run names stay within file-name limits, the dry run
checks what the submission needs, a submission that fails part-way leaves a sweep that
`status` and `resubmit` handle, and grid axes on identity keys are honoured or refused."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.launcher.job_state import SchedulerError
from harness.launcher.naming import MAX_RUN_NAME, run_name
from harness.launcher.spec import SpecError, expand_sweep, load_spec
from harness.launcher.status import sweep_status
from harness.launcher.submit_checks import SubmitCheckError
from harness.launcher.sweep_ops import launch_sweep, resubmit, wait_for_sweep

REPO = Path(__file__).resolve().parents[2]
BASE = str(REPO / "configs" / "fer" / "effnet_b0_synthetic.yaml")
LONG_A, LONG_B = "a" * 300, "a" * 299 + "b"  # longer than NAME_MAX (255), equal prefixes


def write_spec(
    tmp_path: Path, name: str, data_root: str, grid: dict[str, Any], overrides: dict[str, Any] | None = None
) -> Path:
    spec = {
        "name": name,
        "base": BASE,
        "grid": grid,
        "overrides": {
            "DATASET.ROOT": data_root,
            "MODEL.NAME": "tiny_cnn",
            "TRAIN.EPOCHS": 1,
            "TRAIN.MAX_STEPS_PER_EPOCH": 2,
            "LOG.PROGRESS": False,
            "LOG.WANDB.MODE": "disabled",
            **(overrides or {}),
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# --------------------------------------------------------------- item 8
def test_long_names_get_a_readable_prefix_and_a_hash() -> None:
    short = run_name("ddp", 2, 1, 16, 0, [("project", "p")])
    assert short == "ddp-g2-b16-project=p-s0"
    a = run_name("ddp", 2, 1, 16, 0, [("project", LONG_A)])
    b = run_name("ddp", 2, 1, 16, 0, [("project", LONG_B)])
    assert a != b and len(a) == len(b) == MAX_RUN_NAME
    assert a.startswith("ddp-g2-b16-project=aaaa") and a.endswith("-s0")
    assert a == run_name("ddp", 2, 1, 16, 0, [("project", LONG_A)])  # stable for the same grid point


def test_dry_run_and_submission_accept_the_same_long_grid_values(tmp_path: Path, fer_csv_root: str) -> None:
    spec = write_spec(tmp_path, "long", fer_csv_root, {"LOG.WANDB.PROJECT": [LONG_A, LONG_B]})
    out = io.StringIO()
    sweep_dir = launch_sweep(
        str(spec), backend="slurm", cluster="local", root=str(tmp_path / "root"), dry_run=True, out=out
    )
    names = [p.name for p in expand_sweep(load_spec(spec), sweep_dir)]
    assert len(set(names)) == 2 and all(len(n) <= MAX_RUN_NAME for n in names)
    assert all(n in out.getvalue() for n in names)
    assert not sweep_dir.exists()  # a dry run writes nothing


def test_a_path_the_file_system_cannot_hold_fails_the_dry_run_like_the_submission(
    tmp_path: Path, fer_csv_root: str
) -> None:
    spec = write_spec(tmp_path, "deep", fer_csv_root, {"gpus": [1]})
    # 20 levels: over PATH_MAX (4096) once runs/<name> is added; 21: the root alone is over it.
    for depth in (20, 21):
        root = tmp_path / "/".join(["d" * 200] * depth)
        for dry_run in (True, False):
            with pytest.raises(SubmitCheckError, match=r"too long for this file system \(PATH_MAX 4096\)"):
                launch_sweep(str(spec), backend="local", root=str(root), dry_run=dry_run, out=io.StringIO())
    assert not (tmp_path / ("d" * 200)).exists()  # refused before anything was written


@pytest.mark.slow  # one real run through the local backend: ~60 s on 2 busy cores
def test_failed_submission_leaves_a_sweep_status_and_resubmit_handle(
    tmp_path: Path, fer_csv_root: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Submission fails for real after the manifest was written: the Slurm clients are not on
    PATH (as on a machine without Slurm), so submitit cannot submit."""
    spec = write_spec(tmp_path, "broken", fer_csv_root, {"LOG.WANDB.PROJECT": [LONG_A]})
    root = tmp_path / "root"
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(SchedulerError, match=r"srun.*1 run\(s\) were not submitted .* harness resubmit"):
        launch_sweep(str(spec), backend="slurm", cluster="local", root=str(root), out=io.StringIO())
    sweep_dir = root / "broken"
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    (name,) = manifest["runs"]
    assert len(name) <= MAX_RUN_NAME and manifest["sbatch_calls"] == 0

    from harness.cli import main

    capsys.readouterr()
    assert main(["status", str(sweep_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["summary"] == {"total": 1, "pending": 1} and status["runs"][0]["job_id"] == ""

    # A rerun of `harness sweep` picks the run up again (and fails the same way, saying so).
    with pytest.raises(SchedulerError, match="were not submitted"):
        launch_sweep(str(spec), backend="slurm", cluster="local", root=str(root), out=io.StringIO())
    # Resubmitting on a backend that works finishes it.
    monkeypatch.setenv("PATH", path)
    assert resubmit(sweep_dir, only="unfinished", backend="local", out=io.StringIO()) == [name]
    rows = wait_for_sweep(sweep_dir, poll_s=1, timeout_s=240)
    assert [(r.name, r.state) for r in rows] == [(name, "completed")]
    rows, _ = sweep_status(sweep_dir)
    assert rows[0].job_id.startswith("local:")


# --------------------------------------------------------------- item 10
@pytest.mark.parametrize(
    "where, key", [("grid", "RUN_NAME"), ("grid", "OUTPUT_DIR"), ("grid", "SWEEP"), ("overrides", "RUN_NAME")]
)
def test_identity_keys_in_a_grid_are_refused(tmp_path: Path, fer_csv_root: str, where: str, key: str) -> None:
    grid = {key: ["x", "y"]} if where == "grid" else {"gpus": [1]}
    spec = write_spec(tmp_path, "ident", fer_csv_root, grid, {key: "x"} if where == "overrides" else None)
    with pytest.raises(SpecError, match=rf"{where} key '{key}' cannot be set by a sweep"):
        load_spec(spec)


def test_wandb_group_in_the_grid_or_overrides_is_honoured(tmp_path: Path, fer_csv_root: str) -> None:
    spec = write_spec(tmp_path, "groups", fer_csv_root, {"LOG.WANDB.GROUP": ["g1", "g2"]})
    plans = expand_sweep(load_spec(spec), tmp_path / "groups")
    assert sorted(p.config["LOG.WANDB.GROUP"] for p in plans) == ["g1", "g2"]
    assert len({p.name for p in plans}) == 2
    spec = write_spec(tmp_path, "fixed", fer_csv_root, {"gpus": [1]}, {"LOG.WANDB.GROUP": "mine"})
    assert [p.config["LOG.WANDB.GROUP"] for p in expand_sweep(load_spec(spec), tmp_path / "f")] == ["mine"]
    spec = write_spec(tmp_path, "plain", fer_csv_root, {"gpus": [1]})
    assert [p.config["LOG.WANDB.GROUP"] for p in expand_sweep(load_spec(spec), tmp_path / "p")] == ["plain"]
