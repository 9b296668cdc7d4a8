"""The figures of the shipped studies (``configs/sweeps/studies/``, docs/studies.md).

Each function takes a :class:`analysis.load.RunSet` of one study's sweep and writes one
figure; ``python -m analysis.study_plots STUDY SWEEP_DIR --out DIR`` draws it from run
directories. Like the rest of ``analysis`` this reads metrics only (no torch, no
training code).

| study | figure |
|---|---|
| fer_optimizers | loss and accuracy vs epoch, train (solid) and val (dashed), one colour per optimizer |
| fer_workers | data-loading share of the step vs data-loader workers |
| fer_amp | epoch time and final accuracy per precision, side by side |
| hrnet_dp_epoch_time | time per epoch vs GPUs, one line per per-GPU batch (and strategy) |
| hrnet_batch_convergence | AP vs epoch and vs wall time per global batch, time to target marked |
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analysis.load import RunSet, load_run_dirs


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _runs(runset: RunSet) -> pd.DataFrame:
    runs = runset.included
    if runs.empty:
        raise ValueError("no completed runs to plot")
    return runs


def _records(runset: RunSet, kind: str, column: str) -> pd.DataFrame:
    frame = runset.included_records(kind)
    if column not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame[column].notna()]


def _final_epoch_value(runset: RunSet, run_id: str, kind: str, column: str) -> float:
    frame = _records(runset, kind, column)
    frame = frame[frame["run_id"] == run_id]
    return float(frame[column].iloc[-1]) if len(frame) else float("nan")


def _integer_ticks(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    _pyplot().close(fig)
    return out


# ------------------------------------------------------------- FER studies
def optimizer_convergence(runset: RunSet, out: Path) -> Path:
    """Loss (left) and accuracy (right) vs epoch; train solid, validation dashed."""
    plt = _pyplot()
    runs = _runs(runset)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (_, run) in enumerate(runs.sort_values("TRAIN.OPTIMIZER").iterrows()):
        colour = colours[i % len(colours)]
        label = f"{run['TRAIN.OPTIMIZER']} (lr {run['TRAIN.LR']:g})"
        panels = (
            ("epoch", "train/loss", ax_loss, "-"),
            ("val", "val/loss", ax_loss, "--"),
            ("epoch", "train/acc", ax_acc, "-"),
            ("val", "val/accuracy", ax_acc, "--"),
        )
        for kind, column, ax, style in panels:
            frame = _records(runset, kind, column)
            frame = frame[frame["run_id"] == run["run_id"]]
            if len(frame):
                # Epoch records are written at the end of epoch e: plot them at e + 1 like validation.
                ax.plot(
                    frame["epoch"] + 1,
                    frame[column],
                    style,
                    color=colour,
                    label=label if style == "-" else None,
                )
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (train solid, val dashed)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (train solid, val dashed)")
    ax_acc.legend(fontsize=8)
    _integer_ticks(ax_loss, ax_acc)
    return _save(fig, out)


def data_wait_vs_workers(runset: RunSet, out: Path) -> Path:
    """Share of the step spent waiting for data, per data-loader worker count (the
    median over steady windows, with the epoch's share as a cross-check)."""
    plt = _pyplot()
    runs = _runs(runset)
    train = _records(runset, "train", "time/data_wait_share")
    if "steady" in train.columns:
        train = train[train["steady"].fillna(False).astype(bool)]
    rows = []
    for _, run in runs.iterrows():
        windows = train[train["run_id"] == run["run_id"]]["time/data_wait_share"]
        rows.append(
            {
                "workers": int(run["DATA.NUM_WORKERS"]),
                "strategy": run["DIST.STRATEGY"],
                "window": windows.median() if len(windows) else float("nan"),
                "epoch": _final_epoch_value(runset, run["run_id"], "epoch", "time/data_wait_share"),
            }
        )
    table = pd.DataFrame(rows).sort_values("workers")
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, group in table.groupby("strategy"):
        ax.plot(group["workers"], group["window"], "o-", label=f"{strategy}: median of steady windows")
        ax.plot(group["workers"], group["epoch"], "x:", label=f"{strategy}: whole epoch")
    ax.set(xlabel="DATA.NUM_WORKERS", ylabel="data wait / step time", title="data-loading share vs workers")
    ax.set_xticks(sorted(table["workers"].unique()))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _save(fig, out)


def amp_time_and_accuracy(runset: RunSet, out: Path) -> Path:
    """Epoch time (median over epochs) and final validation accuracy per TRAIN.AMP."""
    plt = _pyplot()
    runs = _runs(runset)
    epochs = _records(runset, "epoch", "time/epoch_s")
    rows = []
    for _, run in runs.iterrows():
        times = epochs[epochs["run_id"] == run["run_id"]]["time/epoch_s"]
        rows.append(
            {
                "amp": run["TRAIN.AMP"],
                "epoch_s": times.median() if len(times) else float("nan"),
                "accuracy": _final_epoch_value(runset, run["run_id"], "val", "val/accuracy"),
            }
        )
    order = {"none": 0, "fp16": 1, "bf16": 2}
    table = pd.DataFrame(rows).groupby("amp", as_index=False).mean(numeric_only=True)
    table = table.sort_values("amp", key=lambda s: s.map(order))
    fig, (ax_time, ax_acc) = plt.subplots(1, 2, figsize=(8, 3.5))
    ax_time.bar(table["amp"], table["epoch_s"], color="tab:blue")
    ax_time.set(xlabel="TRAIN.AMP", ylabel="s", title="time per epoch (median)")
    ax_acc.bar(table["amp"], table["accuracy"], color="tab:green")
    ax_acc.set(xlabel="TRAIN.AMP", ylabel="accuracy", title="final validation accuracy", ylim=(0, 1))
    return _save(fig, out)


# ------------------------------------------------------------- HRNet studies
def epoch_time_vs_gpus(runset: RunSet, out: Path) -> Path:
    """``time/epoch_s`` vs device count, one line per per-GPU batch (and strategy),
    with the ideal (1/N of the 1-GPU time) dotted: the DataParallel study's figure."""
    plt = _pyplot()
    runs = _runs(runset)
    epochs = _records(runset, "epoch", "time/epoch_s")
    rows = []
    for _, run in runs.iterrows():
        times = epochs[epochs["run_id"] == run["run_id"]]["time/epoch_s"]
        rows.append(
            {
                "gpus": int(run["DIST.GPUS"]),
                "batch": int(run["TRAIN.BATCH_SIZE_PER_GPU"]),
                "strategy": run["DIST.STRATEGY"],
                "epoch_s": times.median() if len(times) else float("nan"),
            }
        )
    table = (
        pd.DataFrame(rows)
        .groupby(["batch", "gpus"], as_index=False)
        .agg(epoch_s=("epoch_s", "median"), strategy=("strategy", lambda s: "/".join(sorted(set(s)))))
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    for batch, group in table.groupby("batch"):
        group = group.sort_values("gpus")
        strategies = ", ".join(f"{g}: {st}" for g, st in zip(group["gpus"], group["strategy"], strict=True))
        (line,) = ax.plot(group["gpus"], group["epoch_s"], "o-", label=f"{batch} per GPU ({strategies})")
        base = group.iloc[0]
        ax.plot(group["gpus"], base["epoch_s"] * base["gpus"] / group["gpus"], ":", color=line.get_color())
    ax.set(xlabel="GPUs", ylabel="time per epoch (s)", title="epoch time vs GPUs (dotted: ideal)")
    ax.set_xticks(sorted(table["gpus"].unique()))
    ax.legend(fontsize=8)
    return _save(fig, out)


def ap_vs_epoch_and_time(
    runset: RunSet, out: Path, metric: str = "val/AP", target: float | None = None
) -> Path:
    """``metric`` vs epoch (left) and vs wall time (right), one line per global batch;
    the first time each run reaches ``target`` (default: 90% of the best value seen)
    is marked and given in the legend."""
    plt = _pyplot()
    runs = _runs(runset)
    val = _records(runset, "val", metric)
    if val.empty:
        raise ValueError(f"no validation records with {metric}")
    goal = target if target is not None else 0.9 * float(val[metric].max())
    fig, (ax_epoch, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
    for _, run in runs.sort_values(
        "global_batch" if "global_batch" in runs else "TRAIN.BATCH_SIZE_PER_GPU"
    ).iterrows():
        frame = val[val["run_id"] == run["run_id"]]
        if frame.empty:
            continue
        global_batch = int(run["TRAIN.BATCH_SIZE_PER_GPU"]) * int(run["DIST.GPUS"])
        reached = frame[frame[metric] >= goal]
        # Records carry the training wall time so far as "time" ("elapsed" in older run directories).
        clock = "time" if "time" in frame.columns else "elapsed"
        hours = frame[clock] / 3600.0
        when = f"at {reached[clock].iloc[0] / 60:.1f} min" if len(reached) else "not reached"
        (line,) = ax_epoch.plot(
            frame["epoch"] + 1, frame[metric], "o-", label=f"global batch {global_batch} (target {when})"
        )
        ax_time.plot(hours, frame[metric], "o-", color=line.get_color())
        if len(reached):
            ax_time.plot(
                reached[clock].iloc[0] / 3600.0, reached[metric].iloc[0], "*", ms=14, color=line.get_color()
            )
    for ax in (ax_epoch, ax_time):
        ax.axhline(goal, color="grey", ls=":", lw=1)
    ax_epoch.set(xlabel="epoch", ylabel=metric, title=f"{metric} vs epoch (dotted: target {goal:.3g})")
    ax_time.set(xlabel="training wall time (h)", ylabel=metric, title="vs wall time (star: target reached)")
    ax_epoch.legend(fontsize=8)
    _integer_ticks(ax_epoch)
    return _save(fig, out)


STUDIES: dict[str, Callable[[RunSet, Path], Path]] = {
    "fer_optimizers": optimizer_convergence,
    "fer_workers": data_wait_vs_workers,
    "fer_amp": amp_time_and_accuracy,
    "hrnet_dp_epoch_time": epoch_time_vs_gpus,
    "hrnet_batch_convergence": ap_vs_epoch_and_time,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.study_plots",
        description="Draw a shipped study's figure from its sweep directory.",
    )
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="the figure file to write")
    args = parser.parse_args(argv)
    try:
        path = STUDIES[args.study](load_run_dirs(args.sweep_dirs), Path(args.out))
    except ValueError as e:
        print(f"study_plots {args.study}: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
