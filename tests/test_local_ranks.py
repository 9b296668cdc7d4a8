"""Local ranks (harness.local_ranks): forked from a fork server on a machine without GPUs,
yet each launch's ranks see that launch's environment and directory; a rank learns of its
launcher's death even when its parent is the fork server; the local scheduler answers
"no GPUs" without importing torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.devices import gpu_driver_present
from harness.local_ranks import RankExited, RankRaised, rank_start_method, start_local_ranks
from harness.rundir import atomic_write_text
from tests.faults.helpers import pid_gone, wait_for
from tests.spine_helpers import REPO


def _report(local_rank: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    value = [None] * dist.get_world_size()
    dist.all_gather_object(value, local_rank)
    dist.destroy_process_group()
    record = {
        "rank": int(os.environ["RANK"]),
        "world": int(os.environ["WORLD_SIZE"]),
        "tag": os.environ.get("HARNESS_TEST_TAG"),
        "cwd": os.getcwd(),
        "ppid": os.getppid(),
        "gathered": value,
    }
    Path(out, f"rank{local_rank}.json").write_text(json.dumps(record))


def _fail_rank1(local_rank: int, how: str, out: str) -> None:
    peer = Path(out, "peer.pid")
    if local_rank == 0:  # the healthy peer: runs until the launcher stops it
        atomic_write_text(peer, str(os.getpid()))
        time.sleep(120)
        return
    wait_for(peer.exists, 30, "the peer rank to start")
    if how == "raise":
        raise ValueError("rank 1 gave up")
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize(
    "how, error, says",
    [
        ("raise", RankRaised, "ValueError: rank 1 gave up"),
        ("exit", RankExited, "rank 1 terminated with exit code 3"),
        ("kill", RankExited, "rank 1 terminated with signal SIGKILL"),
    ],
)
def test_a_failed_rank_is_named_and_its_peer_stopped(
    how: str, error: type, says: str, tmp_path: Path
) -> None:
    group = start_local_ranks(_fail_rank1, (how, str(tmp_path)), 2, join=False)
    with pytest.raises(error) as failure:
        while not group.join(timeout=1, grace_period=0.5):
            pass
    assert failure.value.error_index == 1 and says in str(failure.value)
    assert failure.value.error_pid == group.processes[1].pid
    if isinstance(failure.value, RankExited):
        assert failure.value.exit_code == {"exit": 3, "kill": -signal.SIGKILL}[how]
    # The peer did not finish its sleep: SIGTERM after the grace period.
    assert group.processes[0].exitcode == -signal.SIGTERM
    assert group.join() is True  # nothing left to wait for


def _wait_for_go(local_rank: int, go: str) -> None:
    wait_for(Path(go).exists, 60, "the test's go")


def test_join_is_false_while_ranks_run_and_true_once_all_exit_zero(tmp_path: Path) -> None:
    group = start_local_ranks(_wait_for_go, (str(tmp_path / "go"),), 2, join=False)
    assert group.join(timeout=0.5) is False
    (tmp_path / "go").write_text("")
    while not group.join(timeout=1):
        pass
    assert [p.exitcode for p in group.processes] == [0, 0]


@pytest.mark.skipif(gpu_driver_present(), reason="a GPU machine starts ranks with spawn")
def test_each_launch_sees_its_own_environment_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rank_start_method() == "forkserver"
    seen = []
    for tag in ("first", "second"):  # the second launch reuses the fork server of the first
        out = tmp_path / tag
        out.mkdir()
        monkeypatch.setenv("HARNESS_TEST_TAG", tag)
        monkeypatch.chdir(out)
        start_local_ranks(_report, (str(out),), 2)
        records = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["rank"] for r in records] == [0, 1] and all(r["world"] == 2 for r in records)
        assert all(r["tag"] == tag and r["cwd"] == str(out) for r in records), records
        assert all(r["gathered"] == [0, 1] for r in records)
        seen.append({r["ppid"] for r in records})
    assert seen[0] == seen[1] and os.getpid() not in seen[0]  # children of one fork server


def test_the_environment_chooses_the_start_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_RANK_START", "spawn")
    assert rank_start_method() == "spawn"
    monkeypatch.setenv("HARNESS_RANK_START", "fork")
    with pytest.raises(ValueError, match="HARNESS_RANK_START is 'fork'; choose spawn or forkserver"):
        rank_start_method()


def test_die_with_process_signals_when_a_process_other_than_the_parent_ends(tmp_path: Path) -> None:
    """A forked rank's parent is the fork server, which outlives the launcher: the rank
    watches the launcher's pid itself (pidfd)."""
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    got, ready = tmp_path / "got", tmp_path / "ready"
    child_code = (
        "import pathlib, signal, sys, time\n"
        "from harness.local_ranks import die_with_process\n"
        "from harness.rundir import atomic_write_text\n"
        "def on(s, f):\n"
        f"    atomic_write_text({str(got)!r}, signal.Signals(s).name); sys.exit(0)\n"  # whole or absent
        "signal.signal(signal.SIGUSR2, on)\n"
        f"die_with_process({watched.pid}, signal.SIGUSR2)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(300)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", child_code], cwd=REPO)
    try:
        wait_for(ready.exists, 60, "the child to watch the process")
        assert not got.exists()
        watched.kill()
        watched.wait(timeout=10)
        wait_for(got.exists, 20, "the signal after the watched process ended")
        assert got.read_text() == "SIGUSR2"
        wait_for(lambda: pid_gone(child.pid), 20, "the child to exit")
    finally:
        for proc in (watched, child):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)


def test_die_with_process_of_a_pid_already_gone_signals_at_once(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    code = (
        "import signal, sys\n"
        "from harness.local_ranks import die_with_process\n"
        "from harness.rundir import atomic_write_text\n"
        "signal.signal(signal.SIGUSR2, lambda s, f: sys.exit(7))\n"
        f"die_with_process({gone.pid}, signal.SIGUSR2)\n"
        "import time; time.sleep(30)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert proc.returncode == 7


@pytest.mark.skipif(gpu_driver_present(), reason="a GPU machine asks torch")
def test_local_scheduler_finds_no_gpu_without_importing_torch() -> None:
    code = (
        "import sys, os\n"
        "os.environ.pop('CUDA_VISIBLE_DEVICES', None)\n"
        "from harness.launcher.local_queue import visible_gpus\n"
        "assert visible_gpus() == []\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_a_rank_that_cannot_start_leaves_no_rank_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second rank's start fails (as on a full process table): the first, already running,
    is stopped before the error reaches the caller."""
    import multiprocessing.process

    started = []
    real_start = multiprocessing.process.BaseProcess.start

    def start_once(process: multiprocessing.process.BaseProcess) -> None:
        if started:
            raise OSError("fork: Resource temporarily unavailable")
        real_start(process)
        started.append(process)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start_once)
    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        start_local_ranks(_wait_for_go, (str(tmp_path / "go"),), 2)
    assert len(started) == 1 and started[0].exitcode == -signal.SIGTERM
