"""The ring all-reduce step-time model: recovery of its own parameters, predictions, LOO."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.commmodel import (
    UnderdeterminedFit,
    fit_comm_model,
    leave_one_out_errors,
    model_fit_table,
    ring_step_time,
)
from analysis.load import load_run_dirs
from analysis.pipeline import Options, analyze
from tests.analysis_fixtures import write_sweep

PARAMS = 4_000_000
GRAD_BYTES = PARAMS * 4
TRUE = dict(t_compute_s=0.25, grad_bytes=GRAD_BYTES, bandwidth_bytes_per_s=2.0e9, latency_s=3e-3)


def test_fit_recovers_bandwidth_and_latency_and_predicts_held_out_points():
    measured = np.array([1, 2, 4, 8])
    fit = fit_comm_model(measured, ring_step_time(measured, **TRUE), GRAD_BYTES)
    assert fit.t_compute_s == pytest.approx(0.25, rel=1e-6)
    assert fit.bandwidth_bytes_per_s == pytest.approx(2.0e9, rel=1e-6)
    assert fit.latency_s == pytest.approx(3e-3, rel=1e-6)
    held_out = np.array([16, 64, 256])
    np.testing.assert_allclose(fit.step_time(held_out), ring_step_time(held_out, **TRUE), rtol=1e-6)
    expected_eff = 0.25 / ring_step_time(held_out, **TRUE)
    np.testing.assert_allclose(fit.efficiency(held_out), expected_eff, rtol=1e-6)
    np.testing.assert_allclose(
        leave_one_out_errors(measured, ring_step_time(measured, **TRUE), GRAD_BYTES), 0, atol=1e-6
    )


def test_fit_with_noise_stays_close_and_loo_reports_the_error():
    gpus = np.array([1, 1, 2, 2, 4, 4, 8, 8, 16, 16])
    noise = np.tile([1.01, 0.99], 5)  # ±1% repeat scatter
    fit = fit_comm_model(gpus, ring_step_time(gpus, **TRUE) * noise, GRAD_BYTES)
    assert fit.bandwidth_bytes_per_s == pytest.approx(2.0e9, rel=0.15)
    assert fit.latency_s == pytest.approx(3e-3, rel=0.15)
    loo = leave_one_out_errors(gpus, ring_step_time(gpus, **TRUE) * noise, GRAD_BYTES)
    assert 0.001 < np.nanmean(loo) < 0.05


def test_fit_needs_three_gpu_counts():
    with pytest.raises(UnderdeterminedFit, match="distinct GPU count"):
        fit_comm_model([1, 2, 1, 2], [0.3, 0.35, 0.31, 0.36], GRAD_BYTES)
    # Three counts fit, but leaving one out leaves two: LOO is not available there.
    loo = leave_one_out_errors([1, 2, 4], ring_step_time([1, 2, 4], **TRUE), GRAD_BYTES)
    assert np.isnan(loo).all()


def _model_sweep(root, gpus, name="model"):
    runs = []
    for strategy in ("ddp", "dp"):
        for g in gpus:
            step = float(ring_step_time([g], **TRUE)[0]) * (1.3 if strategy == "dp" else 1.0)
            runs.append(
                dict(
                    strategy=strategy,
                    gpus=g,
                    batch_size_per_gpu=32,
                    throughput=32 * g / step,
                    num_params=PARAMS,
                )
            )
    return write_sweep(root, name, runs, scaling="weak")


def test_model_fit_table_from_run_directories(tmp_path):
    sweep = _model_sweep(tmp_path, [1, 2, 4, 8])
    analysis = analyze(load_run_dirs([sweep]), Options(predict_gpus=[8, 16, 64, 256]))
    fit = analysis.model_fit
    ddp = fit[fit["strategy"] == "ddp"]
    assert ddp["bandwidth_bytes_per_s"].iloc[0] == pytest.approx(2.0e9, rel=1e-4)
    assert ddp["bandwidth_gbps"].iloc[0] == pytest.approx(16.0, rel=1e-4)
    assert ddp["latency_s"].iloc[0] == pytest.approx(3e-3, rel=1e-4)
    assert ddp["grad_bytes"].iloc[0] == GRAD_BYTES and ddp["param_count"].iloc[0] == PARAMS
    assert ddp["loo_rel_error"].iloc[0] < 1e-4
    predicted = ddp[ddp["kind"] == "prediction"].set_index("gpus")
    assert sorted(predicted.index) == [16, 64, 256]  # 8 was measured, so it is no prediction
    expected = 0.25 / ring_step_time([16, 64, 256], **TRUE)
    np.testing.assert_allclose(predicted.loc[[16, 64, 256], "predicted_efficiency"], expected, rtol=1e-4)
    measured = ddp[ddp["kind"] == "measured"].set_index("gpus")
    np.testing.assert_allclose(measured["measured_efficiency"], measured["predicted_efficiency"], rtol=1e-4)
    dp = fit[(fit["strategy"] == "dp") & (fit["kind"] == "measured")]
    assert "DataParallel" in dp["note"].iloc[0]


def test_too_few_points_say_underdetermined_instead_of_predicting(tmp_path):
    sweep = _model_sweep(tmp_path, [1, 2], name="two")
    fit = analyze(load_run_dirs([sweep])).model_fit
    assert set(fit["kind"]) == {"underdetermined"}
    assert fit["predicted_efficiency"].isna().all()
    assert "underdetermined" in fit["note"].iloc[0]


def test_model_fit_table_of_empty_scaling_has_columns():
    import pandas as pd

    from analysis.scaling import scaling_table

    table = model_fit_table(scaling_table(pd.DataFrame()))
    assert table.empty and "predicted_efficiency" in table.columns


def test_strong_scaling_fit_models_compute_of_the_shrinking_per_gpu_batch():
    # T(N) = T_0 + b·t_sample + comm, with b = 256/N.
    gpus = np.array([1, 2, 4, 8, 16])
    batch = 256 / gpus
    step = 0.05 + batch * 2e-3 + ring_step_time(gpus, 0.0, GRAD_BYTES, 2.0e9, 3e-3)
    fit = fit_comm_model(gpus, step, GRAD_BYTES, batch)
    # Bandwidth and compute share the 1/N shape: only latency and predictions are identified.
    assert not fit.bandwidth_identified
    assert fit.latency_s == pytest.approx(3e-3, rel=1e-5)
    held_out = np.array([64, 256])
    truth = 0.05 + 256 / held_out * 2e-3 + ring_step_time(held_out, 0.0, GRAD_BYTES, 2.0e9, 3e-3)
    np.testing.assert_allclose(fit.step_time(held_out, 256 / held_out), truth, rtol=1e-5)
    t1 = 0.05 + 256 * 2e-3
    assert fit.efficiency([64], global_batch=256)[0] == pytest.approx(t1 / (64 * truth[0]), rel=1e-5)
    np.testing.assert_allclose(leave_one_out_errors(gpus, step, GRAD_BYTES, batch), 0, atol=1e-5)
    with pytest.raises(UnderdeterminedFit, match="needs 3"):
        fit_comm_model(gpus[:2], step[:2], GRAD_BYTES, batch[:2])


def test_nonnegative_least_squares_matches_scipy_bounded_solver() -> None:
    from scipy.optimize import lsq_linear

    from analysis.commmodel import nonnegative_least_squares

    rng = np.random.default_rng(7)
    for _ in range(300):
        unknowns = int(rng.integers(1, 5))
        a = rng.normal(size=(int(rng.integers(unknowns, 12)), unknowns))
        b = rng.normal(size=a.shape[0])
        ours = nonnegative_least_squares(a, b)
        theirs = lsq_linear(a, b, bounds=(0, np.inf), method="bvls", tol=1e-12).x
        assert (ours >= 0).all()
        assert np.sum((a @ ours - b) ** 2) <= np.sum((a @ theirs - b) ** 2) + 1e-9
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
