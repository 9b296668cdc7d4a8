"""`make test TEST_IDS=FILE`: both sessions run only the listed node ids (benchmarks/bench_test_suite.py
runs an older commit's tests so)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One id whose parameter holds spaces and regex characters: pytest's @file takes one argument a line.
IDS = [
    "tests/test_config.py::test_bad_values_fail_at_load_with_the_key[opts0-TRAIN\\\\.LR.*expects float]",
    "tests/test_imports.py::test_cycle_finder_finds_a_cycle",
]


def _pytest_lines(*make_args: str) -> list[str]:
    out = subprocess.run(
        ["make", "-n", "-C", str(REPO), "test", *make_args], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if "-m pytest" in line]


def test_test_ids_selects_in_both_sessions_and_leaves_no_cluster_up(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    parallel, serial = _pytest_lines(f"TEST_IDS={ids}")
    assert f"@{ids}" in parallel and "SLURM_LOCAL_KEEP_UP=0" in parallel
    assert f"@{ids}" in serial and "tests/" not in serial

    parallel, serial = _pytest_lines()
    assert "@" not in parallel and "SLURM_LOCAL_KEEP_UP=1" in parallel
    assert "tests/test_commbench_slurm.py" in serial


def test_an_ids_file_collects_exactly_its_tests(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(IDS) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", f"@{ids}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [line for line in out.splitlines() if "::" in line] == IDS
