"""The text of ``report.md``: written for a reader who never saw the sweep."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import markdown as md
from analysis.commmodel import GRAD_BYTES_PER_PARAM
from analysis.pipeline import Analysis
from analysis.scaling import MISSING_BASELINE, SUPERLINEAR


def _values(series: pd.Series) -> str:
    values = sorted({v for v in series if v == v}, key=lambda v: (str(type(v)), v))
    return ", ".join(str(v) for v in values) if values else md.MISSING


def _figure(stem: Path, formats: Sequence[str], caption: str) -> str:
    name = stem.name
    main = "png" if "png" in formats else formats[0]
    links = " · ".join(f"[{f.upper()}]({name}.{f})" for f in formats)
    return f"![{caption}]({name}.{main})\n\n_{caption}_ ({links})\n"


def _figures(stems: dict[str, list[Path]], section: str, formats: Sequence[str], caption: str) -> str:
    return "\n".join(_figure(s, formats, f"{caption}: {s.name}") for s in stems.get(section, []))


def summary(a: Analysis, sources: Sequence[str], wandb_path: str | None, group: str | None) -> str:
    runs, included = a.runset.runs, a.runset.included
    lines = []
    where = ", ".join(f"`{s}`" for s in sources)
    if wandb_path:
        where += (", " if where else "") + f"W&B `{wandb_path}`" + (f" group `{group}`" if group else "")
    lines.append(
        f"Source: {where}. {len(runs)} runs found, {len(included)} completed and included, "
        f"{len(runs) - len(included)} not included (listed under *Runs not included*)."
    )
    if included.empty:
        return "\n".join(lines) + "\n"
    repeats = a.configs["n_runs"] if len(a.configs) else pd.Series([0])
    hosts = sorted({h for hs in included["hosts"] for h in hs})
    facts = [
        f"Workloads: {_values(included['workload'])}; models: {_values(included['model'])}.",
        f"Strategies: {_values(included['strategy'])}; GPU counts: {_values(included['gpus'])}; "
        f"nodes: {_values(included['nodes'])}.",
        f"Batch size per GPU: {_values(included['batch_size_per_gpu'])}; global batch: "
        f"{_values(included['global_batch'])}.",
        f"{len(a.configs)} configurations; repeats (seeds) per configuration: "
        f"{int(repeats.min())}–{int(repeats.max())}; seeds: {_values(included['seed'])}.",
        f"Devices: {_values(included['device_type'])}; hosts: {', '.join(hosts) or md.MISSING}.",
    ]
    multi_host = included[included["n_hosts"] > 1]
    unknown = included[included["n_hosts"] == 0]
    if len(unknown):
        facts.append(
            f"{len(unknown)} run(s) recorded no host names (e.g. W&B runs without the run.json "
            "identity): they are not counted as multi-node."
        )
    if multi_host.empty:
        simulated = included[(included["nodes"] > 1) & (included["n_hosts"] == 1)]
        facts.append(
            "**No run spanned more than one host**: these are single-host results."
            + (
                f" {len(simulated)} run(s) declared more than one node but all their ranks reported "
                "one host name, so they are not multi-node results."
                if len(simulated)
                else ""
            )
        )
    else:
        facts.append(
            f"**Multi-node**: {len(multi_host)} run(s) spanned more than one host "
            f"(labelled `multi-node` in the tables); the others did not."
        )
    if a.keys:
        facts.append(
            f"Config keys that vary between runs (part of each configuration): "
            f"{', '.join(f'`{k}`' for k in a.keys)}."
        )
    lines.append(md.bullet_list(facts))
    if len(a.scaling):
        lines.append(md.bullet_list(headline(a)))
    return "\n".join(lines)


def series_label(row: dict, keys: Sequence[str]) -> str:
    """``fer DDP weak scaling (32/GPU, DATA.NUM_WORKERS=4)``: what a scaling series holds fixed."""
    fixed = (
        f"{md.number(row['batch_size_per_gpu'])}/GPU"
        if row["scaling"] == "weak"
        else f"global batch {md.number(row['global_batch'])}"
    )
    extras = "".join(f", {k}={row[k]}" for k in keys)
    return f"{row['workload']} {row['strategy'].upper()} {row['scaling']} scaling ({fixed}{extras})"


def _on_nodes(nodes: int) -> str:
    return f" on {int(nodes)} nodes" if nodes == nodes and int(nodes) > 1 else ""


def headline(a: Analysis) -> list[str]:
    """One finding per scaling series with a baseline and node count: its largest GPU count."""
    out = []
    table = a.scaling.dropna(subset=["efficiency"])
    table = table[table["gpus"] > 1]
    for mode, by_mode in table.groupby("scaling"):
        fixed = "batch_size_per_gpu" if mode == "weak" else "global_batch"
        columns = ["workload", "strategy", fixed, *a.keys]
        for _, part in by_mode.groupby([*columns, "nodes"], sort=True):
            row = part.sort_values("gpus").iloc[-1].to_dict()
            ratio = (
                f", DDP/DP throughput {row['ddp_over_dp']:.2f}×" if np.isfinite(row["ddp_over_dp"]) else ""
            )
            out.append(
                f"{series_label(row, a.keys)}: {row['gpus']} GPUs{_on_nodes(row['nodes'])} reach "
                f"{row['throughput_median']:.4g} img/s, speedup {row['speedup']:.2f}×, "
                f"efficiency {row['efficiency']:.2f}{ratio} — {row['diagnosis']}."
            )
    return out


def scaling_section(a: Analysis) -> str:
    if a.scaling.empty:
        return "No completed run has throughput records.\n"
    s = a.scaling.copy()
    s["throughput"] = [
        f"{md.number(m, 4)} [{md.number(q1, 4)}–{md.number(q3, 4)}]"
        for m, q1, q3 in zip(s["throughput_median"], s["throughput_q1"], s["throughput_q3"])
    ]
    s["flags"] = s["flags"].replace("", md.MISSING)
    s["compute_rate"] = [compute_rate(m, t) for m, t in zip(s["mfu"], s["tflops_per_s"])]
    columns = [
        ("workload", "workload"),
        ("strategy", "strategy"),
        ("scaling", "scaling"),
        ("nodes", "nodes"),
        ("gpus", "GPUs"),
        ("batch_size_per_gpu", "batch/GPU"),
        ("global_batch", "global batch"),
        *[(k, k) for k in a.keys],
        ("n_runs", "runs"),
        ("throughput", "img/s median [IQR]"),
        ("speedup", "speedup"),
        ("efficiency", "efficiency"),
        ("compute_rate", "MFU or achieved FLOP/s per device"),
        ("ddp_over_dp", "DDP/DP"),
        ("data_wait_share", "data wait"),
        ("diagnosis", "diagnosis"),
        ("flags", "flags"),
    ]
    formats = {
        "speedup": md.fixed(2),
        "efficiency": md.fixed(2),
        "ddp_over_dp": md.fixed(2),
        "data_wait_share": md.percent,
    }
    text = md.table(s, columns, formats)
    text += (
        "\nIQR: over the repeats' medians when a configuration has 2+ runs, over the steady-state "
        "records of the single run otherwise (column `iqr_over` in `scaling.csv`). MFU: achieved model "
        "FLOP/s per device over the GPU's dense peak (`perf/mfu`); where no peak is known (CPUs, "
        "unlisted GPUs) the achieved FLOP/s per device (`perf/tflops_per_s`); empty for runs that "
        "did not count FLOPs.\n"
    )
    items = [f"{series_label(r, a.keys)}: {r['baseline']}" for r in s.to_dict("records")]
    text += "\n**Baselines used** (same workload, strategy and every varying config key):\n\n"
    text += md.bullet_list(sorted(set(items)))
    flagged = s[s["flags"] != md.MISSING]
    if len(flagged):
        text += "\n**Flags raised:**\n\n" + md.bullet_list(
            [f"{series_label(r, a.keys)}, {r['gpus']} GPUs: {r['flags']}" for r in flagged.to_dict("records")]
        )
        if flagged["flags"].str.contains(SUPERLINEAR).any():
            text += (
                "\n`superlinear-suspect`: efficiency above 1. More GPUs rarely do more than linear; "
                "suspect a slow baseline (cold cache, contention) or a measurement window too short.\n"
            )
        if flagged["flags"].str.contains(MISSING_BASELINE).any():
            text += (
                "\n`missing-baseline`: the one-GPU run with the same strategy and batch was not "
                "measured (or failed); speedup and efficiency are left empty rather than guessed.\n"
            )
    return text


def compute_rate(mfu: float, tflops: float) -> str:
    """``MFU 41.2%`` where the peak is known, else the achieved rate per device."""
    if mfu == mfu and mfu is not None:
        return f"MFU {mfu:.1%}"
    if tflops == tflops and tflops is not None:
        return f"{md.number(tflops * 1e3, 3)} GFLOP/s" if tflops < 1 else f"{md.number(tflops, 3)} TFLOP/s"
    return md.MISSING


def diagnosis_section(a: Analysis) -> str:
    o = a.options
    text = (
        f"Rules: *data-bound* when the loader wait exceeds {o.data_bound_threshold:.0%} of the step, or "
        f"when the step without data wait scales (compute-only efficiency ≥ "
        f"{o.efficiency_threshold:.2f}) but the whole step does not. Below efficiency "
        f"{o.efficiency_threshold:.2f} otherwise, a DDP point whose runs measured their communication "
        "(`time/comm_exposed_share`, from the DDP communication hook) is *communication-bound* when the "
        "exposed (not overlapped) communication is at least half of the step time lost to imperfect "
        "scaling (1 − efficiency of the step), and *compute-slowdown* when it is not (each device's "
        "own work got slower: contention for cores or memory bandwidth, host overhead). Points "
        "without that measurement (older runs, DP) are called *communication-bound* by inference: the "
        "data wait is small, so the time is lost inside the step (gradient all-reduce for DDP, "
        "replicate/scatter/gather for DP). *suspect* when efficiency exceeds 1; *scales* otherwise. "
        "`comm` is the all-reduce busy time and `exposed comm` the part of it the step waited for, "
        "both as shares of the step.\n\n"
    )
    if a.scaling.empty:
        return text
    columns = [
        ("workload", "workload"),
        ("strategy", "strategy"),
        ("scaling", "scaling"),
        ("nodes", "nodes"),
        ("gpus", "GPUs"),
        ("batch_size_per_gpu", "batch/GPU"),
        *[(k, k) for k in a.keys],
        ("efficiency", "efficiency"),
        ("compute_efficiency", "compute-only efficiency"),
        ("data_wait_share", "data wait"),
        ("comm_share", "comm"),
        ("comm_exposed_share", "exposed comm"),
        ("diagnosis", "diagnosis"),
    ]
    return text + md.table(
        a.scaling,
        columns,
        {
            "efficiency": md.fixed(2),
            "compute_efficiency": md.fixed(2),
            "data_wait_share": md.percent,
            "comm_share": md.percent,
            "comm_exposed_share": md.percent,
        },
    )


MODEL_TEXT = """Step-time model per scaling series and node count (links inside a node and between nodes
are never fitted as one): T(N) = T_compute(b) + 2(N−1)/N · G/BW + 2(N−1)·latency (ring
all-reduce; G = parameters × {bytes_per_param} bytes of fp32 gradients; b the per-GPU batch, fixed
in weak scaling, B/N in strong scaling where T_compute(b) = T_0 + b·t_sample). Where `harness commbench`
measured a point's topology (nodes × GPUs per node), the point is predicted from that measurement
instead (source *commbench*): T = T_compute + exposed communication, with T_compute the series' one-GPU
step, communication = buckets·α + 2(N−1)/N·G/β from the measured all-reduce α and β (one all-reduce
per 25 MB DDP bucket), and the exposed share measured by the runs (`time/comm_exposed_s` /
`time/comm_s`) or, where they did not log it, all of it. Otherwise the unknowns are fitted (source *fit*)
by non-negative least squares to the measured step times (T(N) = N·b/X(N)) of at least 3 GPU counts. In
strong scaling the bandwidth term and the compute of B/N samples both vary as 1/N, so only the latency
and the predicted step times are identified there, not BW or T_compute; a bandwidth the data cannot
identify is reported as *not identified*. Rows marked **prediction** are extrapolations, not
measurements. The leave-one-out (LOO) error is the mean relative error at each measured GPU count when
that count is left out of the fit."""


def _bandwidth(row: dict) -> str:
    value = row.get("bandwidth_gbps")
    return f"{value:.4g}" if value is not None and np.isfinite(value) else "not identified"


def _series_with_nodes(row: dict, keys: Sequence[str]) -> str:
    nodes = row.get("nodes")
    where = "" if nodes != nodes else (f", {int(nodes)} nodes" if int(nodes) > 1 else ", 1 node")
    return series_label(row, keys) + where


def model_section(a: Analysis, stems: dict, formats: Sequence[str]) -> str:
    text = " ".join(MODEL_TEXT.format(bytes_per_param=GRAD_BYTES_PER_PARAM).split()) + "\n\n"
    text += commbench_text(a)
    fit = a.model_fit
    if fit.empty:
        return text + "No scaling series to fit.\n"
    fit = fit.copy()
    fit["series"] = [series_label(r, a.keys) for r in fit.to_dict("records")]
    fit["topology"] = [_series_with_nodes(r, a.keys) for r in fit.to_dict("records")]
    fit["bandwidth"] = [_bandwidth(r) for r in fit.to_dict("records")]
    under = fit[fit["kind"] == "underdetermined"].drop_duplicates("topology")
    text += "".join(f"- {r['topology']}: {r['note']}\n" for r in under.to_dict("records"))
    fitted = fit[fit["kind"] != "underdetermined"]
    if fitted.empty:
        return text
    measured = fitted[fitted["kind"] == "measured"]
    per_node = measured.groupby("topology")["gpus_per_node"].agg(["min", "max"])
    measured = measured.assign(
        per_node=[
            str(int(r["gpus_per_node"]))
            if r["source"] == "commbench"
            else "–".join(dict.fromkeys(str(int(v)) for v in per_node.loc[r["topology"]]))
            for r in measured.to_dict("records")
        ]
    )
    params = pd.concat(
        [
            measured[measured["source"] == "commbench"],
            measured[measured["source"] != "commbench"].drop_duplicates("topology"),
        ]
    )
    param_columns = [
        ("series", "series"),
        ("nodes", "nodes"),
        ("per_node", "GPUs/node"),
        ("source", "source"),
        ("param_count", "params"),
        ("bandwidth", "BW (Gbit/s)"),
        ("latency_s", "latency (s)"),
        ("t_compute_s", "T_compute (s)"),
        ("exposed_fraction", "exposed comm"),
        ("loo_rel_error", "LOO error"),
        ("n_points", "points"),
        ("note", "note"),
    ]
    text += "\n" + md.table(
        params, param_columns, {"loo_rel_error": md.percent, "exposed_fraction": md.percent}
    )
    shown = fitted.copy()
    shown["kind"] = shown["kind"].map({"prediction": "**prediction**", "measured": "measured"})
    point_columns = [
        ("series", "series"),
        ("nodes", "nodes"),
        ("gpus", "GPUs"),
        ("source", "source"),
        ("kind", "kind"),
        ("measured_efficiency", "measured E"),
        ("predicted_efficiency", "model E"),
        ("measured_step_s", "measured step (s)"),
        ("predicted_step_s", "model step (s)"),
        ("loo_rel_error", "LOO error of fit"),
    ]
    text += "\n" + md.table(
        shown,
        point_columns,
        {
            "measured_efficiency": md.fixed(3),
            "predicted_efficiency": md.fixed(3),
            "loo_rel_error": md.percent,
        },
    )
    text += "\nThe speedup plots draw the model as dotted lines.\n"
    return text


def commbench_text(a: Analysis) -> str:
    """The measured interconnect: one row per commbench result and collective."""
    from analysis.commbench_data import commbench_fit_table

    if not a.commbench:
        return (
            "No `commbench.json` was given (`harness analyze --commbench DIR`, or one inside the "
            "sweep directory): every series is fitted.\n\n"
        )
    table = commbench_fit_table(a.commbench)
    table["bandwidth"] = [
        f"{b * 8 / 1e9:.4g}" if b == b and b else "not identified"
        for b in table["beta_bytes_per_s"].astype(float)
    ]
    table["alpha_us"] = table["alpha_s"].astype(float) * 1e6
    columns = [
        ("nodes", "nodes"),
        ("gpus_per_node", "GPUs/node"),
        ("backend", "backend"),
        ("op", "collective"),
        ("alpha_us", "α (µs)"),
        ("bandwidth", "β bus bandwidth (Gbit/s)"),
        ("rel_median_error", "fit median error"),
        ("rel_rms_error", "fit rms error"),
        ("label", "label"),
    ]
    return (
        "**Measured interconnect** (`harness commbench`, α-β fit of time = α + bus bytes/β):\n\n"
        + md.table(
            table,
            columns,
            {"rel_rms_error": md.percent, "rel_median_error": md.percent, "alpha_us": md.fixed(1)},
        )
        + "\n"
    )


def convergence_section(a: Analysis, stems: dict, formats: Sequence[str]) -> str:
    text = (
        "Curves are the median over repeats at each logged step; the band spans min–max. Samples seen "
        "is the axis that compares configurations with different global batches.\n\n"
    )
    text += _figures(stems, "convergence", formats, "Convergence")
    return text


def target_section(a: Analysis, stems: dict, formats: Sequence[str]) -> str:
    if a.time_to_target.empty:
        return "No validation records.\n"
    targets = ", ".join(f"{w}: {t:.4g}" for w, t in a.targets.items())
    o = a.options
    rule = (
        f"absolute target {o.target}"
        if o.target is not None
        else f"{o.target_fraction or 0.9:.0%} of the best value any run reached"
    )
    text = (
        f"Target on the primary metric ({rule}): {targets}. Time is training wall time at the first "
        "validation that reached the target; epochs count completed epochs.\n\n"
    )
    t = a.time_to_target.sort_values(["workload", "global_batch", "strategy", "gpus"])
    text += md.table(
        t,
        [
            ("workload", "workload"),
            ("config", "configuration"),
            ("n_runs", "runs"),
            ("status", "status"),
            ("epochs_median", "epochs"),
            ("samples_median", "samples"),
            ("time_s_median", "wall time (s)"),
            ("best_median", "best (median)"),
        ],
    )
    text += "\n" + _figures(stems, "time_to_target", formats, "Time to target and batch-size effect")
    return text


def comparison_section(a: Analysis, stems: dict, formats: Sequence[str]) -> str:
    text = ""
    for key, table in a.comparisons.items():
        text += f"\n### By `{key}`\n\n"
        text += md.table(
            table,
            [
                ("workload", "workload"),
                ("strategy", "strategy"),
                ("gpus", "GPUs"),
                (key, key),
                ("n_runs", "runs"),
                ("throughput_median", "img/s"),
                ("data_wait_share", "data wait"),
                ("epoch_s", "epoch time (s)"),
                ("best_median", "best metric"),
                ("time_to_target_s", "time to target (s)"),
            ],
            {"data_wait_share": md.percent},
        )
        text += "\n" + _figures(stems, f"by:{key}", formats, f"Comparison by {key}")
    return text


def excluded_section(a: Analysis) -> str:
    ex = a.runset.excluded
    if ex.empty:
        return "Every run completed and is included.\n"
    return "These runs are listed for completeness and excluded from every number above.\n\n" + md.table(
        ex,
        [
            ("run_name", "run"),
            ("state", "state"),
            ("exclude_reason", "reason"),
            ("error", "error (first line)"),
        ],
    )


METHOD = """- **Steady state**: a run's throughput is the median of `throughput/img_per_s` (global samples /
  wall time of each logging window) over its train records with `steady: true`, i.e. outside the first
  `LOG.WARMUP_STEPS` steps after every (re)start. A run with no steady record falls back to all its
  train records and is flagged `no-steady-state`. Compute-only throughput excludes the data wait; the
  data-wait share is the median of `time/data_wait_share`.
- **Repeats**: runs that differ only in their seed form one configuration; its throughput is the
  median of the runs' medians, with the interquartile range across runs.
- **Weak scaling** (per-GPU batch fixed): S(N) = X(N)/X(1), E(N) = S(N)/N = X(N)/(N·X(1)); the baseline
  is the same workload, strategy and per-GPU batch at one GPU.
- **Strong scaling** (global batch fixed): E(N) = T(1)/(N·T(N)), T the time per optimizer step; with
  T = global batch / X this is X(N)/(N·X(1)), the baseline being one GPU with the same global batch.
- DP and DDP are each compared with their own one-GPU baseline (never with `single`). DDP/DP is the ratio
  of their throughputs at the same GPU count and batch. A baseline that was not measured is reported as
  missing; E > 1 is flagged as suspect.
- **Where the step goes**: the communication shares, achieved FLOP/s and MFU are medians of the steady
  train records' `time/comm_share`, `time/comm_exposed_share`, `perf/tflops_per_s` and `perf/mfu`
  (measured by the trainer; docs/run-format.md says how), then medians over repeats.
- A run counts as multi-node only when its ranks reported more than one host name.
- Only runs in state `completed` are included; failed, cancelled, preempted-and-not-resumed, pending and
  running runs are listed under *Runs not included*.
"""


def render_markdown(
    a: Analysis,
    stems: dict[str, list[Path]],
    formats: Sequence[str],
    *,
    sources: Sequence[str] = (),
    wandb_path: str | None = None,
    group: str | None = None,
) -> str:
    sweeps = sorted({s for s in a.runset.runs["sweep"] if s}) if len(a.runset.runs) else []
    title = f"Scaling report: {', '.join(sweeps)}" if sweeps else "Scaling report"
    parts = [
        f"# {title}\n",
        f"_Written by `harness analyze` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "Tables are also in the CSV files beside this report._\n",
        "## Summary\n",
        summary(a, sources, wandb_path, group),
        "## Scaling table\n",
        scaling_section(a),
        "## Plots\n",
        _figures(
            stems, "speedup", formats, "Speedup vs GPUs (ideal line grey, DP dashed, DDP solid, model dotted)"
        ),
        _figures(stems, "efficiency", formats, "Scaling efficiency"),
        _figures(stems, "throughput", formats, "Throughput vs batch size"),
        "## Diagnosis\n",
        diagnosis_section(a),
        "## Communication model\n",
        model_section(a, stems, formats),
        "## Convergence\n",
        convergence_section(a, stems, formats),
        "## Time to target\n",
        target_section(a, stems, formats),
    ]
    if a.comparisons:
        parts += ["## Comparison by key\n", comparison_section(a, stems, formats)]
    parts += ["## Runs not included\n", excluded_section(a), "## Method\n", METHOD]
    return "\n".join(parts)
