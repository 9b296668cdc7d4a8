"""Real jobs on the local Slurm cluster of slurm/local-cluster.sh (see tests/slurm_cluster_fixture.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.slurm_cluster_fixture import (
    CLUSTER_SCRIPT,
    LocalSlurmCluster,
    read_cluster_env,
    run_cluster_script,
)

JOB_TIMEOUT_S = 120
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def submit(cluster: LocalSlurmCluster, *sbatch_args: str) -> str:
    result = cluster.run("sbatch", "--parsable", *sbatch_args)
    return result.stdout.strip().split(";")[0]


def sacct_state(cluster: LocalSlurmCluster, job_id: str) -> str:
    out = cluster.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State").stdout.split()
    return out[0].split()[0] if out else ""


def wait_for_state(cluster: LocalSlurmCluster, job_id: str, states: set[str]) -> str:
    """Polls sacct (accounting lags the job end slightly) until the job reaches one of `states`."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        state = sacct_state(cluster, job_id)
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {state or 'unknown'} after {JOB_TIMEOUT_S}s")


def wait_for_text(path: Path, text: str) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.3)
    content = path.read_text() if path.exists() else "<no file>"
    raise AssertionError(f"{text!r} never appeared in {path}:\n{content}")


def test_env_and_status_describe_the_running_cluster(slurm_cluster: LocalSlurmCluster) -> None:
    env_out = run_cluster_script("env", slurm_cluster.state_dir, timeout_s=30).stdout
    assert f"export SLURM_CONF={slurm_cluster.env['SLURM_CONF']}" in env_out
    status = run_cluster_script("status", slurm_cluster.state_dir, timeout_s=60)
    assert status.returncode == 0, status.stdout + status.stderr
    # Nodes up and answering: idle, or busy with another xdist worker's jobs on this cluster.
    assert "slurmctld" in status.stdout, status.stdout
    assert re.search(r"\b(idle|mix|alloc|comp)\b", status.stdout), status.stdout
    # `up` on a running cluster is a no-op that succeeds.
    again = run_cluster_script(
        "up", slurm_cluster.state_dir, "--nodes", str(len(slurm_cluster.nodes)), timeout_s=60
    )
    assert again.returncode == 0 and "already up" in again.stderr
    ports = read_cluster_env(slurm_cluster.state_dir)
    assert len({ports[k] for k in ("SLURMCTLD_PORT", "SLURMD_PORT", "SLURMDBD_PORT", "MARIADB_PORT")}) == 4


def test_sbatch_wrap_job_completes_in_sacct(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    job_id = submit(slurm_cluster, f"--output={out}", "--wrap", "echo hello from $SLURM_JOB_ID")
    assert wait_for_state(slurm_cluster, job_id, TERMINAL_STATES) == "COMPLETED"
    assert out.read_text().strip() == f"hello from {job_id}"


def test_submitit_style_resource_requests_are_accepted(
    slurm_cluster: LocalSlurmCluster, tmp_path: Path
) -> None:
    out = tmp_path / "job.out"
    job_id = submit(
        slurm_cluster,
        f"--output={out}",
        f"--partition={slurm_cluster.partition}",
        "--nodes=1",
        "--ntasks-per-node=1",
        f"--cpus-per-task={os.cpu_count()}",
        "--mem=2G",
        "--gpus-per-node=0",
        "--time=5",
        "--signal=USR2@90",
        "--wrap",
        f"srun {sys.executable} -c 'import sys; print(sys.prefix)'",
    )
    assert wait_for_state(slurm_cluster, job_id, TERMINAL_STATES) == "COMPLETED"
    # The job sees the repository's virtual environment: same filesystem, same python.
    assert out.read_text().strip() == sys.prefix


def test_scancel_signal_reaches_the_job_step(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    # Like submitit, the work runs in an srun step; scancel --signal goes to the steps.
    step = (
        'trap "echo got USR2; exit 0" USR2; echo ready; '
        'for i in $(seq 600); do sleep 0.1; done; echo no signal'
    )
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\nsrun bash -c '{step}'\n")
    job_id = submit(slurm_cluster, f"--output={out}", str(script))
    wait_for_text(out, "ready")
    slurm_cluster.run("scancel", "--signal=USR2", job_id)
    assert wait_for_state(slurm_cluster, job_id, TERMINAL_STATES) == "COMPLETED"
    assert "got USR2" in out.read_text() and "no signal" not in out.read_text()


def test_scontrol_requeue_runs_the_job_again(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    job_id = submit(
        slurm_cluster,
        f"--output={out}",
        "--open-mode=append",
        "--wrap",
        'echo "run $SLURM_RESTART_COUNT"; [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] || sleep 60',
    )
    wait_for_text(out, "run")
    slurm_cluster.run("scontrol", "requeue", job_id)
    assert wait_for_state(slurm_cluster, job_id, TERMINAL_STATES) == "COMPLETED"
    assert "run 1" in out.read_text()


ALL_REDUCE = """
import os, socket, subprocess
import torch
import torch.distributed as dist

nodes = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                       capture_output=True, text=True, check=True).stdout.split()
os.environ["MASTER_ADDR"] = nodes[0]
os.environ["MASTER_PORT"] = str(20000 + int(os.environ["SLURM_JOB_ID"]) % 10000)
rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
dist.init_process_group("gloo", rank=rank, world_size=world)
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
print(f"rank={rank} host={socket.gethostname()} sum={value.item()}", flush=True)
dist.destroy_process_group()
"""


def test_two_node_gloo_all_reduce(slurm_cluster_2nodes: LocalSlurmCluster, tmp_path: Path) -> None:
    program = tmp_path / "all_reduce.py"
    program.write_text(ALL_REDUCE)
    out = tmp_path / "job.out"
    job_id = submit(
        slurm_cluster_2nodes,
        "--nodes=2",
        "--ntasks-per-node=1",
        f"--output={out}",
        "--wrap",
        f"srun {sys.executable} {program}",
    )
    state = wait_for_state(slurm_cluster_2nodes, job_id, TERMINAL_STATES)
    text = out.read_text()
    assert state == "COMPLETED", text
    results = re.findall(r"rank=(\d) host=(\S+) sum=(\S+)", text)
    assert sorted(rank for rank, _, _ in results) == ["0", "1"], text
    assert {host for _, host, _ in results} == set(slurm_cluster_2nodes.nodes)
    assert {total for _, _, total in results} == {"3.0"}


def test_up_then_down_leaves_nothing_behind(slurm_cluster: LocalSlurmCluster, tmp_path: Path) -> None:
    # A second, 1-node cluster in its own state dir: its own ports, munged and database.
    # Not under tmp_path: Slurm's Unix socket paths limit the state dir to 60 characters.
    parent = Path(tempfile.mkdtemp(prefix="slurm-second-", dir="/tmp"))
    state_dir = parent / "state"
    up = run_cluster_script("up", state_dir, "--nodes", "1", timeout_s=300)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        conf = str(state_dir / "etc" / "slurm.conf")
        second = LocalSlurmCluster(
            state_dir=state_dir, env={"SLURM_CONF": conf}, partition="debug", nodes=(os.uname().nodename,)
        )
        job_id = submit(second, f"--output={tmp_path / 'second.out'}", "--wrap", "echo second")
        assert wait_for_state(second, job_id, TERMINAL_STATES) == "COMPLETED"
    finally:
        down = run_cluster_script("down", state_dir, timeout_s=180)
        shutil.rmtree(parent, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not state_dir.exists()
    leftovers = subprocess.run(["pgrep", "-a", "-f", str(state_dir)], capture_output=True, text=True).stdout
    assert leftovers == ""
    # The fixture's cluster is untouched.
    assert run_cluster_script("status", slurm_cluster.state_dir, timeout_s=60).returncode == 0
    # `down` of a cluster that is not up succeeds.
    assert run_cluster_script("down", state_dir, timeout_s=60).returncode == 0


def _kill_daemons_and_forget(state_dir: Path) -> None:
    """What a killed session leaves: no daemons, no state dir, but its network and hosts lines."""
    for pid_file in (state_dir / "run").glob("*.pid"):
        pid = pid_file.read_text().strip()
        if pid.isdigit():
            subprocess.run(["kill", "-9", pid], capture_output=True)
    time.sleep(0.5)
    shutil.rmtree(state_dir)


def test_second_two_node_cluster_runs_beside_the_first_and_reclaims_its_leftovers(
    slurm_cluster_2nodes: LocalSlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another checkout's 2-node cluster (another state dir) must not block this one: the
    # network, namespaces, node names and subnet are derived from the state dir.
    parent = Path(tempfile.mkdtemp(prefix="slurm-2nd-", dir="/tmp"))
    state_dir = parent / "state"
    # A shell that limits its OpenMP threads still gets nodes with every core (nproc alone
    # would answer 1 here).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        up = run_cluster_script("up", state_dir, "--nodes", "2", timeout_s=300)
        assert up.returncode == 0, up.stdout + up.stderr
        facts = read_cluster_env(state_dir)
        second = LocalSlurmCluster(
            state_dir=state_dir,
            env={"SLURM_CONF": facts["SLURM_CONF"]},
            partition="debug",
            nodes=tuple(facts["NODE_NAMES"].split()),
        )
        assert len(second.nodes) == 2 and not set(second.nodes) & set(slurm_cluster_2nodes.nodes)
        assert facts["NET_PREFIX"] != slurm_cluster_2nodes.info["NET_PREFIX"]
        out = tmp_path / "hosts.out"
        job_id = submit(
            second, "--nodes=2", "--ntasks-per-node=1", f"--output={out}", "--wrap", "srun hostname"
        )
        assert wait_for_state(second, job_id, TERMINAL_STATES) == "COMPLETED", out.read_text()
        assert set(out.read_text().split()) == set(second.nodes)
        node_cpus = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%c"],
            env={**os.environ, **second.env},
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split()
        assert set(node_cpus) == {str(len(os.sched_getaffinity(0)))}, node_cpus

        _kill_daemons_and_forget(state_dir)
        again = run_cluster_script("up", state_dir, "--nodes", "2", timeout_s=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "left over by this state dir" in again.stderr
    finally:
        down = run_cluster_script("down", state_dir, timeout_s=180)
        shutil.rmtree(parent, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert str(state_dir) not in Path("/etc/hosts").read_text()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    prefix = second.nodes[0].removesuffix("-node1").removeprefix("sl")
    assert f"slurmlocal-{prefix}-" not in namespaces
    assert subprocess.run(["pgrep", "-a", "-f", str(state_dir)], capture_output=True, text=True).stdout == ""
    assert run_cluster_script("status", slurm_cluster_2nodes.state_dir, timeout_s=60).returncode == 0


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=30)


def test_script_rejects_bad_arguments() -> None:
    result = run_script("up", "--nodes", "3")
    assert result.returncode == 2 and "--nodes must be 1 or 2" in result.stderr
    result = run_script("reboot")
    assert result.returncode == 2 and "unknown command 'reboot'" in result.stderr
    result = run_script("up", "--state-dir", "/tmp/" + "x" * 60)
    assert result.returncode == 2 and "at most 60 fit" in result.stderr


def test_up_as_an_ordinary_user_exits_3(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        result = run_script("up", "--state-dir", str(tmp_path / "state"))
    else:
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        command = [*nobody, "bash", str(CLUSTER_SCRIPT), "up", "--state-dir", "/tmp/slurm-as-nobody"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 3, result.stderr
    assert "needs root" in result.stderr
