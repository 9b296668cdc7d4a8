"""Weak and strong scaling efficiency, DDP/DP ratio, flags and diagnosis.

Weak scaling (per-GPU batch fixed): S(N) = X(N)/X(1), E(N) = S(N)/N, the
baseline being the same workload, strategy and per-GPU batch at one GPU.
Strong scaling (global batch fixed): E(N) = T(1)/(N·T(N)) with T the time per
optimizer step at the same global batch; since T = global batch / X, this is
X(N)/(N·X(1)) with X(1) measured at the same global batch on one GPU. Every
other varying config key must match too. A baseline that was not measured is
reported missing, never substituted (not even by the ``single`` strategy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.throughput import IDENTITY, MEASURED, UNSET

SCALING_COLUMNS = [
    "workload",
    "strategy",
    "scaling",
    "nodes",
    "gpus",
    "batch_size_per_gpu",
    "global_batch",
    "n_runs",
    "throughput_median",
    "throughput_q1",
    "throughput_q3",
    "speedup",
    "efficiency",
    "ddp_over_dp",
    "flags",
]
EXTRA_COLUMNS = [
    "compute_efficiency",
    "compute_median",
    "data_wait_share",
    "diagnosis",
    "n_hosts",
    "iqr_over",
    "baseline",
    "step_s",
    "epoch_s",
    "num_params",
    *MEASURED,
]

SUPERLINEAR = "superlinear-suspect"
MISSING_BASELINE = "missing-baseline"
MULTI_NODE = "multi-node"
EFFICIENCY_THRESHOLD = 0.8


def _series_key(row: pd.Series | dict, scaling: str, keys: Sequence[str]) -> tuple:
    fixed = "batch_size_per_gpu" if scaling == "weak" else "global_batch"
    return (row["workload"], row["strategy"], row[fixed], *(row[k] for k in keys))


def scaling_table(
    configs: pd.DataFrame,
    keys: Sequence[str] = (),
    data_bound_threshold: float = 0.2,
    efficiency_threshold: float = EFFICIENCY_THRESHOLD,
) -> pd.DataFrame:
    """One row per (configuration, scaling mode) with speedup, efficiency and flags.

    ``configs`` is ``throughput.aggregate_configs``'s table; ``keys`` the config
    keys that must match between a point and its baseline.
    """
    if configs.empty:
        return pd.DataFrame(columns=SCALING_COLUMNS + list(keys) + EXTRA_COLUMNS)
    records = configs.to_dict("records")
    index: dict[str, dict[tuple, list[dict]]] = {"weak": {}, "strong": {}}
    for rec in records:
        for mode in ("weak", "strong"):
            index[mode].setdefault(_series_key(rec, mode, keys), []).append(rec)
    rows = []
    for rec in records:
        for mode in _modes(rec, index, keys):
            base = _baseline(rec, mode, index, keys)
            rows.append(_scaling_row(rec, mode, base, keys, data_bound_threshold, efficiency_threshold))
    table = pd.DataFrame(rows)
    _add_ddp_over_dp(table, keys)
    table["flags"] = table["flags"].map(lambda f: ";".join(f))
    table = table.sort_values(
        ["workload", "scaling", "strategy", "batch_size_per_gpu", "global_batch", *keys, "nodes", "gpus"],
        key=_sort_key,
    ).reset_index(drop=True)
    return table[SCALING_COLUMNS + list(keys) + EXTRA_COLUMNS]


def _sort_key(column: pd.Series) -> pd.Series:
    return column.map(lambda v: (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)))


def _one_gpu(candidates: list[dict]) -> list[dict]:
    return [c for c in candidates if c["gpus"] == 1 and c["nodes"] == 1]


def _modes(rec: dict, index: dict, keys: Sequence[str]) -> list[str]:
    """The scaling modes a configuration is a point of: the sweep's declared mode,
    else every mode whose baseline (or, at one GPU, whose larger points) exist."""
    if rec["scaling"] in ("weak", "strong"):
        return [rec["scaling"]]
    modes = []
    for mode in ("weak", "strong"):
        series = index[mode][_series_key(rec, mode, keys)]
        if rec["gpus"] == 1:
            others = [c for c in series if c["gpus"] > 1]
            if mode == "strong":  # a strong series changes the per-GPU batch with N
                others = [c for c in others if c["batch_size_per_gpu"] != rec["batch_size_per_gpu"]]
            if others:
                modes.append(mode)
        elif _one_gpu(series):
            modes.append(mode)
    if modes:
        return modes
    # No baseline either way: label the series the point evidently belongs to.
    weak_series = index["weak"][_series_key(rec, "weak", keys)]
    strong_series = index["strong"][_series_key(rec, "strong", keys)]
    if len(strong_series) > 1 and len(weak_series) == 1:
        return ["strong"]
    return ["weak"]


def _baseline(rec: dict, mode: str, index: dict, keys: Sequence[str]) -> dict | None:
    candidates = _one_gpu(index[mode][_series_key(rec, mode, keys)])
    if not candidates:
        return None
    same_label = [c for c in candidates if c["scaling"] in (mode, UNSET)]
    return (same_label or candidates)[0]


def _scaling_row(
    rec: dict,
    mode: str,
    base: dict | None,
    keys: Sequence[str],
    data_bound_threshold: float,
    efficiency_threshold: float,
) -> dict:
    n = rec["gpus"]
    flags: list[str] = []
    if base is None or not np.isfinite(base["throughput_median"]):
        speedup = efficiency = compute_eff = float("nan")
        flags.append(MISSING_BASELINE)
        baseline = "not measured"
    else:
        speedup = rec["throughput_median"] / base["throughput_median"]
        efficiency = speedup / n
        compute_eff = rec["compute_median"] / (n * base["compute_median"])
        baseline = (
            f"{base['strategy']} 1 GPU, {base['batch_size_per_gpu']}/GPU, global "
            f"{base['global_batch']}: {base['throughput_median']:.4g} img/s ({base['n_runs']} run"
            f"{'s' if base['n_runs'] != 1 else ''})"
        )
        if efficiency > 1.0:
            flags.append(SUPERLINEAR)
    if rec["steady_flag"]:
        flags.append(rec["steady_flag"])
    if rec["n_hosts"] > 1:
        flags.append(MULTI_NODE)
    elif rec["nodes"] > 1 and rec["n_hosts"] == 1:
        flags.append(f"single-host ({rec['nodes']} nodes on one host)")
    elif rec["nodes"] > 1:
        flags.append(f"{rec['nodes']} nodes, hosts not recorded")
    row = {k: rec[k] for k in (*IDENTITY, *keys)}
    row.update(
        scaling=mode,
        n_runs=rec["n_runs"],
        throughput_median=rec["throughput_median"],
        throughput_q1=rec["throughput_q1"],
        throughput_q3=rec["throughput_q3"],
        speedup=speedup,
        efficiency=efficiency,
        ddp_over_dp=float("nan"),
        flags=flags,
        compute_efficiency=compute_eff,
        compute_median=rec["compute_median"],
        data_wait_share=rec["data_wait_share"],
        n_hosts=rec["n_hosts"],
        iqr_over=rec["iqr_over"],
        baseline=baseline,
        step_s=rec["step_s"],
        epoch_s=rec["epoch_s"],
        num_params=rec["num_params"],
        **{k: rec.get(k, float("nan")) for k in MEASURED},
    )
    row["diagnosis"] = diagnose(row, data_bound_threshold, efficiency_threshold)
    return row


def diagnose(
    row: dict, data_bound_threshold: float = 0.2, efficiency_threshold: float = EFFICIENCY_THRESHOLD
) -> str:
    """data-bound: the loader's wait is above the threshold share of the step, or
    the step without data wait scales while the whole step does not.
    With the measured exposed-communication share (DDP runs log ``time/comm_exposed_share``):
    communication-bound when exposed communication accounts for at least half of the step
    time lost to imperfect scaling (1 - E of the step), else compute-slowdown (the devices'
    own step got slower: contention, host overhead). Without it (older runs, DP) the rule
    infers: communication-bound when neither the step nor its compute part scales.
    A superlinear point is not diagnosed: its baseline is suspect."""
    share = row["data_wait_share"]
    if np.isfinite(share) and share > data_bound_threshold:
        return "data-bound"
    if row["gpus"] == 1:
        return "baseline"
    eff, compute_eff = row["efficiency"], row["compute_efficiency"]
    if not np.isfinite(eff):
        return "unknown (no baseline)"
    if eff > 1.0:
        return "suspect (E > 1)"
    if eff >= efficiency_threshold:
        return "scales"
    if np.isfinite(compute_eff) and compute_eff >= efficiency_threshold:
        return "data-bound"
    exposed = row.get("comm_exposed_share", float("nan"))
    if exposed is None or not np.isfinite(exposed):
        return "communication-bound"  # inferred: no measured communication share
    measured = f"exposed comm {exposed:.0%} of the step"
    if exposed >= 0.5 * (1.0 - eff):
        return f"communication-bound ({measured})"
    return f"compute-slowdown ({measured})"


def _add_ddp_over_dp(table: pd.DataFrame, keys: Sequence[str]) -> None:
    match = ["workload", "scaling", "nodes", "gpus", "batch_size_per_gpu", "global_batch", *keys]
    dp = table[table["strategy"] == "dp"]
    ddp = table[table["strategy"] == "ddp"]
    if dp.empty or ddp.empty:
        return
    dp_x = {tuple(r[m] for m in match): r["throughput_median"] for _, r in dp.iterrows()}
    ddp_x = {tuple(r[m] for m in match): r["throughput_median"] for _, r in ddp.iterrows()}
    for i, r in table.iterrows():
        key = tuple(r[m] for m in match)
        if r["strategy"] in ("dp", "ddp") and key in dp_x and key in ddp_x:
            table.at[i, "ddp_over_dp"] = ddp_x[key] / dp_x[key]
