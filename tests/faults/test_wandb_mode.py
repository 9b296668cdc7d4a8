"""W&B mode precedence (issue 10, item 11): WANDB_MODE in the environment, when set,
overrides LOG.WANDB.MODE; unset, the config's mode is used. Runs use the real client in
offline mode; `online` is checked on the resolving function, never on the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import ConfigError, load_config, resolve_wandb_mode
from harness.spawn import launch
from tests.spine_helpers import FER_SYNTH, fast_opts


@pytest.mark.parametrize(
    "environ, config, expected",
    [
        ({}, "offline", ("offline", "LOG.WANDB.MODE")),
        ({"WANDB_MODE": ""}, "disabled", ("disabled", "LOG.WANDB.MODE")),
        ({"WANDB_MODE": "online"}, "offline", ("online", "WANDB_MODE")),
        ({"WANDB_MODE": "disabled"}, "online", ("disabled", "WANDB_MODE")),
        ({"WANDB_MODE": "offline"}, "disabled", ("offline", "WANDB_MODE")),
        ({"WANDB_MODE": " Dryrun "}, "online", ("offline", "WANDB_MODE")),  # wandb's old name for offline
    ],
)
def test_environment_overrides_config(
    environ: dict[str, str], config: str, expected: tuple[str, str]
) -> None:
    assert resolve_wandb_mode(config, environ) == expected


def test_unknown_environment_mode_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"environment variable WANDB_MODE is 'sometimes'; choose one of"):
        resolve_wandb_mode("offline", {"WANDB_MODE": "sometimes"})


def _run(fer_csv_root: str, tmp_path: Path, name: str, config_mode: str) -> Path:
    cfg = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME=name,
            TRAIN__EPOCHS=1,
            TRAIN__MAX_STEPS_PER_EPOCH=2,
            LOG__WANDB__MODE=config_mode,
        ),
    )
    assert launch(cfg) == "completed"
    return tmp_path / name


def test_disabled_in_the_environment_beats_offline_in_the_config(
    fer_csv_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_dir = _run(fer_csv_root, tmp_path, "env-disabled", "offline")
    assert not (run_dir / "wandb").exists()
    assert "W&B mode disabled (from WANDB_MODE)" in (run_dir / "train.log").read_text()


def test_config_mode_is_used_when_the_environment_is_unset(
    fer_csv_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = _run(fer_csv_root, tmp_path, "config-offline", "offline")
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert "W&B mode offline (from LOG.WANDB.MODE)" in (run_dir / "train.log").read_text()
