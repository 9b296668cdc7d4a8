"""Runs from every kind of source (run directories, W&B) in one RunSet."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from analysis.common import AnalysisError
from analysis.load import RunSet, empty_runs, load_run_dirs
from analysis.wandb_source import load_wandb


def combine(parts: Sequence[RunSet]) -> RunSet:
    """One RunSet from several (e.g. two sweeps, or a sweep and a W&B group). A W&B
    run whose run directory is also given is kept once, from the directory."""
    frames = [p.runs for p in parts if len(p.runs)]
    runs = pd.concat(frames, ignore_index=True, sort=False) if frames else empty_runs()
    wandb_ids = runs["wandb_id"] if "wandb_id" in runs else pd.Series("", index=runs.index)
    on_disk = set(wandb_ids[runs["source"] == "dir"].dropna()) - {""}
    duplicate = (runs["source"] == "wandb") & wandb_ids.isin(on_disk)
    dropped = set(runs.loc[duplicate, "run_id"])
    runs = runs[~duplicate].reset_index(drop=True)
    dup = runs["run_id"][runs["run_id"].duplicated()]
    if len(dup):
        raise AnalysisError(f"run {dup.iloc[0]!r} was given twice (by two sources); give each run once")
    records = pd.concat([p.records for p in parts], ignore_index=True, sort=False)
    out = RunSet(runs=runs, records=records[~records["run_id"].isin(dropped)].reset_index(drop=True))
    for p in parts:
        out.manifests.update(p.manifests)
    return out


def load_sources(
    paths: Sequence[str | os.PathLike] = (),
    wandb_path: str | None = None,
    group: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
) -> RunSet:
    """Runs from run/sweep directories and/or a W&B group, in one RunSet."""
    parts = []
    if paths:
        parts.append(load_run_dirs(paths))
    if wandb_path:
        parts.append(load_wandb(wandb_path, group=group, cache_dir=cache_dir, refresh=refresh))
    if not parts:
        raise AnalysisError("no runs to analyze: give at least one SWEEP_DIR or --wandb ENTITY/PROJECT")
    return parts[0] if len(parts) == 1 else combine(parts)
