"""`harness profile` on ddp(2): one trace per rank and a summary; the DDP comm-hook figures; the
non-blocking preemption vote agrees on one step on every rank, and a ddp run stopped by it
resumes bit-exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.config import load_config
from harness.spawn import launch
from tests.spine_helpers import FER_SYNTH, fast_opts, harness_cli, model_state, records

# Dropout on (the RNG state must survive the resume); 2 epochs x 4 steps, a record every 2 steps.
DDP_RUN = dict(
    MODEL__DROPOUT=0.3,
    TRAIN__EPOCHS=2,
    TRAIN__MAX_STEPS_PER_EPOCH=4,
    TRAIN__BATCH_SIZE_PER_GPU=8,
    LOG__EVERY_N_STEPS=2,
)
PROFILE = dict(PROFILE__WAIT=1, PROFILE__WARMUP=1, PROFILE__ACTIVE=2, PROFILE__PROFILE_MEMORY=True)


@pytest.fixture(scope="module")
def profiled_ddp(fer_csv_root: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("profiled")
    opts = fast_opts(fer_csv_root, out, RUN_NAME="prof", **DDP_RUN, **PROFILE)
    harness_cli("profile", "--config", FER_SYNTH, "--strategy", "ddp", "--gpus", "2", *opts)
    return out / "prof"


@pytest.mark.slow  # a profiled ddp(2) run: ~40 s on 2 idle cores
def test_profiled_ddp_has_a_trace_per_rank_and_a_summary(profiled_ddp: Path) -> None:
    profile = profiled_ddp / "profile"
    traces = sorted(p.name for p in profile.glob("trace-rank*.json"))
    assert traces == ["trace-rank0-cycle0.json", "trace-rank1-cycle0.json"]
    for name in traces:
        trace = json.loads((profile / name).read_text())
        names = {e.get("name") for e in trace["traceEvents"]}
        assert "ProfilerStep#2" in names and "ProfilerStep#3" in names  # WAIT 1 + WARMUP 1, ACTIVE 2
        assert any(n and "allreduce" in n for n in names), "the gradient all-reduce is in the trace"
    summary = (profile / "summary.md").read_text()
    assert "## Top 15 operators by self CPU time" in summary
    assert "aten::convolution_backward" in summary
    assert "## Top 15 operators by self memory" in summary and "No memory recorded" not in summary
    assert "## Holistic Trace Analysis" in summary


@pytest.mark.slow  # a profiled ddp(2) run: ~40 s on 2 idle cores
def test_ddp_records_carry_the_measured_communication(profiled_ddp: Path) -> None:
    train = records(profiled_ddp, "train")
    assert len(train) == 4
    for rec in train:
        parts = ("data_wait", "h2d", "forward", "backward", "optimizer", "other")
        assert sum(rec[f"time/{p}_share"] for p in parts) == pytest.approx(1.0, abs=1e-6)
        assert rec["time/comm_s"] > 0 and rec["time/comm_exposed_s"] > 0
        # The exposed wait happens inside backward(); the all-reduces all run within it too.
        assert rec["time/comm_exposed_s"] <= rec["time/backward_s"]
        assert rec["time/comm_s"] <= rec["time/backward_s"]
        assert rec["time/comm_share"] == pytest.approx(rec["time/comm_s"] / rec["time/step_s"], rel=1e-6)
        assert rec["perf/flops_per_sample"] > 0 and "perf/mfu" not in rec


def _vote_worker(rank: int, scenarios: list, out: str) -> None:
    from harness import distributed as du
    from harness.world import world_info_from_env

    du.init_distributed(world_info_from_env(), "gloo")
    stops = []
    for requester, request_step, final_step in scenarios:
        vote = du.LaggedVote()
        stopped_at = None
        for step in range(1, 11):
            flag = rank == requester and step >= request_step
            if vote.poll(flag, final=step == final_step):
                stopped_at = step
                break
        if stopped_at is None:
            assert not vote.poll(False, final=True)  # leaves no vote in flight
        stops.append(stopped_at)
    torch.save(stops, f"{out}.{rank}")
    du.destroy_distributed()


def test_lagged_vote_stops_every_rank_at_the_same_step(tmp_path: Path) -> None:
    from harness.local_ranks import start_local_ranks

    # (rank that requests, from which step, the step polled with final=True) -> expected stop step
    scenarios = [(1, 3, 8), (0, 7, 8), (1, 8, 8), (0, 1, 5), (1, 11, 5)]
    expected = [4, 8, 8, 2, None]
    out = str(tmp_path / "stops")
    start_local_ranks(_vote_worker, (scenarios, out), 2)
    assert torch.load(f"{out}.0") == expected
    assert torch.load(f"{out}.1") == expected


@pytest.mark.slow
def test_ddp_preempted_by_the_vote_resumes_exactly(profiled_ddp: Path, fer_csv_root: str) -> None:
    """The profiled run is the uninterrupted reference (profiling changes no arithmetic)."""
    out = profiled_ddp.parent
    cut = fast_opts(
        fer_csv_root,
        out,
        RUN_NAME="cut",
        DIST__STRATEGY="ddp",
        DIST__GPUS=2,
        **DDP_RUN,
        FAULT__PREEMPT_AT_STEP=2,
    )
    assert launch(load_config(FER_SYNTH, cut)) == "preempted"
    status = json.loads((out / "cut" / "status.json").read_text())
    assert status["state"] == "preempted" and status["step"] == 3  # agreed one step after the request
    assert launch(load_config(FER_SYNTH, cut[:-2] + ["FAULT.PREEMPT_AT_STEP", "-1"])) == "completed"
    a, b = model_state(profiled_ddp), model_state(out / "cut")
    for key in a:
        assert torch.equal(a[key], b[key]), f"parameter {key} differs after resume"
    keep = ("kind", "step", "samples", "train/loss", "train/lr")
    assert [tuple(r.get(k) for k in keep) for r in records(profiled_ddp)] == [
        tuple(r.get(k) for k in keep) for r in records(out / "cut")
    ]
