"""From a RunSet to every table of the analysis (no files written here)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from analysis.commbench_data import CommbenchError, load_commbench
from analysis.commmodel import model_fit_table
from analysis.convergence import (
    compare_by_key,
    convergence_curves,
    resolve_targets,
    run_time_to_target,
    time_to_target_table,
)
from analysis.load import AnalysisError, RunSet
from analysis.scaling import EFFICIENCY_THRESHOLD, scaling_table
from analysis.throughput import aggregate_configs, hashable, run_throughput, varying_config_keys

WORKERS_KEY = "DATA.NUM_WORKERS"


@dataclass
class Options:
    by: Sequence[str] = ()
    target: float | None = None
    target_fraction: float | None = None
    data_bound_threshold: float = 0.2
    efficiency_threshold: float = EFFICIENCY_THRESHOLD
    predict_gpus: Sequence[int] = (16, 64, 256)
    #: commbench.json files, or directories searched for them (``harness commbench``).
    commbench: Sequence[str] = ()


@dataclass
class Analysis:
    runset: RunSet
    options: Options
    keys: list[str]
    per_run: pd.DataFrame
    configs: pd.DataFrame
    scaling: pd.DataFrame
    model_fit: pd.DataFrame
    curves: pd.DataFrame
    targets: dict[str, float]
    time_to_target_runs: pd.DataFrame
    time_to_target: pd.DataFrame
    comparisons: dict[str, pd.DataFrame] = field(default_factory=dict)
    commbench: list[dict] = field(default_factory=list)


def check_by_keys(runset: RunSet, by: Sequence[str]) -> list[str]:
    """The ``--by`` keys, each checked to be a column of the runs table."""
    keys = []
    for key in by:
        key = key.strip()
        if not key:
            continue
        if key not in runset.runs.columns:
            close = difflib.get_close_matches(key, [str(c) for c in runset.runs.columns], n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise AnalysisError(f"--by {key}: no run has this config key or run.json field.{hint}")
        keys.append(key)
    return keys


def analyze(runset: RunSet, options: Options | None = None) -> Analysis:
    """Every table: throughput per run and per configuration, scaling, the
    communication model, convergence curves, time to target, comparisons."""
    options = options or Options()
    if not 0 <= options.data_bound_threshold <= 1:
        raise AnalysisError(f"--data-bound-threshold must lie in [0, 1], got {options.data_bound_threshold}")
    by = check_by_keys(runset, options.by)
    included = runset.included
    keys = varying_config_keys(included, by) if len(included) else list(by)
    per_run = run_throughput(runset)
    configs = aggregate_configs(runset, per_run, keys)
    scaling = scaling_table(configs, keys, options.data_bound_threshold, options.efficiency_threshold)
    try:
        commbench = load_commbench(options.commbench)
    except CommbenchError as e:
        raise AnalysisError(str(e)) from e
    model_fit = (
        model_fit_table(scaling, keys, options.predict_gpus, commbench) if len(scaling) else pd.DataFrame()
    )
    curves = convergence_curves(runset, keys)
    targets = resolve_targets(runset, options.target, options.target_fraction)
    ttt_runs = run_time_to_target(runset, targets)
    ttt = time_to_target_table(runset, ttt_runs, keys)
    comparison_keys = list(by)
    if (
        WORKERS_KEY in included
        and WORKERS_KEY not in comparison_keys
        and hashable(included[WORKERS_KEY]).nunique() > 1
    ):
        comparison_keys.append(WORKERS_KEY)
    comparisons = {key: compare_by_key(runset, per_run, ttt_runs, key) for key in comparison_keys}
    return Analysis(
        runset=runset,
        options=options,
        keys=keys,
        per_run=per_run,
        configs=configs,
        scaling=scaling,
        model_fit=model_fit,
        curves=curves,
        targets=targets,
        time_to_target_runs=ttt_runs,
        time_to_target=ttt,
        comparisons=comparisons,
        commbench=commbench,
    )
