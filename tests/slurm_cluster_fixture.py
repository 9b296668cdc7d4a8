"""Session fixtures that bring up the real local Slurm cluster of `slurm/local-cluster.sh`.

One cluster serves the whole session: the manager brings up the 2-node cluster (node1 and
node2 in network namespaces), which also runs every 1-node job, so the fixtures never
have to switch clusters under tests that already hold one.  If the 2-node cluster cannot
come up, `slurm_cluster` falls back to a 1-node cluster and `slurm_cluster_2nodes`
skips.  `SLURM_LOCAL_TEST_NODES=1` asks for the 1-node cluster from the start.

A cluster that is already up in the state dir (e.g. started by CI before `make test`) is
used as it is and left running.  A cluster that the fixtures started is brought down at
the end of the last pytest session using it: concurrent sessions register a lease file
each, so one session's teardown never pulls the cluster from under another; with
`SLURM_LOCAL_KEEP_UP=1` a session leaves the cluster it started to the next session, which
brings it down (`make test` runs its parallel and its serial session so).

Where Slurm cannot run (not root, apt fails, daemons fail), the fixtures skip with the
reason; with `CI=true` they fail instead, because CI has to exercise Slurm.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.local_ranks import pid_alive

REPO_DIR = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO_DIR / "slurm" / "local-cluster.sh"
# Installing packages plus bringing the daemons up; the script's own waits are 60 s each.
UP_TIMEOUT_S = 600
DOWN_TIMEOUT_S = 180
STARTED_BY_FIXTURE_MARKER = "started-by-pytest"
LEASE_DIR_NAME = "pytest-leases"
# Set by `make test` for its first session: the cluster that session started stays up for the
# serial session after it, which brings it down (saves a down and an up).
KEEP_UP_ENV = "SLURM_LOCAL_KEEP_UP"


@dataclass(frozen=True)
class LocalSlurmCluster:
    """A running local cluster, as the tests see it."""

    state_dir: Path
    env: dict[str, str]
    partition: str
    nodes: tuple[str, ...]
    cluster_name: str = "local"
    info: dict[str, str] = field(default_factory=dict)

    def subprocess_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """os.environ plus this cluster's Slurm variables, for `subprocess.run(env=...)`."""
        return {**os.environ, **self.env, **(extra or {})}

    def run(self, *command: str, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """Run a Slurm client command (sbatch, sacct, ...) against this cluster."""
        result = subprocess.run(
            list(command),
            env=self.subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result


def default_state_dir() -> Path:
    """The script's default: ``<repo>/.slurm-local``, or ``/tmp/slurm-local-<hash>``
    when that path is too long for Slurm's Unix sockets."""
    if os.environ.get("SLURM_LOCAL_STATE"):
        return Path(os.environ["SLURM_LOCAL_STATE"])
    local = REPO_DIR / ".slurm-local"
    if len(str(local)) <= 60:
        return local
    return Path("/tmp") / f"slurm-local-{hashlib.md5(str(REPO_DIR).encode()).hexdigest()[:8]}"


def read_cluster_env(state_dir: Path) -> dict[str, str]:
    """The KEY=VALUE facts `local-cluster.sh up` recorded (ports, nodes, SLURM_CONF)."""
    facts: dict[str, str] = {}
    path = state_dir / "cluster.env"
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        facts[key] = value.strip('"')
    return facts


def run_cluster_script(
    command: str, state_dir: Path, *args: str, timeout_s: float
) -> subprocess.CompletedProcess:
    """Runs `slurm/local-cluster.sh COMMAND --state-dir STATE_DIR ARGS...`, capturing its output."""
    return subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), command, "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"local Slurm cluster unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"local Slurm cluster unavailable: {reason}")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class _ClusterManager:
    """Brings one cluster up for the session and down when the last user leaves."""

    def __init__(self) -> None:
        self.state_dir = default_state_dir()
        self.cluster: LocalSlurmCluster | None = None
        self.failure: str | None = None
        self.two_node_failure: str | None = None
        self.users = 0

    def _lock(self):
        lock_path = Path(tempfile.gettempdir()) / "slurm-local-pytest.lock"
        handle = open(lock_path, "w")  # closed, and so unlocked, by the caller's with block
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    def _is_up(self) -> bool:
        if not (self.state_dir / "cluster.env").exists():
            return False
        return run_cluster_script("status", self.state_dir, timeout_s=60).returncode == 0

    def _describe(self) -> LocalSlurmCluster:
        facts = read_cluster_env(self.state_dir)
        return LocalSlurmCluster(
            state_dir=self.state_dir,
            env={"SLURM_CONF": facts["SLURM_CONF"], "SLURM_LOCAL_STATE": str(self.state_dir)},
            partition=facts["PARTITION"],
            nodes=tuple(facts["NODE_NAMES"].split()),
            cluster_name=facts["CLUSTER_NAME"],
            info=facts,
        )

    def _bring_up(self, nodes: int) -> str | None:
        """Runs `up`; returns None on success, else the reason."""
        try:
            result = run_cluster_script("up", self.state_dir, "--nodes", str(nodes), timeout_s=UP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"`local-cluster.sh up --nodes {nodes}` did not finish in {UP_TIMEOUT_S}s"
        if result.returncode != 0:
            return (
                f"`local-cluster.sh up --nodes {nodes}` exited {result.returncode}:\n"
                f"{_tail(result.stdout + result.stderr)}"
            )
        (self.state_dir / STARTED_BY_FIXTURE_MARKER).write_text(f"{os.getpid()}\n")
        return None

    def _start_or_reuse(self) -> None:
        if self._is_up():
            return
        preferred = int(os.environ.get("SLURM_LOCAL_TEST_NODES", "2"))
        reason = self._bring_up(preferred)
        if reason is not None and preferred == 2:
            self.two_node_failure = reason
            reason = self._bring_up(1)
        if reason is not None:
            self.failure = reason

    def acquire(self, min_nodes: int) -> LocalSlurmCluster:
        if self.cluster is None and self.failure is None:
            with self._lock():
                self._start_or_reuse()
                if self.failure is None:
                    self.cluster = self._describe()
                    lease_dir = self.state_dir / LEASE_DIR_NAME
                    lease_dir.mkdir(exist_ok=True)
                    (lease_dir / str(os.getpid())).touch()
        if self.failure is not None:
            _unavailable(self.failure)
        assert self.cluster is not None
        if len(self.cluster.nodes) < min_nodes:
            _unavailable(
                self.two_node_failure
                or (
                    f"the local cluster in {self.state_dir} has {len(self.cluster.nodes)} node(s); "
                    f"{min_nodes}-node tests need `slurm/local-cluster.sh up --nodes {min_nodes}`"
                )
            )
        self.users += 1
        return self.cluster

    def release(self) -> None:
        self.users -= 1
        if self.users > 0 or self.cluster is None:
            return
        with self._lock():
            lease_dir = self.state_dir / LEASE_DIR_NAME
            (lease_dir / str(os.getpid())).unlink(missing_ok=True)
            others = [p for p in lease_dir.glob("*") if p.name.isdigit() and pid_alive(int(p.name))]
            if others or not (self.state_dir / STARTED_BY_FIXTURE_MARKER).exists():
                return
            if os.environ.get(KEEP_UP_ENV) == "1":  # a later session of the same `make test` takes it over
                return
            result = run_cluster_script("down", self.state_dir, timeout_s=DOWN_TIMEOUT_S)
            if result.returncode != 0:
                raise RuntimeError(f"`local-cluster.sh down` failed:\n{_tail(result.stdout + result.stderr)}")
        self.cluster = None


_MANAGER = _ClusterManager()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalSlurmCluster]:
    """A running local Slurm cluster with at least one node (partition `debug`)."""
    cluster = _MANAGER.acquire(min_nodes=1)
    try:
        yield cluster
    finally:
        _MANAGER.release()


@pytest.fixture(scope="session")
def slurm_cluster_2nodes() -> Iterator[LocalSlurmCluster]:
    """A running local Slurm cluster with two nodes, node1 and node2, in network namespaces."""
    cluster = _MANAGER.acquire(min_nodes=2)
    try:
        yield cluster
    finally:
        _MANAGER.release()
