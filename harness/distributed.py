"""Joining the world, and collective helpers safe at world size 1.

Where this process sits in the world (``WorldInfo``, ``world_info_from_env``) is read by
``harness.world``, which needs no torch.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from harness.world import WorldInfo


def resolve_backend(requested: str = "auto") -> str:
    """nccl with CUDA, gloo without (detectron2's rule)."""
    if requested != "auto":
        if requested == "nccl" and not torch.cuda.is_available():
            raise RuntimeError("DIST.BACKEND nccl needs CUDA; this machine has none (use auto or gloo)")
        return requested
    return "nccl" if torch.cuda.is_available() else "gloo"


_CONTROL_GROUP: Any = None


def init_distributed(world: WorldInfo, backend: str = "auto", timeout_s: float = 600) -> torch.device:
    """Join the process group (if any) and return this process's device; every collective
    (and the rendezvous) fails after ``timeout_s`` (DIST.TIMEOUT_S) instead of waiting forever."""
    global _CONTROL_GROUP
    backend = resolve_backend(backend)
    if torch.cuda.is_available():
        # With set_cuda_visible_devices each process sees one GPU: local rank maps modulo.
        device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world.distributed and not dist.is_initialized():
        if backend == "nccl":
            # A failed or timed-out NCCL collective aborts the communicator and raises, instead of
            # hanging the stream (not exercised on CPU-only machines: gloo has no such mode).
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{world.master_addr}:{world.master_port}",
            rank=world.rank,
            world_size=world.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        # A CPU group for control flags: agreeing on them never synchronises a GPU stream.
        _CONTROL_GROUP = (
            dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
            if backend != "gloo"
            else None
        )
    return device


def destroy_distributed() -> None:
    global _CONTROL_GROUP
    if dist.is_initialized():
        dist.destroy_process_group()
    _CONTROL_GROUP = None


# ------------------------------------------------------------------ helpers
def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist() and world_size() > 1:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (a copy); the tensor itself at world size 1."""
    if not is_dist() or world_size() == 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (CPU control group)."""
    if not is_dist() or world_size() == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_CONTROL_GROUP)
    return bool(t.item())


class LaggedVote:
    """``any_rank`` without the per-step stall: each ``poll`` starts a non-blocking vote on
    this step's flag and returns the result of the vote started one poll earlier (long
    finished by then). Every rank polls at the same steps, so every rank gets the same answer
    at the same step, one step after the request. ``poll(final=True)`` votes blocking and
    leaves nothing in flight (use it before work that must not overlap a vote, like an epoch
    end). At world size 1 there is nothing to agree on: the flag is returned at once."""

    def __init__(self) -> None:
        self._pending: tuple[Any, torch.Tensor] | None = None

    def poll(self, flag: bool, final: bool = False) -> bool:
        if not is_dist() or world_size() == 1:
            return flag
        if self._pending is not None:
            work, t = self._pending
            self._pending = None
            work.wait()
            if t.item():
                return True
        if final:
            return any_rank(flag)
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        work = dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_CONTROL_GROUP, async_op=True)
        self._pending = (work, t)
        return False


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank (``[obj]`` at world size 1)."""
    if not is_dist() or world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_CONTROL_GROUP)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_dist() or world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_CONTROL_GROUP)
    return box[0]
