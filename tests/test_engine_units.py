"""Unit tests of the engine's parts: world discovery, samplers, LR rules, precision,
gradient accumulation, pretrained weights, atomic files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.config import load_config
from harness.data import InferenceSampler, TrainSampler
from harness.optim import LRSchedule, build_optimizer, scaled_lr
from harness.world import expand_nodelist, master_port_for_job, world_info_from_env
from tests.spine_helpers import FER_SYNTH


def test_world_from_torchrun_and_slurm_env() -> None:
    assert not world_info_from_env({}).distributed
    tr = world_info_from_env(
        {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "h1", "MASTER_PORT": "1234"}
    )
    assert (tr.rank, tr.local_rank, tr.world_size, tr.master_addr, tr.master_port, tr.source) == (
        3,
        1,
        4,
        "h1",
        1234,
        "torchrun",
    )
    env = {
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_JOB_ID": "123456",
    }
    sl = world_info_from_env(env)
    assert (sl.rank, sl.local_rank, sl.world_size, sl.local_world_size, sl.source) == (5, 1, 8, 4, "slurm")
    assert sl.master_addr == "gpu07" and sl.master_port == master_port_for_job("123456")
    # A single Slurm task is a single process, not a world of one waiting for peers.
    assert not world_info_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).distributed


def test_ports_differ_between_concurrent_jobs() -> None:
    ports = {master_port_for_job(str(j)) for j in range(1000, 1100)}
    assert len(ports) == 100 and all(15000 <= p < 35000 for p in ports)


@pytest.mark.slow
@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node1", ["node1"]),
        ("node[1-3]", ["node1", "node2", "node3"]),
        ("gpu[01-02,07],cpu5", ["gpu01", "gpu02", "gpu07", "cpu5"]),
    ],
)
def test_expand_nodelist(nodelist: str, hosts: list[str]) -> None:
    assert expand_nodelist(nodelist) == hosts


def test_train_sampler_shards_skips_and_weights() -> None:
    full = list(TrainSampler(20, 1, 0, seed=3))
    assert sorted(i for _, i in full) == list(range(20)) and {e for e, _ in full} == {0}
    r0, r1 = list(TrainSampler(20, 2, 0, seed=3)), list(TrainSampler(20, 2, 1, seed=3))
    order = [i for _, i in full]
    assert [i for _, i in r0] == order[0::2] and [i for _, i in r1] == order[1::2]
    resumed = TrainSampler(20, 2, 0, seed=3)
    resumed.set_position(0, 4)
    assert list(resumed) == r0[4:] and list(resumed) == r0  # skipping applies to one pass only
    s = TrainSampler(20, 1, 0, seed=3)
    s.set_epoch(1)
    assert [i for _, i in s] != [i for _, i in full] and all(e == 1 for e, _ in s)
    weights = torch.tensor([0.0] * 10 + [1.0] * 10, dtype=torch.float64)
    assert all(i >= 10 for _, i in TrainSampler(20, 1, 0, seed=0, weights=weights))


def test_inference_sampler_covers_each_index_once() -> None:
    shards = [list(InferenceSampler(10, 3, r)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))


def _cfg(*opts: str):
    return load_config(FER_SYNTH, ["DATASET.ROOT", "unused", *opts])


def test_lr_scaling_warmup_and_schedules() -> None:
    linear = _cfg(
        "TRAIN.LR",
        "0.1",
        "TRAIN.LR_BASE_BATCH",
        "64",
        "TRAIN.LR_SCALING",
        "linear",
        "DIST.STRATEGY",
        "ddp",
        "DIST.GPUS",
        "4",
        "TRAIN.BATCH_SIZE_PER_GPU",
        "32",
    )
    assert scaled_lr(linear) == pytest.approx(0.2)
    sqrt = _cfg(
        "TRAIN.LR",
        "0.1",
        "TRAIN.LR_BASE_BATCH",
        "32",
        "TRAIN.LR_SCALING",
        "sqrt",
        "DIST.STRATEGY",
        "dp",
        "DIST.GPUS",
        "1",
        "TRAIN.BATCH_SIZE_PER_GPU",
        "128",
    )
    assert scaled_lr(sqrt) == pytest.approx(0.2)
    multi = _cfg(
        "TRAIN.SCHEDULER",
        "multistep",
        "TRAIN.LR_STEP",
        "[2, 3]",
        "TRAIN.EPOCHS",
        "4",
        "TRAIN.WARMUP_EPOCHS",
        "1.0",
        "TRAIN.LR_FACTOR",
        "0.1",
    )
    sched = LRSchedule(multi, 1.0, steps_per_epoch=10)
    assert sched.lr_at(0, 0) == pytest.approx(0.1) and sched.lr_at(0, 9) == pytest.approx(1.0)
    assert [sched.lr_at(e, 0) for e in (1, 2, 3)] == pytest.approx([1.0, 0.1, 0.01])
    cos = LRSchedule(
        _cfg("TRAIN.SCHEDULER", "cosine", "TRAIN.EPOCHS", "4", "TRAIN.WARMUP_EPOCHS", "0.0"), 1.0, 10
    )
    assert cos.lr_at(0, 0) == pytest.approx(1.0) and cos.lr_at(2, 0) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["sgd", "sgd_nesterov", "adam", "adamw", "adagrad", "adadelta", "rmsprop"])
def test_every_optimizer_builds_and_steps(name: str) -> None:
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(_cfg("TRAIN.OPTIMIZER", name, "TRAIN.WD", "0.01"), model, lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    before = model.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.weight)


def test_grad_accumulation_equals_the_full_batch(fer_csv_root: str, tmp_path: Path) -> None:
    from harness.spawn import launch
    from tests.spine_helpers import fast_opts, model_state

    common = dict(
        TRAIN__EPOCHS=1,
        TRAIN__MAX_STEPS_PER_EPOCH=3,
        MODEL__DROPOUT=0.0,
        TRAIN__BATCH_SIZE_PER_GPU=16,
        LOG__WANDB__MODE="disabled",
    )
    assert (
        launch(load_config(FER_SYNTH, fast_opts(fer_csv_root, tmp_path, RUN_NAME="full", **common)))
        == "completed"
    )
    assert (
        launch(
            load_config(
                FER_SYNTH,
                fast_opts(
                    fer_csv_root,
                    tmp_path,
                    RUN_NAME="accum",
                    TRAIN__GRAD_ACCUM=4,
                    TRAIN__CLIP_GRAD=100.0,
                    **common,
                ),
            )
        )
        == "completed"
    )
    a, b = model_state(tmp_path / "full"), model_state(tmp_path / "accum")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_bf16_runs_on_cpu_and_fp16_is_refused(fer_csv_root: str, tmp_path: Path) -> None:
    from harness.spawn import launch
    from tests.spine_helpers import fast_opts, records

    cfg = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="bf16",
            TRAIN__AMP="bf16",
            TRAIN__EPOCHS=1,
            TRAIN__CHANNELS_LAST=True,
            LOG__WANDB__MODE="disabled",
        ),
    )
    assert launch(cfg) == "completed"
    assert all(r["train/loss"] == r["train/loss"] for r in records(tmp_path / "bf16", "train"))
    fp16 = load_config(FER_SYNTH, fast_opts(fer_csv_root, tmp_path, RUN_NAME="fp16", TRAIN__AMP="fp16"))
    with pytest.raises(RuntimeError, match="fp16 needs CUDA"):
        launch(fp16)
    status = json.loads((tmp_path / "fp16" / "status.json").read_text())
    assert status["state"] == "failed" and "bf16" in status["error"]


def test_pretrained_rgb_weights_load_into_the_grayscale_stem(tmp_path: Path) -> None:
    import torchvision

    from efficientnet.model import build_fer_model

    rgb = torchvision.models.efficientnet_b0(weights=None)  # ImageNet-shaped: 3 channels, 1000 classes
    path = tmp_path / "effnet_b0_imagenet.pth"
    torch.save(rgb.state_dict(), path)
    model = build_fer_model(_cfg("MODEL.PRETRAINED", str(path)))
    stem = rgb.state_dict()["features.0.0.weight"]
    assert torch.equal(model.state_dict()["features.0.0.weight"], stem.sum(dim=1, keepdim=True))
    assert torch.equal(
        model.state_dict()["features.1.0.block.0.0.weight"], rgb.state_dict()["features.1.0.block.0.0.weight"]
    )
    assert model.classifier[1].out_features == 7
    from harness.config import ConfigError

    with pytest.raises(ConfigError, match="MODEL.PRETRAINED.*missing.pth"):
        build_fer_model(_cfg("MODEL.PRETRAINED", str(tmp_path / "missing.pth")))


def test_atomic_json_and_status_merge(tmp_path: Path) -> None:
    from harness.rundir import read_status, write_status

    write_status(tmp_path, state="running", step=3)
    write_status(tmp_path, step=4)
    status = read_status(tmp_path)
    assert status["state"] == "running" and status["step"] == 4
    assert status["heartbeat"] >= status["started_at"]
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="unknown run state"):
        write_status(tmp_path, state="exploded")


def test_compiled_model_trains_and_checkpoints_plain_weights(fer_csv_root: str, tmp_path: Path) -> None:
    from harness.spawn import launch
    from tests.spine_helpers import fast_opts, model_state

    cfg = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="compiled",
            TRAIN__COMPILE=True,
            TRAIN__EPOCHS=1,
            TRAIN__MAX_STEPS_PER_EPOCH=2,
            LOG__WANDB__MODE="disabled",
        ),
    )
    assert launch(cfg) == "completed"
    # The checkpoint holds the bare module's names, loadable without torch.compile.
    assert not any(k.startswith("_orig_mod") for k in model_state(tmp_path / "compiled"))


def test_cpu_threads_are_split_among_local_ranks_unless_omp_num_threads_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The test session itself sets OMP_NUM_THREADS under xdist (tests/conftest.py), so the
    # split that a plain launch gets is checked here with it removed.
    from harness.devices import usable_cores
    from harness.train import _set_cpu_threads
    from harness.world import WorldInfo

    cores = usable_cores()
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        _set_cpu_threads(WorldInfo(local_world_size=1))
        assert torch.get_num_threads() == cores
        _set_cpu_threads(WorldInfo(world_size=cores + 1, local_world_size=cores + 1, source="torchrun"))
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        _set_cpu_threads(WorldInfo(local_world_size=1))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
