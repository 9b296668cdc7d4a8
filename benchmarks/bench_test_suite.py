"""P10, test suite: this tree's `make test` against an earlier commit's, on this machine, back to back.

    .venv/bin/python -m benchmarks.bench_test_suite --ref 62f4bf1 [--repeats 1]

Each round runs three sides, in an order that rotates from round to round:

- ``ref``: the earlier commit's own ``make test`` (its tests, its lane), in a git worktree
  that uses this tree's venv (``VENV=``; its code comes first on PYTHONPATH);
- ``ref_tests``: the ref's tests that still exist here under the same node ids, run by this
  tree's ``make test TEST_IDS=...`` (the same tests, today's code and lane);
- ``now``: this tree's whole ``make test``.

Every side starts with an empty TORCHINDUCTOR_CACHE_DIR, as a fresh clone in CI does, and
must pass: a failing suite's time is no figure. Reported per side: the median wall time and
the machine's busy CPU seconds (/proc/stat: the suites start many processes); ratios are the
ref's wall over each side's (above 1: faster now). Takes about 10 minutes a round on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.protocol import busy_cpu_s, emit

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
# Variables of the caller's shell that would change what either suite runs or where it keeps state.
SCRUBBED_ENV = (
    "WANDB_MODE",
    "TEST_IDS",
    "PYTEST_ADDOPTS",
    "TORCHINDUCTOR_CACHE_DIR",
    "SLURM_LOCAL_STATE",
    "VENV",
)


def collect_ids(tree: Path, env: dict[str, str]) -> list[str]:
    """The node ids pytest collects in ``tree`` (its own tests and code)."""
    out = subprocess.run(
        [str(VENV / "bin/python"), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    if not ids:
        raise RuntimeError(f"pytest collected no tests in {tree}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return ids


def ref_make_args(tree: Path) -> list[str]:
    """`make test` of the ref with this venv, refusing a Makefile that would reinstall into it
    (that would point the venv's editable install at the worktree)."""
    args = ["make", "-C", str(tree), "test", f"VENV={VENV}", f"--assume-old={VENV}/.installed-stamp"]
    dry = subprocess.run([*args, "-n"], capture_output=True, text=True, check=False).stdout
    if "pip install" in dry or "-m venv" in dry:
        raise RuntimeError(f"the ref's `make test` would install into {VENV}:\n{dry[-1500:]}")
    return args


def run_side(name: str, round_: int, args: list[str], env: dict[str, str], work: Path) -> tuple[float, float]:
    """(wall s, busy CPU s) of one passing run of ``args``; its output goes to work/<name>-<round_>.log."""
    cache = Path(tempfile.mkdtemp(prefix=f"inductor-{name}-", dir=work))
    log = work / f"{name}-{round_}.log"
    cpu0, wall0 = busy_cpu_s(), time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run(
            args, env={**env, "TORCHINDUCTOR_CACHE_DIR": str(cache)}, stdout=out, stderr=subprocess.STDOUT
        ).returncode
    wall, cpu = time.perf_counter() - wall0, busy_cpu_s() - cpu0
    if rc != 0:
        raise RuntimeError(f"side {name} failed (exit {rc}); its output ends:\n{log.read_text()[-3000:]}")
    return wall, cpu


def measure(
    ref: str, repeats: int, work: Path
) -> tuple[dict[str, Any], dict[str, list[tuple[float, float]]]]:
    """Test counts, and (wall, CPU) samples per side, from ``repeats`` rotating rounds."""
    base_env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    tree = work / "ref"
    work.chmod(0o755)  # a test runs the cluster script as user nobody, so the worktree must be readable
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True)
    try:
        ref_env = {**base_env, "PYTHONPATH": str(tree)}
        ref_ids, now_ids = collect_ids(tree, ref_env), set(collect_ids(REPO, base_env))
        ids_file = work / "ref_ids.txt"
        ids_file.write_text("\n".join(i for i in ref_ids if i in now_ids) + "\n")
        sides = {
            "ref": (ref_make_args(tree), ref_env),
            "ref_tests": (["make", "-C", str(REPO), "test", f"TEST_IDS={ids_file}"], base_env),
            "now": (["make", "-C", str(REPO), "test"], base_env),
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        order = list(sides)
        for round_ in range(repeats):
            for name in order[round_ % 3 :] + order[: round_ % 3]:
                samples[name].append(run_side(name, round_, *sides[name], work))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    gone = [i for i in ref_ids if i not in now_ids]
    counts = {"ref": len(ref_ids), "ref_tests_still_here": len(ref_ids) - len(gone), "now": len(now_ids)}
    return {"tests": counts, "ref_tests_gone": gone}, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the three sides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-test-suite-") as tmp:
        counts, samples = measure(args.ref, args.repeats, Path(tmp))
    result: dict[str, Any] = {"ref": args.ref, **counts, "repeats": args.repeats}
    for name, runs in samples.items():
        result[f"wall_s_{name}"] = round(statistics.median(w for w, _ in runs), 1)
        result[f"busy_cpu_s_{name}"] = round(statistics.median(c for _, c in runs), 1)
        result[f"walls_{name}"] = [round(w, 1) for w, _ in runs]
    result["ratio_ref_over_ref_tests"] = round(result["wall_s_ref"] / result["wall_s_ref_tests"], 3)
    result["ratio_ref_over_now"] = round(result["wall_s_ref"] / result["wall_s_now"], 3)
    emit("p10_test_suite", result)


if __name__ == "__main__":
    main()
