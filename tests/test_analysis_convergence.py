"""Time to target and curve alignment across batch sizes and world sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.convergence import convergence_curves, resample_curve
from analysis.load import load_run_dirs
from analysis.pipeline import Options, analyze
from tests.analysis_fixtures import write_run

STEPS_PER_EPOCH = 20


def by_samples(samples: float, global_batch: int) -> float:
    """A metric that depends on samples seen only, whatever the batch."""
    return 1.0 - math.exp(-samples / 3000.0)


def shifted(offset: float):
    return lambda samples, global_batch: by_samples(samples, global_batch) + offset


def test_samples_axis_aligns_different_global_batches_and_world_sizes(tmp_path):
    # Global batch 32 (1 GPU), 64 (DDP on 2 GPUs) and 64 (1 GPU, 64 per GPU): same metric per sample.
    write_run(tmp_path, gpus=1, batch_size_per_gpu=32, metric_fn=by_samples, epochs=4)
    write_run(tmp_path, gpus=2, batch_size_per_gpu=32, metric_fn=by_samples, epochs=4)
    write_run(tmp_path, gpus=1, batch_size_per_gpu=64, metric_fn=by_samples, epochs=4)
    curves = convergence_curves(load_run_dirs([tmp_path]))
    val = curves[curves["kind"] == "val"]
    assert set(val["global_batch"]) == {32, 64}
    grid = [1500, 2000, 2500]
    aligned = [resample_curve(c, "samples", grid) for _, c in val.groupby("config")]
    assert len(aligned) == 3
    for values in aligned[1:]:  # linear interpolation of the same curve sampled at different points
        np.testing.assert_allclose(values, aligned[0], atol=0.02)
    # Same global batch (DDP 2×32 and 1×64): identical records on every axis but wall time.
    g64 = val[val["global_batch"] == 64]
    a, b = (c.sort_values("step") for _, c in g64.groupby("config"))
    np.testing.assert_allclose(a["samples"], b["samples"])
    np.testing.assert_allclose(a["median"], b["median"])
    # On the epoch axis the configurations do not align: a larger batch has seen more samples.
    first_epoch = val[val["epoch"] == 0].set_index("global_batch")["median"]
    assert first_epoch.loc[64].min() > first_epoch.loc[32] + 0.1
    # Out of the measured range there is no value, rather than an extrapolated one.
    assert np.isnan(resample_curve(aligned_curve(val), "samples", [10**9])).all()


def aligned_curve(val):
    return next(iter(val.groupby("config")))[1]


def test_repeats_are_summarised_per_step(tmp_path):
    for seed, offset in enumerate((-0.02, 0.0, 0.04)):
        write_run(tmp_path, seed=seed, metric_fn=shifted(offset), epochs=3)
    curves = convergence_curves(load_run_dirs([tmp_path]))
    val = curves[curves["kind"] == "val"].sort_values("step")
    assert (val["n_runs"] == 3).all()
    expected = np.array([by_samples(32 * STEPS_PER_EPOCH * (e + 1), 32) for e in range(3)])
    np.testing.assert_allclose(val["median"], expected)
    np.testing.assert_allclose(val["min"], expected - 0.02)
    np.testing.assert_allclose(val["max"], expected + 0.04)
    assert set(curves["metric"]) == {"train/loss", "val/accuracy"}


def test_time_to_target_reached_and_not_reached(tmp_path):
    # Samples per epoch: 32*20 = 640 for global 32 and 1280 for global 64.
    write_run(tmp_path, gpus=1, batch_size_per_gpu=32, metric_fn=by_samples, epochs=5, throughput=100)
    write_run(tmp_path, gpus=2, batch_size_per_gpu=32, metric_fn=by_samples, epochs=5, throughput=200)
    write_run(tmp_path, gpus=4, batch_size_per_gpu=32, metric_fn=lambda s, b: 0.3, epochs=2, throughput=400)
    analysis = analyze(load_run_dirs([tmp_path]), Options(target=0.5))
    ttt = analysis.time_to_target.set_index("gpus")
    # 1 - exp(-s/3000) >= 0.5  <=>  s >= 2079: 4 epochs (2560 samples) at global 32, 2 (2560) at 64.
    assert ttt.loc[1, "epochs_median"] == 4 and ttt.loc[1, "samples_median"] == 2560
    assert ttt.loc[2, "epochs_median"] == 2 and ttt.loc[2, "samples_median"] == 2560
    runs = analysis.time_to_target_runs.merge(analysis.runset.runs[["run_id", "gpus"]]).set_index("gpus")
    # The fixture's clock: warmup windows at a third of the speed, then `throughput` img/s.
    history = analysis.runset.history(runs.loc[2, "run_id"])
    val = history[history["kind"] == "val"]
    assert ttt.loc[2, "time_s_median"] == pytest.approx(float(val["time"].iloc[1]))
    assert ttt.loc[4, "status"] == "not reached" and math.isnan(ttt.loc[4, "time_s_median"])
    assert ttt.loc[1, "status"] == "reached"


def test_target_fraction_of_best_and_partial_repeats(tmp_path):
    write_run(tmp_path, seed=0, metric_fn=lambda s, b: min(0.8, s / 2000), epochs=4)
    write_run(tmp_path, seed=1, metric_fn=lambda s, b: min(0.5, s / 2000), epochs=4)
    analysis = analyze(load_run_dirs([tmp_path]), Options(target_fraction=0.75))
    assert analysis.targets["fer"] == pytest.approx(0.6)
    row = analysis.time_to_target.iloc[0]
    assert row["n_runs"] == 2 and row["n_reached"] == 1
    assert row["status"] == "reached by 1 of 2 runs"
    assert row["samples_median"] == 1280  # 1280/2000 = 0.64 >= 0.6 after epoch 2


def test_lower_is_better_metric(tmp_path):
    import json

    run = write_run(tmp_path, metric_fn=lambda s, b: 1.0 - s / 4000, epochs=3)
    meta = json.loads((run / "run.json").read_text())
    meta.update(primary_metric="val/loss", higher_is_better=False)
    (run / "run.json").write_text(json.dumps(meta))
    # The fixture writes val/loss = 1 - metric = s/4000: 0.16, 0.32, 0.48, rising, so it never gets lower.
    analysis = analyze(load_run_dirs([tmp_path]), Options(target=0.2))
    assert analysis.time_to_target.iloc[0]["status"] == "reached"
    assert analysis.time_to_target.iloc[0]["epochs_median"] == 1
    analysis = analyze(load_run_dirs([tmp_path]), Options(target=0.1))
    assert analysis.time_to_target.iloc[0]["status"] == "not reached"
