"""Convergence curves, time-to-target, batch-size effect and comparisons by key.

Repeats of a configuration log at the same optimizer steps, so their records are
aligned by step and summarised per step (median, quartiles, min, max). Across
configurations with different global batches the comparable axis is samples
seen (or wall time), which every record carries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.load import AnalysisError, RunSet
from analysis.throughput import IDENTITY, hashable

TRAIN_LOSS = "train/loss"
DEFAULT_TARGET_FRACTION = 0.9
AXES = {"epoch": "epoch", "samples": "samples", "time": "time_s"}


def config_label(row: pd.Series | dict, keys: Sequence[str] = ()) -> str:
    """A short human name for a configuration, e.g. ``ddp 4×32 (global 128)``."""
    label = f"{row['strategy']} {row['gpus']}×{row['batch_size_per_gpu']} (global {row['global_batch']})"
    if int(row.get("nodes", 1) or 1) > 1:
        label += f", {row['nodes']} nodes"
    extras = [f"{k}={row[k]}" for k in keys]
    return ", ".join([label, *extras])


def _identity(runset: RunSet, keys: Sequence[str]) -> pd.DataFrame:
    runs = runset.included[["run_id", "primary_metric", "higher_is_better", *IDENTITY, *keys]].copy()
    for key in (*IDENTITY, *keys):
        runs[key] = hashable(runs[key])
    runs["config"] = [config_label(r, keys) for r in runs.to_dict("records")]
    return runs


def primary_records(runset: RunSet, kind: str = "val") -> pd.DataFrame:
    """Records of included runs of ``kind`` with ``value``: the run's primary metric
    (``val``) or the training loss (``train``), and ``metric`` naming it."""
    records = runset.included_records(kind)
    metric_of = runset.included.set_index("run_id")["primary_metric"] if kind == "val" else None
    metrics = (
        records["run_id"].map(metric_of)
        if metric_of is not None
        else pd.Series(TRAIN_LOSS, index=records.index)
    )
    value = pd.Series(np.nan, index=records.index)
    for metric in metrics.dropna().unique():
        if metric in records:
            rows = metrics == metric
            value[rows] = pd.to_numeric(records.loc[rows, metric], errors="coerce")
    out = pd.DataFrame(
        {
            "run_id": records["run_id"],
            "metric": metrics,
            "kind": kind,
            "step": records["step"],
            "epoch": _column(records, "epoch"),
            "samples": _column(records, "samples"),
            "time_s": _column(records, "time"),
            "value": value,
        }
    )
    return out.dropna(subset=["value"])


def convergence_curves(runset: RunSet, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Long table: one row per (configuration, metric, step) with the repeat statistics."""
    columns = [
        "workload",
        "strategy",
        "nodes",
        "gpus",
        "batch_size_per_gpu",
        "global_batch",
        *keys,
        "config",
        "metric",
        "kind",
        "step",
        "epoch",
        "samples",
        "time_s",
        "n_runs",
        "median",
        "q1",
        "q3",
        "min",
        "max",
    ]
    records = pd.concat([primary_records(runset, "train"), primary_records(runset, "val")], ignore_index=True)
    if records.empty:
        return pd.DataFrame(columns=columns)
    runs = _identity(runset, keys).drop(columns=["primary_metric", "higher_is_better"])
    records = records.merge(runs, on="run_id")
    group_cols = [*IDENTITY, *keys, "config", "metric", "kind", "step"]
    grouped = records.groupby(group_cols, sort=True, dropna=False)
    out = grouped.agg(
        epoch=("epoch", "median"),
        samples=("samples", "median"),
        time_s=("time_s", "median"),
        n_runs=("run_id", "nunique"),
        median=("value", "median"),
        min=("value", "min"),
        max=("value", "max"),
    ).reset_index()
    out["q1"] = grouped["value"].quantile(0.25).to_numpy()
    out["q3"] = grouped["value"].quantile(0.75).to_numpy()
    return out[columns]


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[name], errors="coerce")


def resample_curve(
    curve: pd.DataFrame, axis: str, grid: Sequence[float], value: str = "median"
) -> np.ndarray:
    """``value`` of one configuration's curve linearly interpolated at ``grid`` on
    ``axis`` (``epoch``, ``samples`` or ``time_s``); NaN outside the measured range."""
    if axis not in ("epoch", "samples", "time_s"):
        raise AnalysisError(f"axis {axis!r}: choose epoch, samples or time_s")
    curve = curve.dropna(subset=[axis, value]).sort_values(axis)
    x, y = curve[axis].to_numpy(dtype=float), curve[value].to_numpy(dtype=float)
    if len(x) == 0:
        return np.full(len(grid), np.nan)
    return np.interp(np.asarray(grid, dtype=float), x, y, left=np.nan, right=np.nan)


# ----------------------------------------------------------- time to target
def resolve_targets(runset: RunSet, target: float | None, target_fraction: float | None) -> dict[str, float]:
    """Target value of the primary metric per workload: ``target`` as given, else
    ``target_fraction`` (default 0.9) of the best value any included run reached."""
    if target_fraction is not None and not 0 < target_fraction <= 1:
        raise AnalysisError(f"--target-fraction must lie in (0, 1], got {target_fraction}")
    targets = {}
    bests = run_best(runset)
    for workload, runs in runset.included.groupby("workload"):
        if target is not None:
            targets[workload] = float(target)
            continue
        fraction = DEFAULT_TARGET_FRACTION if target_fraction is None else target_fraction
        higher = bool(runs["higher_is_better"].iloc[0])
        values = bests.reindex(runs["run_id"]).dropna()
        if len(values):
            best = values.max() if higher else values.min()
            targets[workload] = float(best * fraction if higher else best / fraction)
    return targets


def run_best(runset: RunSet) -> pd.Series:
    """Best primary-metric value per included run (by its direction)."""
    val = primary_records(runset, "val")
    higher = val["run_id"].map(runset.included.set_index("run_id")["higher_is_better"]).astype(bool)
    signed = val["value"].where(higher, -val["value"])
    best = signed.groupby(val["run_id"]).max()
    sign = runset.included.set_index("run_id")["higher_is_better"].astype(bool).reindex(best.index)
    return best.where(sign, -best)


def run_time_to_target(runset: RunSet, targets: dict[str, float]) -> pd.DataFrame:
    """Per included run: the first validation that reached the target (epochs
    completed, samples, wall seconds), NaN and ``reached=False`` when none did."""
    runs = runset.included.set_index("run_id")
    out = pd.DataFrame(index=pd.Index(runs.index, name="run_id"))
    out["metric"] = runs["primary_metric"]
    out["target"] = runs["workload"].map(targets).astype(float)
    val = primary_records(runset, "val")
    target = val["run_id"].map(out["target"])
    higher = val["run_id"].map(runs["higher_is_better"]).astype(bool)
    hit = (higher & (val["value"] >= target)) | (~higher & (val["value"] <= target))
    first = val[hit].groupby("run_id").first()  # records are in step order
    out["reached"] = out.index.isin(first.index)
    out["epochs"] = first["epoch"].reindex(out.index) + 1
    out["samples"] = first["samples"].reindex(out.index)
    out["time_s"] = first["time_s"].reindex(out.index)
    out["steps"] = first["step"].reindex(out.index).astype(float)
    out["best"] = run_best(runset).reindex(out.index)
    return out.reset_index()


def time_to_target_table(runset: RunSet, per_run: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Per configuration: medians over the repeats that reached the target."""
    runs = _identity(runset, keys).merge(per_run, on="run_id")
    rows = []
    group_cols = [*IDENTITY, *keys]
    for values, group in runs.groupby(group_cols, sort=True, dropna=False):
        reached = group[group["reached"]]
        n, k = len(group), len(reached)
        status = "reached" if k == n else ("not reached" if k == 0 else f"reached by {k} of {n} runs")
        row = dict(zip(group_cols, values))
        row.update(
            config=group["config"].iloc[0],
            metric=group["metric"].iloc[0],
            target=float(group["target"].iloc[0]),
            n_runs=n,
            n_reached=k,
            epochs_median=reached["epochs"].median(),
            samples_median=reached["samples"].median(),
            steps_median=reached["steps"].median(),
            time_s_median=reached["time_s"].median(),
            time_s_q1=reached["time_s"].quantile(0.25) if k else np.nan,
            time_s_q3=reached["time_s"].quantile(0.75) if k else np.nan,
            best_median=group["best"].median(),
            status=status,
        )
        rows.append(row)
    columns = [
        *group_cols,
        "config",
        "metric",
        "target",
        "n_runs",
        "n_reached",
        "epochs_median",
        "samples_median",
        "steps_median",
        "time_s_median",
        "time_s_q1",
        "time_s_q3",
        "best_median",
        "status",
    ]
    return pd.DataFrame(rows, columns=columns)


def compare_by_key(
    runset: RunSet, per_run_throughput: pd.DataFrame, per_run_target: pd.DataFrame, key: str
) -> pd.DataFrame:
    """Per (workload, strategy, GPUs, value of ``key``): throughput, data wait, epoch
    time, best metric and time to target, medians over runs."""
    runs = runset.included[["run_id", "workload", "strategy", "gpus", key]].copy()
    runs[key] = hashable(runs[key])
    table = runs.merge(per_run_throughput, on="run_id", how="left").merge(
        per_run_target, on="run_id", how="left"
    )
    rows = []
    group_cols = ["workload", "strategy", "gpus", key]
    for values, group in table.groupby(group_cols, sort=True, dropna=False):
        row = dict(zip(group_cols, values))
        row.update(
            n_runs=len(group),
            throughput_median=group["throughput_median"].median(),
            compute_median=group["compute_median"].median(),
            data_wait_share=group["data_wait_share"].median(),
            epoch_s=group["epoch_s"].median(),
            best_median=group["best"].median(),
            time_to_target_s=group["time_s"].median(),
            n_reached=int(group["reached"].fillna(False).astype(bool).sum()),
        )
        rows.append(row)
    return pd.DataFrame(rows)
