"""Shell injection (issue 10, item 9): a `$(...)`, a backtick and a newline payload in every
cluster-profile field and every sweep-spec field either fails with an error naming the field,
or travels where no shell reads it; the generated sbatch script never holds it, and a real
submission on the local Slurm cluster never runs it."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.launcher.profiles import ProfileError, profile_from_dict
from harness.launcher.slurm_backend import group_arrays, render_sbatch
from harness.launcher.spec import SpecError, expand_sweep, load_spec
from harness.launcher.submit_checks import SubmitCheckError
from harness.launcher.sweep_ops import launch_sweep, wait_for_sweep

REPO = Path(__file__).resolve().parents[2]
BASE = str(REPO / "configs" / "fer" / "effnet_b0_synthetic.yaml")
GOOD_PROFILE: dict[str, Any] = {
    "name": "inj",
    "partition": "debug",
    "account": "proj",
    "qos": "normal",
    "constraint": "a100|h100",
    "gpus_per_node": 0,
    "cpus_per_task": 1,
    "setup": ["export OMP_NUM_THREADS=1"],
    "python": sys.executable,
    "additional_parameters": {"comment": "ok", "exclusive": True},
}


def payloads(marker: Path) -> list[str]:
    return [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"x\ntouch {marker}",
        f"x\n#SBATCH --wrap=touch {marker}",
    ]


def with_field(field: str, payload: str) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(GOOD_PROFILE))
    if field == "setup":
        data["setup"] = ["export A=1", payload]
    elif field == "additional_parameters.key":
        data["additional_parameters"] = {payload: "1"}
    elif field == "additional_parameters.value":
        data["additional_parameters"] = {"comment": payload}
    elif field == "python":
        data["python"] = f"{sys.executable} {payload}"
    else:
        data[field] = payload
    return data


PROFILE_FIELDS = [
    "partition",
    "account",
    "qos",
    "constraint",
    "python",
    "setup",
    "additional_parameters.key",
    "additional_parameters.value",
]
FIELD_NAMES = {
    "additional_parameters.key": "additional_parameters",
    "setup": "setup' line 2",
    "additional_parameters.value": "additional_parameters.comment",
}


@pytest.mark.parametrize("field", PROFILE_FIELDS)
def test_every_profile_field_refuses_every_payload(tmp_path: Path, field: str) -> None:
    for payload in payloads(tmp_path / "pwned"):
        with pytest.raises(ProfileError) as info:
            profile_from_dict(with_field(field, payload), "inj.yaml")
        message = str(info.value)
        assert message.startswith("inj.yaml: profile key"), message
        assert FIELD_NAMES.get(field, field) in message, message
        assert len(message.splitlines()) == 1  # the newline is quoted (repr), not printed raw
    assert not (tmp_path / "pwned").exists()


def test_harmless_values_still_pass_and_render_verbatim(tmp_path: Path) -> None:
    profile = profile_from_dict(
        {
            **GOOD_PROFILE,
            "python": "$HOME/venv/bin/python -X faulthandler",
            "setup": ["source $HOME/venv/bin/activate", "module load cuda/12.4"],
        },
        "ok.yaml",
    )
    assert profile.python == "$HOME/venv/bin/python -X faulthandler"
    spec = write_spec(tmp_path, "ok", "/data/fer.csv", {"gpus": [1]})
    sweep_dir = tmp_path / "ok"
    plans = expand_sweep(load_spec(spec), sweep_dir, profile)
    (chunk,) = group_arrays([p.to_dict() for p in plans], profile)
    script = render_sbatch(sweep_dir, chunk, profile, "ok")
    for line in (
        "#SBATCH --constraint='a100|h100'",
        "#SBATCH --comment=ok",
        "#SBATCH --exclusive",
        "source $HOME/venv/bin/activate",
    ):
        assert line in script.splitlines(), script
    assert " $HOME/venv/bin/python -X faulthandler -u -m submitit.core._submit " in script


def write_spec(
    tmp_path: Path,
    name: str,
    data_root: str,
    grid: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
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
        **(fields or {}),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_spec_fields_that_reach_the_script_refuse_payloads(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    profile = profile_from_dict(GOOD_PROFILE, "inj.yaml")
    for payload in payloads(marker):
        with pytest.raises(SpecError, match="key 'name'"):
            load_spec(write_spec(tmp_path, "s", "/d", {"gpus": [1]}, fields={"name": payload}))
        with pytest.raises(SpecError, match=r"short_names\['LOG.WANDB.PROJECT'\]"):
            load_spec(
                write_spec(
                    tmp_path,
                    "s",
                    "/d",
                    {"LOG.WANDB.PROJECT": ["a"]},
                    fields={"short_names": {"LOG.WANDB.PROJECT": payload}},
                )
            )
        with pytest.raises(SpecError, match="key 'base'"):
            load_spec(write_spec(tmp_path, "s", "/d", {"gpus": [1]}, fields={"base": payload}))
        # The sweep directory (from --root) goes into #SBATCH --output and the srun line.
        with pytest.raises(SubmitCheckError, match="sweep directory"):
            launch_sweep(
                str(write_spec(tmp_path, "s", "/d", {"gpus": [1]})),
                backend="slurm",
                cluster=str(write_profile(tmp_path, GOOD_PROFILE)),
                root=str(tmp_path / payload),
                dry_run=True,
                out=io.StringIO(),
            )
    assert profile.name == "inj" and not marker.exists()


def test_grid_and_override_values_never_reach_the_script(tmp_path: Path) -> None:
    """Grid values and overrides travel in submitit's pickle; run names are sanitised."""
    marker = tmp_path / "pwned"
    values = payloads(marker)
    profile = profile_from_dict(GOOD_PROFILE, "inj.yaml")
    spec = write_spec(
        tmp_path,
        "vals",
        "/d",
        {"LOG.WANDB.PROJECT": values, "LOG.WANDB.GROUP": values[:2]},
        {"LOG.WANDB.ENTITY": values[0], "LOG.WANDB.TAGS": values[1:]},
    )
    sweep_dir = tmp_path / "vals"
    plans = expand_sweep(load_spec(spec), sweep_dir, profile)
    assert len(plans) == 8
    for plan in plans:
        assert all(c.isalnum() or c in "._+-=" for c in plan.name), plan.name
    for chunk in group_arrays([p.to_dict() for p in plans], profile):
        script = render_sbatch(sweep_dir, chunk, profile, "vals")
        assert "touch" not in script and "$(" not in script and "`" not in script
    assert not marker.exists()


def write_profile(tmp_path: Path, data: dict[str, Any], filename: str = "profile.yaml") -> Path:
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slurm
def test_payloads_never_run_on_the_real_cluster(
    slurm_cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fer_csv_root: str
) -> None:
    """Accepted values carrying payloads go through a real sbatch; refused ones never get there."""
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    marker = tmp_path / "pwned"
    values = payloads(marker)
    profile = yaml.safe_load((REPO / "slurm" / "clusters" / "local.yaml").read_text())
    profile.update(
        name=f"inj-$(touch {marker})",
        partition=slurm_cluster.partition,
        additional_parameters={"comment": "injection-test"},
    )
    cluster = write_profile(tmp_path, profile, "inj-profile.yaml")
    spec = write_spec(
        tmp_path,
        "inj",
        fer_csv_root,
        {"LOG.WANDB.PROJECT": values[:2]},
        {"LOG.WANDB.GROUP": values[2], "LOG.WANDB.TAGS": values[3:]},
    )
    sweep_dir = launch_sweep(
        str(spec), backend="slurm", cluster=str(cluster), root=str(tmp_path / "root"), out=io.StringIO()
    )
    rows = wait_for_sweep(sweep_dir, poll_s=2, timeout_s=300)
    assert [r.state for r in rows] == ["completed", "completed"], [(r.name, r.detail) for r in rows]
    for path in (sweep_dir / "slurm").rglob("*_submission.sh"):
        assert "touch" not in path.read_text()
    # Every profile field with a payload is refused before sbatch is called.
    for field in PROFILE_FIELDS:
        data = {**with_field(field, values[0]), "name": "bad"}
        if field != "partition":
            data["partition"] = slurm_cluster.partition
        bad = write_profile(tmp_path, data, "bad-profile.yaml")
        with pytest.raises(ProfileError):
            launch_sweep(
                str(spec), backend="slurm", cluster=str(bad), root=str(tmp_path / "root2"), out=io.StringIO()
            )
    assert not marker.exists()
