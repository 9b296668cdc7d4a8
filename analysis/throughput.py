"""Steady-state throughput per run, and its aggregation over repeats.

A run's throughput is the median global img/s over its steady train records
(``steady: true``: outside the first ``LOG.WARMUP_STEPS`` steps after each
(re)start), with the quartiles over those records. Runs that differ only in
their seed are repeats of one configuration; a configuration's throughput is the
median over its repeats, with the interquartile range over the repeats (over the
steady records when there is a single run).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.load import RunSet
from harness.runformat import (
    COMPUTE_IMG_PER_S,
    CONFIG_TO_RUN,
    DATA_WAIT_SHARE,
    EPOCH_S,
    GPUS_FROM_CONFIG,
    IMG_PER_S,
    STEP_S,
)

# Columns that identify a configuration (apart from config keys that vary).
IDENTITY = ["workload", "strategy", "nodes", "gpus", "batch_size_per_gpu", "global_batch"]
# Config keys that say how a run was recorded or named, not what was measured.
IGNORED_PREFIXES = ("SEED", "RUN_NAME", "OUTPUT_DIR", "SWEEP", "LOG.", "CHECKPOINT.", "FAULT.")
# Config keys already represented by an identity column.
MAPPED_KEYS = {*(key for key, name in CONFIG_TO_RUN.items() if name in IDENTITY), *GPUS_FROM_CONFIG}
UNSET = "<unset>"
NO_STEADY = "no-steady-state"
# Step-breakdown and FLOP figures (medians of steady records): column -> metric. Absent in older
# runs (and comm_* outside DDP, mfu off GPUs with a known peak): the column is then NaN.
MEASURED = {
    "comm_share": "time/comm_share",
    "comm_exposed_share": "time/comm_exposed_share",
    "tflops_per_s": "perf/tflops_per_s",
    "mfu": "perf/mfu",
}


def run_throughput(runset: RunSet) -> pd.DataFrame:
    """One row per included run: steady-state throughput statistics."""
    ids = pd.Index(runset.included["run_id"], name="run_id")
    train = runset.included_records("train")
    steady = train["steady"].eq(True) if "steady" in train else pd.Series(False, index=train.index)
    has_steady = steady.groupby(train["run_id"]).transform("any").astype(bool)
    used = train[steady | ~has_steady]
    out = pd.DataFrame(index=ids)
    for name, column, q in (
        ("throughput_median", IMG_PER_S, 0.5),
        ("throughput_q1", IMG_PER_S, 0.25),
        ("throughput_q3", IMG_PER_S, 0.75),
        ("compute_median", COMPUTE_IMG_PER_S, 0.5),
        ("data_wait_share", DATA_WAIT_SHARE, 0.5),
        ("step_s", STEP_S, 0.5),
    ):
        out[name] = _grouped_quantile(used, column, q).reindex(ids)
    for name, column in MEASURED.items():
        out[name] = _grouped_quantile(used, column, 0.5).reindex(ids)
    out["epoch_s"] = _grouped_quantile(runset.included_records("epoch"), EPOCH_S, 0.5).reindex(ids)
    out["n_steady"] = steady.groupby(train["run_id"]).sum().reindex(ids).fillna(0).astype(int)
    no_steady = (~has_steady).groupby(train["run_id"]).all().reindex(ids).fillna(True).astype(bool)
    out["steady_flag"] = np.where(no_steady, NO_STEADY, "")
    return out.reset_index()


def _grouped_quantile(frame: pd.DataFrame, column: str, q: float) -> pd.Series:
    if column not in frame or frame.empty:
        return pd.Series(dtype=float)
    values = pd.to_numeric(frame[column], errors="coerce")
    return values.groupby(frame["run_id"]).quantile(q)


def varying_config_keys(runs: pd.DataFrame, extra: Sequence[str] = ()) -> list[str]:
    """Config keys (and ``model``/``grad_accum``) whose value differs between runs of
    one workload: together with IDENTITY they tell configurations apart. ``extra``
    keys are always included (the ``--by`` keys)."""
    keys = []
    candidates = ["model", "grad_accum"] + [c for c in runs.columns if c[:1].isupper()]
    workload = runs["workload"] if "workload" in runs else pd.Series("", index=runs.index)
    for key in candidates:
        if key in MAPPED_KEYS or key.startswith(IGNORED_PREFIXES) or key not in runs:
            continue
        if key == "MODEL.NAME" and "model" in keys:
            continue  # run.json's ``model`` is MODEL.NAME
        if (hashable(runs[key]).groupby(workload).nunique(dropna=False) > 1).any():
            keys.append(key)
    for key in extra:
        if key not in keys and key not in IDENTITY:
            keys.append(key)
    return keys


def hashable(column: pd.Series) -> pd.Series:
    """A column usable as a group key: missing values read ``<unset>``, lists are tuples."""

    def fix(v: object) -> object:
        if isinstance(v, list):
            return tuple(v)
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return UNSET
        return v

    return column.map(fix).astype(object)


def aggregate_configs(runset: RunSet, per_run: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per configuration (IDENTITY + ``keys``) with the repeat statistics."""
    columns = [*IDENTITY, *keys]
    runs = runset.included[["run_id", "n_hosts", "scaling", "num_params", "seed", *columns]].copy()
    for key in columns:
        runs[key] = hashable(runs[key])
    runs["scaling"] = hashable(runs["scaling"])
    table = runs.merge(per_run, on="run_id", how="left")
    rows = []
    # Runs whose ranks spanned several hosts are never pooled with single-host runs.
    group_cols = columns + ["scaling", "n_hosts"]
    for values, group in table.groupby(group_cols, sort=True, dropna=False):
        row = dict(zip(group_cols, values))
        medians = group["throughput_median"].dropna()
        row["n_runs"] = len(group)
        row["throughput_median"] = float(medians.median()) if len(medians) else float("nan")
        if len(medians) >= 2:
            row["throughput_q1"], row["throughput_q3"] = (
                float(medians.quantile(0.25)),
                float(medians.quantile(0.75)),
            )
            row["iqr_over"] = "runs"
        else:
            row["throughput_q1"] = float(group["throughput_q1"].iloc[0])
            row["throughput_q3"] = float(group["throughput_q3"].iloc[0])
            row["iqr_over"] = "steps"
        for col in ("compute_median", "data_wait_share", "step_s", "epoch_s", *MEASURED):
            row[col] = float(group[col].median())
        row["n_hosts"] = int(row["n_hosts"])
        row["num_params"] = int(group["num_params"].max() or 0)
        row["steady_flag"] = NO_STEADY if (group["steady_flag"] == NO_STEADY).any() else ""
        row["run_ids"] = tuple(group["run_id"])
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=[*columns, "scaling", "n_runs", "throughput_median"])
    for col in ("nodes", "gpus", "batch_size_per_gpu", "global_batch"):
        out[col] = out[col].astype(int)
    return out
