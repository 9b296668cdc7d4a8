"""A step-time model fitted to scaling points, used to extrapolate efficiency.

T(N) = T_compute(b) + 2(N-1)/N · G/BW + 2(N-1)·latency: the ring all-reduce of G
gradient bytes (fp32 gradients: 4 bytes per parameter, also under AMP, since DDP
reduces the fp32 ``.grad`` buckets) on top of the compute of a per-GPU batch b.
In a weak-scaling series b is fixed, so T_compute is one constant; in a strong
series b = B/N and T_compute(b) = T_0 + b·t_sample. Every unknown enters
linearly, so the fit is a non-negative linear least-squares problem over three
distinct GPU counts at least; its quality is the leave-one-out error over the
measured counts. In strong scaling 2(N-1)/N·G/BW = 2G/BW − (2G/BW)/N has the
same shape in N as T_0 + B·t_sample/N, so bandwidth and compute cannot be told
apart there: only the latency and the predicted step times are identified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

GRAD_BYTES_PER_PARAM = 4

MODEL_FIT_COLUMNS = [
    "workload",
    "strategy",
    "scaling",
    "batch_size_per_gpu",
    "global_batch",
    "param_count",
    "grad_bytes",
    "bandwidth_gbps",
    "bandwidth_bytes_per_s",
    "latency_s",
    "t_compute_s",
    "t_compute_per_sample_s",
    "loo_rel_error",
    "loo_max_rel_error",
    "n_points",
    "gpus",
    "nodes",
    "gpus_per_node",
    "measured_step_s",
    "predicted_step_s",
    "measured_efficiency",
    "predicted_efficiency",
    "kind",
    "source",
    "comm_s",
    "exposed_fraction",
    "note",
]


class UnderdeterminedFit(ValueError):
    """Too few distinct GPU counts to fit the model's unknowns."""


@dataclass(frozen=True)
class CommFit:
    t_compute_s: float
    inverse_bandwidth_s_per_byte: float
    latency_s: float
    grad_bytes: float
    #: Compute time per sample of the per-GPU batch (strong scaling; 0 when b is fixed).
    t_compute_per_sample_s: float = 0.0
    #: False for strong-scaling fits, whose bandwidth/compute split is arbitrary.
    bandwidth_identified: bool = True

    @property
    def bandwidth_bytes_per_s(self) -> float:
        # A zero slope means the data show no cost per byte: the bandwidth is not identified
        # (NaN, reported as such), never infinite.
        inv = self.inverse_bandwidth_s_per_byte
        return float("nan") if inv <= 0 else 1.0 / inv

    def step_time(
        self,
        gpus: Sequence[float] | np.ndarray | float,
        batch_per_gpu: Sequence[float] | np.ndarray | float = 0.0,
    ) -> np.ndarray:
        n = np.atleast_1d(np.asarray(gpus, dtype=float))
        b = np.broadcast_to(np.asarray(batch_per_gpu, dtype=float), n.shape)
        coef = np.array(
            [self.t_compute_s, self.inverse_bandwidth_s_per_byte, self.latency_s, self.t_compute_per_sample_s]
        )
        return _design(n, self.grad_bytes, b) @ coef

    def efficiency(
        self, gpus: Sequence[float] | np.ndarray | float, global_batch: float | None = None
    ) -> np.ndarray:
        """Weak scaling (``global_batch`` None, b fixed): T(1)/T(N). Strong scaling
        (fixed ``global_batch`` B): T(1, B)/(N·T(N, B/N))."""
        n = np.atleast_1d(np.asarray(gpus, dtype=float))
        if global_batch is None:
            return self.step_time(1.0)[0] / self.step_time(n)
        return self.step_time(1.0, global_batch)[0] / (n * self.step_time(n, global_batch / n))


def ring_step_time(
    gpus: Sequence[float] | np.ndarray,
    t_compute_s: float,
    grad_bytes: float,
    bandwidth_bytes_per_s: float,
    latency_s: float,
) -> np.ndarray:
    """The model's step time, for generating synthetic points."""
    n = np.asarray(gpus, dtype=float)
    return t_compute_s + 2 * (n - 1) / n * grad_bytes / bandwidth_bytes_per_s + 2 * (n - 1) * latency_s


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin ||a x - b|| subject to x >= 0, exactly, for the few unknowns of the model.

    The optimum is the unconstrained least-squares solution on its own support, so trying
    every support (15 for 4 unknowns) and keeping the best feasible one finds it.  This
    keeps scipy, a 0.7 s import, out of ``harness analyze``."""
    columns = a.shape[1]
    best = np.zeros(columns)
    best_residual = float(np.sum(b**2))
    for mask in range(1, 2**columns):
        support = [j for j in range(columns) if mask >> j & 1]
        x_support, *_ = np.linalg.lstsq(a[:, support], b, rcond=None)
        if np.any(x_support < 0):
            continue
        residual = float(np.sum((a[:, support] @ x_support - b) ** 2))
        if residual < best_residual - 1e-15 * max(best_residual, 1.0):
            best = np.zeros(columns)
            best[support] = x_support
            best_residual = residual
    return best


def _design(n: np.ndarray, grad_bytes: float, batch_per_gpu: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(n), 2 * (n - 1) / n * grad_bytes, 2 * (n - 1), batch_per_gpu])


def fit_comm_model(
    gpus: Sequence[float],
    step_s: Sequence[float],
    grad_bytes: float,
    batch_per_gpu: Sequence[float] | None = None,
) -> CommFit:
    """Non-negative least-squares fit of (T_compute, 1/BW, latency[, t_sample]) to step times.
    ``batch_per_gpu``: the per-GPU batch of each point when it varies (strong scaling)."""
    n = np.asarray(gpus, dtype=float)
    t = np.asarray(step_s, dtype=float)
    b = np.zeros_like(n) if batch_per_gpu is None else np.asarray(batch_per_gpu, dtype=float)
    varies = len(np.unique(b)) > 1
    needed = 4 if varies else 3
    counts = np.unique(n)
    if len(counts) < 3:
        raise UnderdeterminedFit(
            f"{len(counts)} distinct GPU count(s) ({', '.join(str(int(v)) for v in counts)}); the fit needs 3"
        )
    if grad_bytes <= 0:
        raise UnderdeterminedFit("gradient size unknown (run.json num_params is 0)")
    # A fixed per-GPU batch has no t_sample column: its compute time is all in T_compute.
    design = _design(n, grad_bytes, b)[:, :needed]
    # Columns differ by orders of magnitude (1, ~1e8 bytes, ~10, ~100 samples); scale
    # them so the solver's tolerance means the same thing for each unknown.
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    # Relative residuals: a 10 ms error matters more on a 50 ms step than on a 2 s one.
    weights = 1.0 / t
    solution = nonnegative_least_squares(design / scale * weights[:, None], t * weights)
    coef = np.append(solution / scale, [0.0] * (4 - needed))
    return CommFit(
        t_compute_s=float(coef[0]),
        inverse_bandwidth_s_per_byte=float(coef[1]),
        latency_s=float(coef[2]),
        grad_bytes=float(grad_bytes),
        t_compute_per_sample_s=float(coef[3]),
        bandwidth_identified=not varies,
    )


def leave_one_out_errors(
    gpus: Sequence[float],
    step_s: Sequence[float],
    grad_bytes: float,
    batch_per_gpu: Sequence[float] | None = None,
) -> np.ndarray:
    """Relative error |T̂ − T|/T at each measured point when its GPU count is left
    out of the fit. NaN where the remaining counts cannot determine the fit."""
    n = np.asarray(gpus, dtype=float)
    t = np.asarray(step_s, dtype=float)
    b = np.zeros_like(n) if batch_per_gpu is None else np.asarray(batch_per_gpu, dtype=float)
    errors = []
    for held in np.unique(n):
        keep = n != held
        try:
            fit = fit_comm_model(n[keep], t[keep], grad_bytes, b[keep] if batch_per_gpu is not None else None)
        except UnderdeterminedFit:
            errors.extend([np.nan] * int((~keep).sum()))
            continue
        errors.extend(np.abs(fit.step_time(n[~keep], b[~keep]) - t[~keep]) / t[~keep])
    return np.asarray(errors, dtype=float)


def model_fit_table(
    scaling: pd.DataFrame,
    keys: Sequence[str] = (),
    predict_gpus: Sequence[int] = (16, 64, 256),
    commbench: Sequence[dict] = (),
) -> pd.DataFrame:
    """Fits per scaling series of ``scaling_table``'s rows (weak: workload, strategy,
    per-GPU batch and ``keys``; strong: global batch instead of per-GPU batch), split
    by node count: links inside a node and between nodes are never fitted as one.
    Where ``commbench`` (results of ``load_commbench``) measured a point's topology
    (nodes x GPUs per node), that point is predicted from the measured alpha-beta
    instead (source ``commbench``); measured rows and predictions at ``predict_gpus``."""
    rows: list[dict] = []
    measured = scaling[scaling["throughput_median"].notna()]
    for mode, fixed in (("weak", "batch_size_per_gpu"), ("strong", "global_batch")):
        series_keys = ["workload", "strategy", fixed, *keys]
        part = measured[measured["scaling"] == mode]
        for values, group in part.groupby(series_keys, sort=True, dropna=False):
            ident = {**dict(zip(series_keys, values)), "scaling": mode}
            compute = _one_gpu_step(group)
            several = group["nodes"].nunique() > 1
            for nodes, topology in group.groupby("nodes", sort=True):
                if several and (topology["gpus"] == 1).all():
                    continue  # only the 1-GPU baseline: the compute reference of the other node counts
                from_bench, rest = _commbench_rows(ident, topology, compute, commbench)
                rows.extend(from_bench)
                if len(rest):
                    rows.extend(_series_rows(ident, rest, predict_gpus if nodes == 1 else ()))
    columns = MODEL_FIT_COLUMNS + [k for k in keys if k not in MODEL_FIT_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def _step_times(group: pd.DataFrame) -> np.ndarray:
    # Step time from the throughput the efficiencies use: T(N) = N·b / X(N).
    return (
        group["gpus"].to_numpy(dtype=float)
        * group["batch_size_per_gpu"].to_numpy(dtype=float)
        / group["throughput_median"].to_numpy()
    )


def _one_gpu_step(group: pd.DataFrame) -> float:
    base = group[(group["gpus"] == 1) & (group["nodes"] == 1)]
    return float(_step_times(base)[0]) if len(base) else float("nan")


def _gpus_per_node(gpus: float, nodes: float) -> int:
    return int(gpus // max(1, nodes))


def _commbench_rows(
    ident: dict, topology: pd.DataFrame, compute_s: float, commbench: Sequence[dict]
) -> tuple[list[dict], pd.DataFrame]:
    """Rows predicted from commbench's alpha-beta (weak-scaling DDP points whose topology
    was measured and whose 1-GPU compute time is known), and the rows left to fit."""
    from analysis.commbench_data import fit_for_topology

    usable = ident["strategy"] == "ddp" and ident["scaling"] == "weak" and np.isfinite(compute_s)
    if not commbench or not usable:
        return [], topology
    out, left = [], []
    step = _step_times(topology)
    for i, row in enumerate(topology.to_dict("records")):
        gpus, nodes = int(row["gpus"]), int(row["nodes"])
        fit = fit_for_topology(commbench, nodes, _gpus_per_node(gpus, nodes)) if gpus > 1 else None
        if fit is None:
            left.append(i)
            continue
        grad_bytes = float(row.get("num_params") or 0) * GRAD_BYTES_PER_PARAM
        p = predict_ddp_step(compute_s, grad_bytes, fit, gpus, _exposed_fraction(row))
        overlap = (
            f"measured exposed share {p['exposed_fraction']:.2f}"
            if p["overlap_measured"]
            else "no overlap measured: all communication counted as exposed"
        )
        out.append(
            {
                **ident,
                "kind": "measured",
                "source": "commbench",
                "gpus": gpus,
                "nodes": nodes,
                "gpus_per_node": _gpus_per_node(gpus, nodes),
                "batch_size_per_gpu": row["batch_size_per_gpu"],
                "global_batch": row["global_batch"],
                "param_count": int(row.get("num_params") or 0),
                "grad_bytes": grad_bytes,
                "bandwidth_bytes_per_s": fit["beta_bytes_per_s"],
                "bandwidth_gbps": fit["beta_bytes_per_s"] * 8 / 1e9,
                "latency_s": fit["alpha_s"],
                "t_compute_s": compute_s,
                "t_compute_per_sample_s": float("nan"),
                "n_points": 1,
                "comm_s": p["comm_s"],
                "exposed_fraction": p["exposed_fraction"],
                "measured_step_s": step[i],
                "predicted_step_s": p["predicted_step_s"],
                "measured_efficiency": compute_s / step[i],
                "predicted_efficiency": compute_s / p["predicted_step_s"],
                "loo_rel_error": float("nan"),
                "loo_max_rel_error": float("nan"),
                "note": f"commbench all-reduce alpha-beta of {nodes} node(s) x "
                f"{_gpus_per_node(gpus, nodes)} ({fit.get('path', '')}); {overlap}",
            }
        )
    return out, topology.iloc[left]


def _exposed_fraction(row: dict) -> float | None:
    """Exposed / total communication time of a configuration, from the step breakdown's
    medians (``comm_exposed_s``/``comm_s``, or the same as shares of the step); None
    when the runs did not log it."""
    for exposed_key, total_key in (("comm_exposed_s", "comm_s"), ("comm_exposed_share", "comm_share")):
        exposed, total = row.get(exposed_key), row.get(total_key)
        if (
            exposed is not None
            and total is not None
            and np.isfinite(exposed)
            and np.isfinite(total)
            and total > 0
        ):
            return float(exposed) / float(total)
    return None


def _series_rows(ident: dict, group: pd.DataFrame, predict_gpus: Sequence[int]) -> list[dict]:
    strong = ident["scaling"] == "strong"
    group = group.sort_values(["gpus", "nodes"])
    gpus = group["gpus"].to_numpy(dtype=float)
    batch = group["batch_size_per_gpu"].to_numpy(dtype=float)
    step = _step_times(group)
    params = int(group["num_params"].max() or 0)
    grad_bytes = params * GRAD_BYTES_PER_PARAM
    base = {**ident, "param_count": params, "grad_bytes": grad_bytes, "n_points": len(group), "source": "fit"}
    note = (
        "ring all-reduce model; DataParallel does not all-reduce (it replicates and gathers), "
        "so its fitted 'bandwidth' is an effective figure"
        if ident["strategy"] == "dp"
        else ""
    )
    fit_batch = batch if strong else None
    nodes_label = int(group["nodes"].iloc[0])
    try:
        fit = fit_comm_model(gpus, step, grad_bytes, fit_batch)
    except UnderdeterminedFit as e:
        hint = (
            ""
            if nodes_label == 1
            else (
                f"; {nodes_label}-node points are never fitted together with "
                "1-node ones: run `harness commbench` at this topology"
            )
        )
        return [
            {
                **base,
                "kind": "underdetermined",
                "source": "none",
                "note": f"fit underdetermined: {e}; no prediction made{hint}",
                "gpus": int(g),
                "nodes": int(nd),
                "gpus_per_node": _gpus_per_node(g, nd),
                "batch_size_per_gpu": int(b),
                "global_batch": int(g * b),
                "measured_step_s": s,
            }
            for g, nd, b, s in zip(gpus, group["nodes"], batch, step)
        ]
    loo = leave_one_out_errors(gpus, step, grad_bytes, fit_batch)
    finite = np.isfinite(loo)
    loo_mean = float(np.mean(loo[finite])) if finite.any() else float("nan")
    loo_max = float(np.max(loo[finite])) if finite.any() else float("nan")
    notes = [note]
    if not finite.all():
        notes.append("leave-one-out needs 4+ GPU counts; not available for every point")
    base.update(
        bandwidth_bytes_per_s=fit.bandwidth_bytes_per_s,
        bandwidth_gbps=fit.bandwidth_bytes_per_s * 8 / 1e9,
        latency_s=fit.latency_s,
        t_compute_s=fit.t_compute_s,
        t_compute_per_sample_s=fit.t_compute_per_sample_s,
        loo_rel_error=loo_mean,
        loo_max_rel_error=loo_max,
    )
    if not fit.bandwidth_identified:
        base.update(
            bandwidth_bytes_per_s=np.nan,
            bandwidth_gbps=np.nan,
            t_compute_s=np.nan,
            t_compute_per_sample_s=np.nan,
        )
        notes.append(
            "strong scaling: bandwidth and compute time are not separable (both vary as 1/N); "
            "latency and the predictions are identified"
        )
    elif not np.isfinite(fit.bandwidth_bytes_per_s):
        notes.append("bandwidth not identified: the fit finds no time growing with the gradient bytes")
    base["note"] = "; ".join(n for n in notes if n)
    global_batch = float(ident["global_batch"]) if strong else None
    t1_measured = step[gpus == 1][0] if (gpus == 1).any() else float("nan")
    rows = []
    for g, nd, b, s in zip(gpus, group["nodes"], batch, step):
        measured_eff = t1_measured / s if not strong else t1_measured / (g * s)
        rows.append(
            {
                **base,
                "kind": "measured",
                "gpus": int(g),
                "nodes": int(nd),
                "gpus_per_node": _gpus_per_node(g, nd),
                "batch_size_per_gpu": int(b),
                "global_batch": int(g * b),
                "measured_step_s": s,
                "predicted_step_s": float(fit.step_time(g, b)[0]),
                "measured_efficiency": measured_eff,
                "predicted_efficiency": float(fit.efficiency(g, global_batch)[0]),
            }
        )
    for g in sorted(set(int(p) for p in predict_gpus) - set(int(v) for v in gpus)):
        b = global_batch / g if strong else float(batch[0])
        rows.append(
            {
                **base,
                "kind": "prediction",
                "gpus": g,
                "nodes": float("nan"),
                "gpus_per_node": float("nan"),
                "batch_size_per_gpu": b,
                "global_batch": g * b,
                "measured_step_s": float("nan"),
                "predicted_step_s": float(fit.step_time(g, b)[0]),
                "measured_efficiency": float("nan"),
                "predicted_efficiency": float(fit.efficiency(g, global_batch)[0]),
            }
        )
    return rows


def predict_ddp_step(
    compute_s: float, grad_bytes: float, fit: dict, world_size: int, exposed_fraction: float | None = None
) -> dict[str, float]:
    """Step time of DDP from a measured compute time and a commbench all-reduce fit.

    One all-reduce per 25 MB bucket: comm = buckets·α + 2(n−1)/n·G/β. Only the
    exposed part adds to the step: ``exposed_fraction`` is the measured
    ``time/comm_exposed_s`` / ``time/comm_s`` of the runs when they logged it;
    without it every byte is taken as exposed (no overlap), an upper bound."""
    from analysis.commbench_data import comm_time_s, ddp_buckets

    comm = comm_time_s(fit, "all_reduce", grad_bytes, world_size, messages=ddp_buckets(grad_bytes))
    share = (
        1.0
        if exposed_fraction is None or not np.isfinite(exposed_fraction)
        else float(min(1.0, max(0.0, exposed_fraction)))
    )
    exposed = comm * share
    return {
        "comm_s": comm,
        "exposed_comm_s": exposed,
        "exposed_fraction": share,
        "overlap_measured": exposed_fraction is not None and bool(np.isfinite(exposed_fraction)),
        "predicted_step_s": compute_s + exposed,
    }
