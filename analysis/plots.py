"""Figures of a sweep (matplotlib, Agg backend; every figure as PNG and/or SVG).

Each function takes the analysis tables, writes one figure per workload (file
names ``<figure>-<workload>.<ext>``) and returns the stem paths written, without
extension, so the report can link whichever formats were asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

STYLE = {"ddp": "-", "dp": "--", "single": ":"}
MARKER = {"ddp": "o", "dp": "s", "single": "^"}
# Enough for a report page; raster time grows with the pixel count.
DPI = 90


def save(fig: plt.Figure, out_dir: Path, name: str, formats: Sequence[str], laid_out: bool = False) -> Path:
    """Write ``fig`` in each format. The layout is fixed once (``tight_layout``, one text
    measurement pass) instead of ``bbox_inches="tight"``, which draws every figure twice
    per format; text layout is most of a draw (benchmarks/README.md, P6)."""
    stem = out_dir / name
    if not laid_out:
        fig.tight_layout()
    for fmt in formats:
        fig.savefig(f"{stem}.{fmt}", dpi=DPI)
    plt.close(fig)
    return stem


def fixed_margins(
    fig: plt.Figure,
    *,
    right: float = 1.0,
    left_in: float = 0.85,
    right_in: float = 0.25,
    bottom_in: float = 0.6,
    top_in: float = 0.55,
    gap_in: tuple[float, float] = (0.85, 0.8),
) -> None:
    """Margins in inches, so that axis labels and titles fit at any figure size without
    a text-measuring layout pass. ``right`` reserves the rest of the width (a legend);
    ``gap_in`` is the (horizontal, vertical) space between panels."""
    width, height = fig.get_size_inches()
    spec = fig.axes[0].get_subplotspec() if fig.axes else None
    rows, cols = spec.get_gridspec().get_geometry() if spec is not None else (1, 1)
    left, top = left_in / width, 1 - top_in / height
    right_edge = right - right_in / width
    bottom = bottom_in / height
    panel_w = (right_edge - left) * width / cols - gap_in[0] * (cols - 1) / cols
    panel_h = (top - bottom) * height / rows - gap_in[1] * (rows - 1) / rows
    fig.subplots_adjust(
        left=left,
        right=right_edge,
        bottom=bottom,
        top=top,
        wspace=gap_in[0] / max(panel_w, 1e-3),
        hspace=gap_in[1] / max(panel_h, 1e-3),
    )


def _colors(labels: Sequence[object]) -> dict[object, tuple]:
    unique = list(dict.fromkeys(labels))
    cmap = plt.get_cmap("tab10" if len(unique) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(unique)}


def _key_suffix(row: dict, keys: Sequence[str]) -> str:
    return "".join(f", {k}={row[k]}" for k in keys)


def _gpu_axis(ax: plt.Axes, gpus: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted({int(g) for g in gpus})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()


def speedup_plot(
    scaling: pd.DataFrame, model_fit: pd.DataFrame, keys: Sequence[str], out_dir: Path, formats: Sequence[str]
) -> list[Path]:
    """Speedup vs GPUs with the ideal line; one line per batch size, DP dashed,
    DDP solid, model predictions dotted."""
    written = []
    for (workload, mode), table in scaling.groupby(["workload", "scaling"]):
        fixed = "batch_size_per_gpu" if mode == "weak" else "global_batch"
        fig, ax = plt.subplots(figsize=(7.5, 5))
        colors = _colors(table[fixed])
        all_gpus = list(table["gpus"])
        series_cols = ["strategy", fixed, *keys]
        for values, series in table.groupby(series_cols, sort=True):
            row = dict(zip(series_cols, values))
            series = series.sort_values("gpus")
            pts = series.dropna(subset=["speedup"])
            if pts.empty:
                continue
            batch_label = f"{row[fixed]}/GPU" if mode == "weak" else f"global {row[fixed]}"
            ax.plot(
                pts["gpus"],
                pts["speedup"],
                linestyle=STYLE.get(row["strategy"], "-"),
                marker=MARKER.get(row["strategy"], "o"),
                color=colors[row[fixed]],
                label=f"{row['strategy'].upper()} {batch_label}{_key_suffix(row, keys)}",
            )
            flagged = pts[pts["flags"].str.contains("superlinear", na=False)]
            ax.scatter(
                flagged["gpus"],
                flagged["speedup"],
                s=160,
                facecolors="none",
                edgecolors="red",
                zorder=5,
                label="E > 1 (suspect)" if len(flagged) else None,
            )
            if len(model_fit):
                fit = model_fit[
                    (model_fit["workload"] == workload)
                    & (model_fit["scaling"] == mode)
                    & (model_fit["strategy"] == row["strategy"])
                    & (model_fit[fixed] == row[fixed])
                    & model_fit["kind"].isin(["measured", "prediction"])
                ]
                for k in keys:
                    if k in fit:
                        fit = fit[fit[k] == row[k]]
                if len(fit):
                    fit = fit.sort_values("gpus")
                    all_gpus += list(fit["gpus"])
                    ax.plot(
                        fit["gpus"],
                        fit["gpus"] * fit["predicted_efficiency"],
                        linestyle=":",
                        color=colors[row[fixed]],
                        alpha=0.8,
                        label=f"model: {row['strategy'].upper()} {batch_label} (prediction)",
                    )
        top = max(all_gpus) if all_gpus else 1
        ax.plot([1, top], [1, top], color="grey", linewidth=1, label="ideal (linear)")
        _gpu_axis(ax, all_gpus)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("GPUs (devices sharing the global batch)")
        ax.set_ylabel("speedup S(N) = X(N) / X(1)  (×)")
        ax.set_title(f"{workload}: {mode} scaling speedup")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        written.append(save(fig, out_dir, f"speedup-{workload}-{mode}", formats))
    return written


def efficiency_plot(
    scaling: pd.DataFrame, keys: Sequence[str], out_dir: Path, formats: Sequence[str]
) -> list[Path]:
    """Grouped bars of efficiency per GPU count; hatched bars are flagged."""
    written = []
    for (workload, mode), table in scaling.groupby(["workload", "scaling"]):
        table = table.dropna(subset=["efficiency"])
        if table.empty:
            continue
        fixed = "batch_size_per_gpu" if mode == "weak" else "global_batch"
        series_cols = ["strategy", fixed, *keys]
        series = list(table.groupby(series_cols, sort=True))
        gpus = sorted(table["gpus"].unique())
        width = 0.8 / len(series)
        fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(gpus) * max(1, len(series)) * 0.5), 4.5))
        colors = _colors([v for v, _ in series])
        for i, (values, part) in enumerate(series):
            row = dict(zip(series_cols, values))
            x = np.array([gpus.index(g) for g in part["gpus"]]) + (i - (len(series) - 1) / 2) * width
            hatches = ["//" if f else "" for f in part["flags"].str.contains("superlinear", na=False)]
            unit = "/GPU" if mode == "weak" else " global"
            bars = ax.bar(
                x,
                part["efficiency"],
                width=width,
                color=colors[values],
                label=f"{row['strategy'].upper()} {row[fixed]}{unit}{_key_suffix(row, keys)}",
            )
            for bar, hatch in zip(bars, hatches):
                bar.set_hatch(hatch)
            for xi, e in zip(x, part["efficiency"]):
                ax.text(xi, e + 0.01, f"{e:.2f}", ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="grey", linewidth=1)
        ax.set_xticks(range(len(gpus)))
        ax.set_xticklabels([str(g) for g in gpus])
        ax.set_xlabel("GPUs")
        ax.set_ylabel("efficiency E(N) (1 = linear)")
        ax.set_ylim(0, max(1.15, float(table["efficiency"].max()) + 0.1))
        ax.set_title(f"{workload}: {mode} scaling efficiency (hatched: E > 1, suspect)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        written.append(save(fig, out_dir, f"efficiency-{workload}-{mode}", formats))
    return written


def throughput_plot(
    scaling: pd.DataFrame, keys: Sequence[str], out_dir: Path, formats: Sequence[str]
) -> list[Path]:
    """Throughput vs per-GPU batch, one line per (strategy, GPUs), IQR as error bars."""
    written = []
    table_all = scaling.drop_duplicates(
        subset=["workload", "strategy", "nodes", "gpus", "batch_size_per_gpu", *keys]
    )
    for workload, table in table_all.groupby("workload"):
        fig, ax = plt.subplots(figsize=(7.5, 5))
        colors = _colors(table["gpus"])
        series_cols = ["strategy", "gpus", "nodes", *keys]
        for values, part in table.groupby(series_cols, sort=True):
            row = dict(zip(series_cols, values))
            part = part.sort_values("batch_size_per_gpu")
            err = np.vstack(
                [
                    part["throughput_median"] - part["throughput_q1"],
                    part["throughput_q3"] - part["throughput_median"],
                ]
            ).clip(min=0)
            nodes = f", {row['nodes']} nodes" if row["nodes"] > 1 else ""
            ax.errorbar(
                part["batch_size_per_gpu"],
                part["throughput_median"],
                yerr=err,
                capsize=3,
                linestyle=STYLE.get(row["strategy"], "-"),
                marker=MARKER.get(row["strategy"], "o"),
                color=colors[row["gpus"]],
                label=f"{row['strategy'].upper()} {row['gpus']} GPU{nodes}{_key_suffix(row, keys)}",
            )
        _log2_batch_axis(ax, table["batch_size_per_gpu"])
        ax.set_xlabel("batch size per GPU (samples)")
        ax.set_ylabel("steady-state throughput (img/s, all GPUs)")
        ax.set_title(f"{workload}: throughput vs batch size (bars: interquartile range)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        written.append(save(fig, out_dir, f"throughput-{workload}", formats))
    return written


def _log2_batch_axis(ax: plt.Axes, batches: pd.Series) -> None:
    """A log2 x axis ticked at exactly the batch sizes that were run."""
    ax.set_xscale("log", base=2)
    ticks = sorted(batches.unique())
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()


def convergence_plot(curves: pd.DataFrame, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    """Loss and primary metric against epoch, samples and wall time; median with min-max band."""
    written = []
    axes_spec = [("epoch", "epochs completed"), ("samples", "samples seen"), ("time_s", "wall time (s)")]
    for workload, table in curves.groupby("workload"):
        metrics = [
            ("train", "train/loss"),
            (
                "val",
                table.loc[table["kind"] == "val", "metric"].iloc[0]
                if (table["kind"] == "val").any()
                else None,
            ),
        ]
        metrics = [(k, m) for k, m in metrics if m]
        fig, grid = plt.subplots(len(metrics), 3, figsize=(15, 4.2 * len(metrics)), squeeze=False)

        # Colour tells configurations apart (GPUs, batch, varying keys); the line style tells
        # the strategy, so DP and DDP of one configuration share a colour.
        def colour_key(row: pd.Series) -> str:
            return str(row["config"]).removeprefix(f"{row['strategy']} ")

        colors = _colors(table.apply(colour_key, axis=1))
        for r, (kind, metric) in enumerate(metrics):
            part = table[(table["kind"] == kind) & (table["metric"] == metric)].copy()
            if kind == "val":  # a val record of epoch e is taken after e + 1 completed epochs
                part["epoch"] = part["epoch"] + 1
            for c, (axis, axis_label) in enumerate(axes_spec):
                ax = grid[r][c]
                for config, curve in part.groupby("config", sort=False):
                    curve = curve.sort_values(axis)
                    first = curve.iloc[0]
                    color = colors[colour_key(first)]
                    ax.plot(
                        curve[axis],
                        curve["median"],
                        color=color,
                        linestyle=STYLE.get(first["strategy"], "-"),
                        marker="o" if kind == "val" else None,
                        markersize=3,
                        label=config,
                    )
                    if (curve["n_runs"] > 1).any():
                        ax.fill_between(curve[axis], curve["min"], curve["max"], color=color, alpha=0.2)
                ax.set_xlabel(axis_label)
                ax.set_ylabel(metric)
                ax.set_title(f"{metric} vs {axis_label}")
                ax.grid(True, alpha=0.3)
        handles, labels = grid[0][0].get_legend_handles_labels()
        fig.suptitle(f"{workload}: convergence (median over repeats, band: min–max; DP dashed, DDP solid)")
        # Fixed margins, not tight_layout: measuring the tick labels of six panels was a third
        # of this figure's time (benchmarks/README.md, P6). The right 20% holds the legend.
        fixed_margins(fig, right=0.8, top_in=0.75)
        fig.legend(
            handles, labels, loc="upper left", bbox_to_anchor=(0.805, 0.95), fontsize=8, title="configuration"
        )
        written.append(save(fig, out_dir, f"convergence-{workload}", formats, laid_out=True))
    return written


def time_to_target_plot(ttt: pd.DataFrame, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    """Wall time to target per configuration, and epochs/samples to target vs global batch."""
    written = []
    for workload, table in ttt.groupby("workload"):
        table = table.sort_values(["global_batch", "strategy", "gpus"])
        fig, (ax_time, ax_epochs, ax_samples) = plt.subplots(1, 3, figsize=(16, 5))
        y = np.arange(len(table))
        times = table["time_s_median"].fillna(0)
        err = np.vstack(
            [
                (table["time_s_median"] - table["time_s_q1"]).fillna(0),
                (table["time_s_q3"] - table["time_s_median"]).fillna(0),
            ]
        ).clip(min=0)
        ax_time.barh(
            y,
            times,
            xerr=err,
            color=["tab:blue" if s == "reached" else "tab:orange" for s in table["status"]],
        )
        for yi, t, status in zip(y, table["time_s_median"], table["status"]):
            text = f"{t:.3g} s" if np.isfinite(t) else "not reached"
            partly = "" if status in ("reached", "not reached") else f" ({status})"
            ax_time.text(t if np.isfinite(t) else 0, yi, f" {text}{partly}", va="center", fontsize=7)
        ax_time.set_yticks(y)
        ax_time.set_yticklabels(table["config"], fontsize=7)
        ax_time.set_xlabel("wall time to target (s)")
        target = table["target"].iloc[0]
        ax_time.set_title(f"time to {table['metric'].iloc[0]} ≥ {target:.3g}")
        for ax, column, label in (
            (ax_epochs, "epochs_median", "epochs to target"),
            (ax_samples, "samples_median", "samples to target"),
        ):
            for strategy, part in table.groupby("strategy"):
                part = part.groupby("global_batch")[column].median().dropna()
                ax.plot(
                    part.index,
                    part.values,
                    linestyle=STYLE.get(strategy, "-"),
                    marker=MARKER.get(strategy, "o"),
                    label=strategy.upper(),
                )
            _log2_batch_axis(ax, table["global_batch"])
            ax.set_xlabel("global batch (samples per step)")
            ax.set_ylabel(label + (" (samples)" if column == "samples_median" else " (epochs)"))
            ax.set_title(f"batch-size effect: {label}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{workload}: time to target (orange: not reached by every repeat)")
        fig.tight_layout()
        written.append(save(fig, out_dir, f"time-to-target-{workload}", formats, laid_out=True))
    return written


def by_key_plot(comparison: pd.DataFrame, key: str, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    """Per value of ``key``: throughput, data-wait share and epoch time (the loader-worker
    study when ``key`` is DATA.NUM_WORKERS), and the best primary metric."""
    written = []
    safe_key = key.replace(".", "_").replace("/", "_")
    for workload, table in comparison.groupby("workload"):
        panels = [
            ("throughput_median", "throughput (img/s)"),
            ("data_wait_share", "data-wait share (0–1)"),
            ("epoch_s", "epoch time (s)"),
            ("best_median", "best primary metric"),
        ]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 4.2))
        numeric = (
            pd.api.types.is_numeric_dtype(pd.to_numeric(table[key], errors="coerce").dropna())
            and pd.to_numeric(table[key], errors="coerce").notna().all()
        )
        values = sorted(table[key].unique(), key=lambda v: (str(type(v)), v))
        for ax, (column, label) in zip(axes, panels):
            for (strategy, gpus), part in table.groupby(["strategy", "gpus"]):
                part = part.set_index(key).reindex(values)
                x = np.asarray(values, dtype=float) if numeric else np.arange(len(values))
                ax.plot(
                    x,
                    part[column],
                    linestyle=STYLE.get(strategy, "-"),
                    marker=MARKER.get(strategy, "o"),
                    label=f"{strategy.upper()} {gpus} GPU",
                )
            if not numeric:
                ax.set_xticks(range(len(values)))
                ax.set_xticklabels([str(v) for v in values], rotation=20)
            ax.set_xlabel(key)
            ax.set_ylabel(label)
            ax.set_title(f"{label} vs {key}")
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{workload}: comparison by {key}")
        fig.tight_layout()
        name = "data-wait-vs-workers" if key == "DATA.NUM_WORKERS" else f"by-{safe_key}"
        written.append(save(fig, out_dir, f"{name}-{workload}", formats, laid_out=True))
    return written
