"""DDP with 2 gloo processes x B equals 1 process x 2B; validation counts each sample once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.config import load_config
from harness.spawn import launch
from tests.spine_helpers import FER_SYNTH, fast_opts, model_state, records


@pytest.mark.slow
def test_two_processes_equal_one_process_with_double_batch(fer_csv_root: str, tmp_path: Path) -> None:
    # tiny_cnn has no BatchNorm and dropout is off, so the two runs see the same function;
    # the sampler gives rank r the samples r, r+2, ... of the single run's batch.
    common = dict(
        TRAIN__EPOCHS=1,
        TRAIN__MAX_STEPS_PER_EPOCH=3,
        TRAIN__LR_SCALING="none",
        MODEL__DROPOUT=0.0,
        LOG__WANDB__MODE="disabled",
    )
    single = load_config(
        FER_SYNTH,
        fast_opts(fer_csv_root, tmp_path, RUN_NAME="single", TRAIN__BATCH_SIZE_PER_GPU=16, **common),
    )
    ddp = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="ddp",
            DIST__STRATEGY="ddp",
            DIST__GPUS=2,
            TRAIN__BATCH_SIZE_PER_GPU=8,
            **common,
        ),
    )
    assert launch(single) == "completed"
    assert launch(ddp) == "completed"
    a, b = model_state(tmp_path / "single"), model_state(tmp_path / "ddp")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"parameter {key}")
    # The parameters did move: the comparison is not between two untouched inits.
    init = load_config(FER_SYNTH, fast_opts(fer_csv_root, tmp_path))
    torch.manual_seed(init.SEED)
    from efficientnet.model import build_fer_model

    fresh = build_fer_model(init).state_dict()
    assert any(not torch.allclose(fresh[k], a[k]) for k in a)
    la = [r["train/loss"] for r in records(tmp_path / "single", "train")]
    lb = [r["train/loss"] for r in records(tmp_path / "ddp", "train")]
    assert la == pytest.approx(lb, rel=1e-5)


def _evaluate(cfg, world: int, rank: int) -> dict:
    from harness.data import InferenceSampler, build_loader
    from harness.tasks import get_task

    task = get_task("fer")(cfg)
    _, val = task.build_datasets()
    torch.manual_seed(0)
    model = task.build_model().eval()
    loader = build_loader(
        val,
        InferenceSampler(len(val), world, rank),
        batch_size=7,
        num_workers=0,
        pin_memory=False,
        prefetch_factor=2,
        persistent_workers=False,
        drop_last=False,
    )
    evaluator = task.build_evaluator(val)
    with torch.no_grad():
        for batch in loader:
            batch = task.prepare_batch(batch, torch.device("cpu"))
            evaluator.process(batch, model(batch["input"]))
    return evaluator.evaluate()


def _evaluate_worker(rank: int, world: int, cfg, out: str) -> None:
    torch.set_num_threads(1)
    from harness import distributed as du
    from harness.world import world_info_from_env

    du.init_distributed(world_info_from_env(), "gloo")
    metrics = _evaluate(cfg, world, rank)
    if rank == 0:
        torch.save(metrics, out)
    du.destroy_distributed()


@pytest.mark.slow
def test_distributed_validation_equals_single_process(fer_csv_root: str, tmp_path: Path) -> None:
    from harness.local_ranks import start_local_ranks

    cfg = load_config(FER_SYNTH, fast_opts(fer_csv_root, tmp_path))
    ref = _evaluate(cfg, world=1, rank=0)
    out = str(tmp_path / "metrics.pt")
    start_local_ranks(_evaluate_worker, (3, cfg, out), 3)
    got = torch.load(out, weights_only=False)
    # 3 ranks over a set whose size is not a multiple of 3: no padded duplicates are counted.
    assert ref["samples"] % 3 != 0
    assert got["samples"] == ref["samples"]
    assert got["accuracy"] == ref["accuracy"] and got["confusion"] == ref["confusion"]
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-6)
