"""``--push-wandb``: the analysis as one W&B run (job_type=analysis) in the sweep's group."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from analysis.pipeline import Analysis

DEFAULT_PROJECT = "scaling-harness"


@dataclass
class ReportResult:
    """What ``analysis.report.build_report`` wrote, and what ``push_to_wandb`` publishes."""

    out_dir: Path
    report: Path
    csvs: dict[str, Path]
    #: Plot files written (every format), grouped by section.
    plots: dict[str, list[Path]]
    analysis: Analysis
    wandb_run_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def plot_files(self) -> list[Path]:
        return [p for files in self.plots.values() for p in files]


def _most_common(values: pd.Series) -> str:
    counts = Counter(str(v) for v in values if isinstance(v, str) and v)
    return counts.most_common(1)[0][0] if counts else ""


def _wandb_mode() -> Literal["online", "offline", "disabled"] | None:
    """``WANDB_MODE`` (with W&B's old names ``run`` and ``dryrun``), or None when unset."""
    value = os.environ.get("WANDB_MODE", "").strip().lower()
    if value in ("online", "run"):
        return "online"
    if value in ("offline", "dryrun"):
        return "offline"
    if value == "disabled":
        return "disabled"
    return None


def push_to_wandb(
    result: ReportResult, wandb_path: str | None = None, group: str | None = None
) -> Path | None:
    """Log the CSV tables as ``wandb.Table`` and the PNG plots as ``wandb.Image``.
    The mode comes from ``WANDB_MODE`` (offline writes ``<out>/wandb/offline-run-*``).
    Returns the local run directory."""
    import wandb

    runs = result.analysis.runset.runs
    entity, project = "", ""
    if wandb_path:
        entity, _, project = wandb_path.rpartition("/")
    project = project or _most_common(runs.get("wandb_project", pd.Series(dtype=object))) or DEFAULT_PROJECT
    entity_or_none = entity or _most_common(runs.get("wandb_entity", pd.Series(dtype=object))) or None
    group = (
        group
        or _most_common(runs.get("wandb_group", pd.Series(dtype=object)))
        or _most_common(runs.get("sweep", pd.Series(dtype=object)))
        or None
    )
    run = wandb.init(
        project=project,
        entity=entity_or_none,
        group=group,
        job_type="analysis",
        name=f"analysis-{group}" if group else "analysis",
        dir=str(result.out_dir),
        config={
            "sources": [str(p) for p in result.analysis.runset.manifests] or None,
            "by": list(result.analysis.options.by),
            "targets": result.analysis.targets,
        },
        reinit="finish_previous",
        # Read now, not from W&B's process-wide settings, which keep the first mode they saw.
        mode=_wandb_mode(),
    )
    try:
        for name, path in result.csvs.items():
            table = pd.read_csv(path)
            if len(table):
                run.log({f"analysis/{name}": wandb.Table(dataframe=table.astype(str))})
        for section, files in result.plots.items():
            for file in files:
                if file.suffix == ".png":
                    run.log({f"plots/{file.stem}": wandb.Image(str(file), caption=section)})
        run.save(str(result.report), base_path=str(result.out_dir), policy="now")
        run_dir = Path(run.dir).parent
    finally:
        run.finish()
    return run_dir
