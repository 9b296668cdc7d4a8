"""issue 10 item 22: secrets in the environment (a fake WANDB_API_KEY, *_TOKEN, *_KEY)
never reach config.yaml, run.json, logs, W&B's offline files, the manifest or the
submitit pickles. Every file of a real run (and sweep) directory is grepped, bytes too."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from harness.launcher.sweep_ops import launch_sweep, wait_for_sweep
from tests.spine_helpers import FER_SYNTH, fast_opts, harness_cli

SECRETS = {
    "WANDB_API_KEY": "c0ffee" * 6 + "beef",  # 40 characters, like a real key
    "HF_TOKEN": "hf_SecretTokenValue4242",
    "MY_SERVICE_TOKEN": "svc-secret-token-8e1f",
    "AWS_SECRET_ACCESS_KEY": "aws/SecretKey+Value9911",
    "GITHUB_TOKEN": "ghp_FakeGithubToken7777",
}


def _leaks(directory: Path) -> list[str]:
    """``file: VARIABLE`` for every file under ``directory`` holding a secret's value."""
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [
            f"{path.relative_to(directory)}: {name}"
            for name, value in SECRETS.items()
            if value.encode() in data
        ]
    return found


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.rglob("*") if p.is_file()}


@pytest.fixture()
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")  # the real client, writing its files locally


@pytest.mark.slow
def test_a_local_run_writes_no_secret(secret_env: None, fer_csv_root: str, tmp_path: Path) -> None:
    opts = fast_opts(fer_csv_root, tmp_path, RUN_NAME="secret", TRAIN__EPOCHS=1, LOG__WANDB__MODE="offline")
    harness_cli("train", "--config", FER_SYNTH, *opts)  # the child inherits this environment
    run_dir = tmp_path / "secret"
    assert {"config.yaml", "run.json", "status.json", "metrics.jsonl", "train.log"} <= _files(run_dir)
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert _leaks(run_dir) == []
    # The values are really in the environment the run had (the grep could find them).
    assert json.loads((run_dir / "run.json").read_text())["run_name"] == "secret"


def _sweep_spec(tmp_path: Path, fer_csv_root: str, name: str) -> Path:
    import yaml

    from tests.spine_helpers import REPO

    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "_BASE_": str(REPO / "configs" / "sweeps" / "fer_synthetic.yaml"),
                "name": name,
                "grid": {"gpus": [1], "batch_size_per_gpu": [16]},
                "overrides": {
                    "DATASET.ROOT": fer_csv_root,
                    "LOG.WANDB.MODE": "offline",
                    "TRAIN.MAX_STEPS_PER_EPOCH": 2,
                },
            }
        )
    )
    return spec


@pytest.mark.slow
def test_a_local_sweep_writes_no_secret(secret_env: None, fer_csv_root: str, tmp_path: Path) -> None:
    sweep_dir = launch_sweep(
        str(_sweep_spec(tmp_path, fer_csv_root, "secrets")),
        backend="local",
        root=str(tmp_path / "sweeps"),
        out=io.StringIO(),
    )
    assert [r.state for r in wait_for_sweep(sweep_dir, poll_s=1, timeout_s=300)] == ["completed"]
    assert {"manifest.json", "scheduler.log", "train.log", "config.yaml"} <= _files(sweep_dir)
    assert _leaks(sweep_dir) == []


@pytest.mark.slurm
def test_a_slurm_submission_writes_no_secret(
    secret_env: None, slurm_cluster, monkeypatch: pytest.MonkeyPatch, fer_csv_root: str, tmp_path: Path
) -> None:
    from tests.test_launcher_slurm import _client_profile

    profile = _client_profile(slurm_cluster, monkeypatch, tmp_path, "secrets")
    sweep_dir = launch_sweep(
        str(_sweep_spec(tmp_path, fer_csv_root, "secrets_slurm")),
        backend="slurm",
        cluster=profile,
        root=str(tmp_path / "sweeps"),
        out=io.StringIO(),
    )
    assert [r.state for r in wait_for_sweep(sweep_dir, poll_s=2, timeout_s=300)] == ["completed"]
    pickles = [p for p in sweep_dir.rglob("*.pkl")]
    assert pickles, "no submitit pickles to check"
    assert _leaks(sweep_dir) == []
