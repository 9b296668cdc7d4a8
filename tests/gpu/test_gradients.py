"""dp on every visible GPU and NCCL DDP give the gradients of one GPU with the same global batch;
SyncBN over 2 ranks equals BatchNorm over the whole batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.gpu.helpers import batch, ddp_worker, gradients, skip_without_cuda, tiny_cnn

skip_without_cuda()
pytestmark = pytest.mark.gpu


def _single_gpu(global_batch: int, norm: str = "none") -> tuple[nn.Module, list[torch.Tensor]]:
    model = tiny_cnn(norm=norm).cuda(0)
    x, y = batch(global_batch)
    nn.functional.cross_entropy(model(x.cuda(0)), y.cuda(0)).backward()
    return model, gradients(model)


def test_dp_on_all_visible_gpus_matches_one_gpu() -> None:
    gpus = torch.cuda.device_count()
    global_batch = 8 * gpus
    _, reference = _single_gpu(global_batch)
    model = tiny_cnn().cuda(0)
    dp = nn.DataParallel(model, device_ids=list(range(gpus)))
    x, y = batch(global_batch)
    nn.functional.cross_entropy(dp(x.cuda(0)), y.cuda(0)).backward()
    for ours, ref in zip(gradients(model), reference, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("norm", ["none", "bn"], ids=["ddp", "syncbn"])
def test_nccl_ddp_two_ranks_match_one_gpu_with_twice_the_batch(norm: str, tmp_path: Path) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("NCCL DDP equivalence needs 2 CUDA devices")
    import torch.multiprocessing as mp

    per_rank = 8
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "init"), per_rank, norm, str(tmp_path)), nprocs=2)
    ddp = torch.load(tmp_path / "ddp.pt")
    model, reference = _single_gpu(2 * per_rank, norm)
    for ours, ref in zip(ddp["grads"], reference, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    if norm == "bn":  # SyncBN's running statistics are those of the whole global batch
        for ours, ref in zip(ddp["buffers"], [b.cpu() for b in model.buffers()], strict=True):
            torch.testing.assert_close(ours.float(), ref.float(), rtol=1e-4, atol=1e-6)
