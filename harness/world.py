"""Where this process sits in the world, read from the environment; no torch.

The world comes from torchrun (``RANK``/``LOCAL_RANK``/``WORLD_SIZE``), Slurm
(``SLURM_PROCID``/``SLURM_LOCALID``/``SLURM_NTASKS``; also what submitit jobs see), or
nothing (a single process). Kept apart from ``harness.distributed`` (the collectives) so that
a launcher, which only decides how many processes to start and where they meet, does not pay
for importing torch.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class WorldInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"  # single | torchrun | slurm

    @property
    def distributed(self) -> bool:
        return self.source != "single"


def master_port_for_job(job_id: str) -> int:
    """A port in [15000, 35000) derived from the Slurm job id, so that concurrent
    jobs sharing a node never pick the same rendezvous port."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return 15000 + int(digits) % 20000


def expand_nodelist(nodelist: str) -> list[str]:
    """``node[1-3,7],gpu01`` -> ``[node1, node2, node3, node7, gpu01]``.

    Uses ``scontrol show hostnames`` when available, else a parser for the
    common bracket forms (keeps zero padding)."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
        if out:
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    hosts: list[str] = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", nodelist):
        if plain:
            hosts.append(plain)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            if not hi:
                hosts.append(prefix + lo)
                continue
            width = len(lo)
            hosts.extend(f"{prefix}{i:0{width}d}" for i in range(int(lo), int(hi) + 1))
    return hosts


def world_info_from_env(env: dict[str, str] | None = None) -> WorldInfo:
    """Read the world from torchrun or Slurm variables; a single process otherwise."""
    env = dict(os.environ if env is None else env)
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        return WorldInfo(
            rank=int(env["RANK"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            world_size=world,
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            source="torchrun",
        )
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        job_id = env.get("SLURM_JOB_ID", "0")
        nodes = expand_nodelist(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "")
        ntasks = int(env["SLURM_NTASKS"])
        nnodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or max(1, len(nodes)))
        return WorldInfo(
            rank=int(env["SLURM_PROCID"]),
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            world_size=ntasks,
            local_world_size=max(1, ntasks // max(1, nnodes)),
            master_addr=env.get("MASTER_ADDR") or (nodes[0] if nodes else "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT") or master_port_for_job(job_id)),
            source="slurm",
        )
    return WorldInfo()


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
