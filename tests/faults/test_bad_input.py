"""Bad input gets one clear line (issue 10, items 13-16): a truncated FER csv row, an empty
YAML, lowercase booleans on the command line, and `harness` user errors (one line, exit 2,
no traceback unless --debug, no run directory left behind by a run that cannot start)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from efficientnet.data import FERDataError, load_fer_split
from harness.config import ConfigError, load_config
from harness.errors import MachineError, UserError
from harness.launcher.profiles import ProfileError, load_profile
from harness.launcher.spec import SpecError, load_spec
from harness.preflight import check_machine

REPO = Path(__file__).resolve().parents[2]
FER_SYNTH = REPO / "configs" / "fer" / "effnet_b0_synthetic.yaml"
PIXELS = " ".join(["7"] * 48 * 48)


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def harness_here(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """`harness ARGS` in this process (no torch start-up): (exit code, stderr)."""
    from harness.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


# --------------------------------------------------------------- item 13
@pytest.mark.parametrize("line, fields", [("3", 1), (f"3,{PIXELS[:500]}", 2)])
def test_truncated_csv_row_is_named_as_truncated(tmp_path: Path, line: str, fields: int) -> None:
    path = tmp_path / "fer.csv"
    path.write_text(f"emotion,pixels,Usage\n3,{PIXELS},Training\n{line}\n4,{PIXELS},Training\n")
    with pytest.raises(FERDataError) as info:
        load_fer_split(str(path), "train", "csv")
    message = str(info.value)
    assert message == (
        f"{path}: row 1 (line 3) is truncated: it has {fields} of the 3 fields (emotion, pixels, Usage)"
    )
    assert "Usage ''" not in message


def test_explicitly_empty_usage_is_not_called_truncated(tmp_path: Path) -> None:
    path = tmp_path / "fer.csv"
    path.write_text(f"emotion,pixels,Usage\n3,{PIXELS},\n")
    with pytest.raises(FERDataError, match=r"row 0 \(line 2\) has unknown Usage ''"):
        load_fer_split(str(path), "train", "csv")


# --------------------------------------------------------------- item 14
@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "---\n"])
def test_empty_yaml_is_an_error_for_configs_specs_and_profiles(tmp_path: Path, text: str) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    with pytest.raises(ConfigError, match=rf"config file {empty} is empty"):
        load_config(empty)
    with pytest.raises(SpecError, match=rf"sweep spec {empty} is empty"):
        load_spec(empty)
    with pytest.raises(ProfileError, match=rf"cluster profile {empty} is empty"):
        load_profile(str(empty))


def test_empty_base_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: parent.yaml\nTASK: fer\n")
    with pytest.raises(ConfigError, match=r"parent\.yaml is empty"):
        load_config(child)


# --------------------------------------------------------------- item 15
@pytest.mark.parametrize(
    "spelling, value",
    [("false", False), ("true", True), ("False", False), ("TRUE", True), ("no", False), ("on", True)],
)
def test_yaml_boolean_spellings_work_on_the_command_line(spelling: str, value: bool) -> None:
    cfg = load_config(FER_SYNTH, ["LOG.PROGRESS", spelling, "TRAIN.CHANNELS_LAST", spelling])
    assert cfg.LOG.PROGRESS is value and cfg.TRAIN.CHANNELS_LAST is value


def test_words_are_still_not_booleans_or_numbers() -> None:
    with pytest.raises(ConfigError, match=r"LOG\.PROGRESS.*expects bool"):
        load_config(FER_SYNTH, ["LOG.PROGRESS", "maybe"])
    with pytest.raises(ConfigError, match=r"TRAIN\.LR.*expects float"):
        load_config(FER_SYNTH, ["TRAIN.LR", "true"])


# --------------------------------------------------------------- item 16
def test_config_error_is_one_line_exit_2_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    args = (
        "train",
        "--config",
        str(FER_SYNTH),
        "--output-dir",
        str(tmp_path),
        "TRAIN.BATCH_SIZE_PER_GPUS",
        "8",
    )
    proc = harness(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith("harness: error: unknown config key 'TRAIN.BATCH_SIZE_PER_GPUS'")
    assert "Traceback" not in proc.stderr
    debug = harness("--debug", *args)
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr
    assert "ConfigError: unknown config key" in debug.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    "flags, overrides, message",
    [
        (["--strategy", "dp", "--gpus", "2"], [], "DIST.STRATEGY dp with DIST.GPUS 2 needs 2 CUDA devices"),
        ([], ["DIST.BACKEND", "nccl"], "DIST.BACKEND nccl needs CUDA"),
        ([], ["TRAIN.AMP", "fp16"], "TRAIN.AMP fp16 needs CUDA"),
    ],
)
def test_a_shape_this_machine_cannot_run_leaves_no_run_directory(
    tmp_path: Path,
    fer_csv_root: str,
    capsys: pytest.CaptureFixture,
    flags: list[str],
    overrides: list[str],
    message: str,
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA devices")
    out = tmp_path / "out"
    code, err = harness_here(
        capsys,
        "train",
        "--config",
        str(FER_SYNTH),
        *flags,
        "--output-dir",
        str(out),
        "DATASET.ROOT",
        fer_csv_root,
        *overrides,
    )
    assert code == 2, err
    assert err.startswith(f"harness: error: {message}") and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_data_root_is_one_line_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    code, err = harness_here(
        capsys,
        "train",
        "--config",
        str(FER_SYNTH),
        "--output-dir",
        str(out),
        "DATASET.ROOT",
        str(tmp_path / "no-such.csv"),
    )
    assert code == 2
    assert err.strip() == f"harness: error: DATASET.ROOT {tmp_path / 'no-such.csv'} does not exist"
    assert not out.exists()


def test_missing_config_file_is_one_line(capsys: pytest.CaptureFixture) -> None:
    code, err = harness_here(capsys, "train", "--config", "/nonexistent/run.yaml")
    assert code == 2
    assert err.strip() == "harness: error: config file not found: /nonexistent/run.yaml"


def _can_bind_read_only() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind -o ro /tmp /tmp && true"], capture_output=True
    )
    return probe.returncode == 0


def test_read_only_output_directory_is_one_line(tmp_path: Path, fer_csv_root: str) -> None:
    """A read-only mount (root ignores permission bits, so the test mounts one)."""
    readonly = tmp_path / "ro"
    readonly.mkdir()
    argv = [
        sys.executable,
        "-m",
        "harness",
        "train",
        "--config",
        str(FER_SYNTH),
        "--output-dir",
        str(readonly / "runs"),
        "DATASET.ROOT",
        fer_csv_root,
    ]
    if _can_bind_read_only():
        script = f"mount --bind -o ro {readonly} {readonly} && exec \"$@\""
        command = ["unshare", "-m", "sh", "-c", script, "sh", *argv]
    elif os.geteuid() != 0:
        readonly.chmod(0o555)
        command = argv
    else:
        pytest.skip("root without mount namespaces: no way to make a read-only directory")
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    readonly.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"harness: error: OUTPUT_DIR {readonly / 'runs'} is not writable "
        f"({readonly} is read-only or not yours); set OUTPUT_DIR or --output-dir "
        "to a writable directory"
    )
    assert not (readonly / "runs").exists()


def test_user_error_family() -> None:
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(SpecError, UserError) and issubclass(ProfileError, UserError)
    cfg = load_config(FER_SYNTH, ["DIST.STRATEGY", "dp", "DIST.GPUS", "4"])
    with pytest.raises(MachineError, match="needs 4 CUDA devices; this machine has 2"):
        check_machine(cfg, cuda_devices=2)
    check_machine(cfg, cuda_devices=4)  # enough devices: no error


def test_help_texts_describe_cancel_and_data_summary() -> None:
    for args, needle in (
        (("cancel", "--help"), "Cancel the named runs of a sweep"),
        (("data", "summary", "--help"), "each split's size"),
    ):
        proc = harness(*args)
        assert proc.returncode == 0 and needle in " ".join(proc.stdout.split()), proc.stdout


def test_bad_data_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "fer.csv"
    path.write_text("emotion,pixels,Usage\n3,1 2\n")
    out = str(tmp_path / "out")
    code, err = harness_here(
        capsys,
        "train",
        "--config",
        str(FER_SYNTH),
        "--output-dir",
        out,
        "DATASET.ROOT",
        str(path),
        "DATASET.FORMAT",
        "csv",
        "MODEL.NAME",
        "tiny_cnn",
    )
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"harness: error: {path}: row 0 (line 2) is truncated: it has 2 "
        "of the 3 fields (emotion, pixels, Usage)"
    )
    assert "Traceback" not in err


def test_launcher_errors_are_one_line_and_debug_raises(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.launcher.manifest import ManifestError

    code, err = harness_here(capsys, "status", str(tmp_path))
    assert code == 2
    assert err.strip() == (
        f"harness status: error: {tmp_path}/manifest.json not found: {tmp_path} is not a "
        "sweep directory (make one with `harness sweep SPEC`)"
    )
    with pytest.raises(ManifestError):
        harness_here(capsys, "--debug", "status", str(tmp_path))
