"""``build_report``: tables as CSV, plots and ``report.md`` for a sweep."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from analysis.common import AnalysisError
from analysis.pipeline import Analysis, Options, analyze
from analysis.publish import ReportResult, push_to_wandb
from analysis.report_text import render_markdown
from analysis.sources import load_sources

FORMATS = ("png", "svg")
# SVG doubles the drawing time of a report (benchmarks/README.md, P6): asked for, not default.
DEFAULT_FORMATS = ("png",)


def default_out_dir(sources: Sequence[str | os.PathLike]) -> Path:
    return Path(sources[0]) / "analysis" if sources else Path("reports") / "analysis"


def build_report(
    sources: Sequence[str | os.PathLike] = (),
    out_dir: str | os.PathLike | None = None,
    *,
    wandb_path: str | None = None,
    group: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
    by: Sequence[str] = (),
    target: float | None = None,
    target_fraction: float | None = None,
    data_bound_threshold: float = 0.2,
    predict_gpus: Sequence[int] = (16, 64, 256),
    formats: Sequence[str] = DEFAULT_FORMATS,
    push_wandb: bool = False,
    commbench: Sequence[str | os.PathLike] = (),
) -> ReportResult:
    """Load runs from sweep/run directories and/or W&B, analyse them and write
    ``scaling.csv``, ``convergence.csv``, ``time_to_target.csv``, ``model_fit.csv``,
    ``runs.csv``, the plots and ``report.md`` into ``out_dir``."""
    formats = [f.strip().lower() for f in formats if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise AnalysisError(f"--format {','.join(formats)}: choose from {', '.join(FORMATS)}")
    if target is not None and target_fraction is not None:
        raise AnalysisError("give either --target or --target-fraction, not both")
    with plot_workers() as pool:
        runset = load_sources(
            list(sources), wandb_path=wandb_path, group=group, cache_dir=cache_dir, refresh=refresh
        )
        options = Options(
            by=list(by),
            target=target,
            target_fraction=target_fraction,
            data_bound_threshold=data_bound_threshold,
            predict_gpus=list(predict_gpus),
            # commbench.json files given, and any inside the sweep directories
            commbench=[str(p) for p in (*commbench, *sources)],
        )
        analysis = analyze(runset, options)
        out = Path(out_dir) if out_dir is not None else default_out_dir(list(sources))
        out.mkdir(parents=True, exist_ok=True)
        csvs = write_csvs(analysis, out)
        stems = render_plots(analysis, out, formats, pool)
    report = out / "report.md"
    report.write_text(
        render_markdown(
            analysis, stems, formats, sources=[str(s) for s in sources], wandb_path=wandb_path, group=group
        )
    )
    result = ReportResult(
        out_dir=out,
        report=report,
        csvs=csvs,
        plots={k: [Path(f"{s}.{f}") for s in v for f in formats] for k, v in stems.items()},
        analysis=analysis,
    )
    if push_wandb:
        result.wandb_run_dir = push_to_wandb(result, wandb_path=wandb_path, group=group)
    return result


def write_csvs(analysis: Analysis, out: Path) -> dict[str, Path]:
    tables: dict[str, pd.DataFrame] = {
        "scaling": analysis.scaling,
        "convergence": analysis.curves,
        "time_to_target": analysis.time_to_target,
        "model_fit": analysis.model_fit,
        "runs": runs_table(analysis),
    }
    for key, table in analysis.comparisons.items():
        tables[f"by_{key}"] = table
    paths = {}
    for name, table in tables.items():
        path = out / f"{name}.csv"
        table.to_csv(path, index=False, float_format="%.6g")
        paths[name] = path
    return paths


def runs_table(analysis: Analysis) -> pd.DataFrame:
    """Every run with its state and, for excluded runs, why."""
    runs = analysis.runset.runs
    columns = [
        "run_name",
        "sweep",
        "workload",
        "strategy",
        "nodes",
        "gpus",
        "batch_size_per_gpu",
        "global_batch",
        "seed",
        "state",
        "included",
        "exclude_reason",
        "error",
        "run_dir",
    ]
    table = runs[[c for c in columns if c in runs]].copy()
    stats = analysis.per_run.rename(columns={"run_id": "_id"})
    table["_id"] = runs["run_id"]
    return table.merge(stats, on="_id", how="left").drop(columns="_id")


# The figures a report can have; each draws from its tables into out_dir.
FIGURES = ("speedup", "efficiency", "throughput", "convergence", "time_to_target", "by_key")
DRAW_ORDER = ("convergence", "time_to_target", "speedup", "by_key", "throughput", "efficiency")


def _draw(figure: str, *args: object) -> list[Path]:
    from analysis import plots  # matplotlib: imported by the drawing process only

    draws: dict[str, Callable[..., list[Path]]] = {
        "speedup": plots.speedup_plot,
        "efficiency": plots.efficiency_plot,
        "throughput": plots.throughput_plot,
        "convergence": plots.convergence_plot,
        "time_to_target": plots.time_to_target_plot,
        "by_key": plots.by_key_plot,
    }
    return draws[figure](*args)


def _import_plots() -> None:
    # Niced: while this process reads the runs, the helpers' import must not slow it down.
    os.nice(5)
    from analysis import plots  # noqa: F401


@contextlib.contextmanager
def plot_workers(workers: int | None = None) -> Iterator[ProcessPoolExecutor | None]:
    """Processes that draw the figures, started first so that they import matplotlib while
    this process reads and analyses the runs (benchmarks/README.md, P6). None (draw here)
    on one core or where fork is unavailable."""
    workers = min(os.cpu_count() or 1, len(FIGURES)) if workers is None else workers
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_import_plots) as pool:
        pool.submit(int)  # starts the workers now
        yield pool


def render_plots(
    analysis: Analysis, out: Path, formats: Sequence[str], pool: ProcessPoolExecutor | None = None
) -> dict[str, list[Path]]:
    """Every figure of the report, drawn in ``pool`` when given (the figures are independent)."""
    jobs: list[tuple[str, str, tuple]] = []
    if len(analysis.scaling):
        jobs.append(("speedup", "speedup", (analysis.scaling, analysis.model_fit, analysis.keys)))
        jobs.append(("efficiency", "efficiency", (analysis.scaling, analysis.keys)))
        jobs.append(("throughput", "throughput", (analysis.scaling, analysis.keys)))
    if len(analysis.curves):
        jobs.append(("convergence", "convergence", (analysis.curves,)))
    if len(analysis.time_to_target):
        jobs.append(("time_to_target", "time_to_target", (analysis.time_to_target,)))
    for key, table in analysis.comparisons.items():
        if len(table):
            jobs.append((f"by:{key}", "by_key", (table, key)))
    if pool is None:
        return {name: _draw(figure, *args, out, formats) for name, figure, args in jobs}
    # Longest first (measured drawing times), so that no long figure starts last.
    order = sorted(jobs, key=lambda job: DRAW_ORDER.index(job[1]))
    futures = {name: pool.submit(_draw, figure, *args, out, formats) for name, figure, args in order}
    return {name: futures[name].result() for name, _, _ in jobs}
