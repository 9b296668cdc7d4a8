"""commbench results (``commbench.json``): bus-bandwidth factors, the alpha-beta fit, loading.

No torch here: ``harness commbench`` measures and calls :func:`fit_alpha_beta`;
``harness analyze`` reads the files back with :func:`load_commbench`. The
schema is documented in docs/commbench.md.

Definitions follow nccl-tests (doc/PERFORMANCE.md): a message of ``size`` bytes
(for all-gather and reduce-scatter the size of the whole gathered buffer, i.e.
world size x the per-rank chunk) taking ``t`` seconds has algorithm bandwidth
``algbw = size / t`` and bus bandwidth ``busbw = algbw * factor(n)``: the bytes
every link carries per second under the optimal (ring) algorithm, comparable
across world sizes and with the hardware's peak.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy, pandas and scipy load lazily: `harness commbench --help` stays light
    import pandas as pd

SCHEMA = "harness.commbench/1"
RESULT_FILE = "commbench.json"
OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
#: DDP's default gradient bucket (``bucket_cap_mb=25``): the model counts one all-reduce per bucket.
DDP_BUCKET_BYTES = 25 * 1024 * 1024
#: Relative residual beyond which the fit's loss grows linearly rather than quadratically.
ROBUST_SCALE = 0.1
#: A size whose relative error exceeds this many times the median one is left out of the refit.
CLIP_FACTOR = 4.0


class CommbenchError(ValueError):
    """A commbench.json problem; the message names the file and the key."""


def bus_factor(op: str, world_size: int) -> float:
    """nccl-tests' busbw / algbw: all-reduce 2(n-1)/n, all-gather and reduce-scatter
    (n-1)/n, broadcast 1."""
    n = int(world_size)
    if n < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter"):
        return (n - 1) / n
    if op == "broadcast":
        return 1.0
    raise ValueError(f"unknown collective {op!r}; one of {', '.join(OPS)}")


def fit_alpha_beta(sizes: Sequence[float], times_s: Sequence[float], factor: float) -> dict[str, Any]:
    """:func:`fit_once`, then again without the sizes far off its line (relative error above
    ``CLIP_FACTOR`` x the median one, and above 5%), until none is dropped; at least two
    distinct sizes stay. Relative residuals give the fastest messages the most weight, so
    a burst-fast small message would otherwise pull the bandwidth up. ``n_dropped`` and
    ``dropped_bytes`` say which sizes were left out."""
    import numpy as np

    size = np.asarray(sizes, dtype=float)
    t = np.asarray(times_s, dtype=float)
    keep = np.isfinite(size) & np.isfinite(t) & (t > 0)
    for _ in range(len(size)):
        fit = fit_once(size[keep], t[keep], factor)
        if not fit["bandwidth_identified"]:
            break
        predicted = fit["alpha_s"] + factor * size / fit["beta_bytes_per_s"]
        relative = np.abs(predicted - t) / np.where(t > 0, t, np.inf)
        limit = max(CLIP_FACTOR * float(np.median(relative[keep])), 0.05)
        off = keep & (relative > limit)
        if not off.any() or len(np.unique(size[keep & ~off])) < 2:
            break
        keep &= ~off
    fit = fit_once(size[keep], t[keep], factor)
    dropped = sorted(int(v) for v in size[~keep & np.isfinite(size)])
    return {**fit, "n_dropped": len(dropped), "dropped_bytes": dropped}


def fit_once(sizes: Sequence[float], times_s: Sequence[float], factor: float) -> dict[str, Any]:
    """Least squares of ``t = alpha + factor * size / beta`` (alpha, 1/beta >= 0).

    ``beta`` is then a bus bandwidth in bytes/s. Residuals are relative (weights
    1/t) so that microsecond and second-long messages count alike, under a robust
    (soft-L1) loss: a few sizes off the line (a token bucket's burst lets small
    messages through at wire speed; a stall) do not drag the fit. ``beta`` is
    None (not identified) when fewer than two distinct sizes were measured, when
    the factor is 0 (world size 1: nothing crosses a link) or when the fitted
    slope is not positive."""
    import numpy as np

    size = np.asarray(sizes, dtype=float)
    t = np.asarray(times_s, dtype=float)
    keep = np.isfinite(size) & np.isfinite(t) & (t > 0)
    size, t = size[keep], t[keep]
    out: dict[str, Any] = {
        "alpha_s": None,
        "beta_bytes_per_s": None,
        "bandwidth_identified": False,
        "rel_rms_error": None,
        "n_points": int(len(t)),
        "bytes_factor": float(factor),
    }
    if len(t) == 0:
        return out
    if factor <= 0 or len(np.unique(size)) < 2:
        out["alpha_s"] = float(np.median(t))
        return out
    from scipy.optimize import least_squares

    x = factor * size
    # Unknowns in units the solver handles alike: alpha in ms, 1/beta in seconds per megabyte.
    start = [max(float(t.min()) * 1e3 / 2, 1e-9), max(float(np.median(t / x)) * 1e6, 1e-12)]
    result = least_squares(
        lambda p: (p[0] / 1e3 + x / 1e6 * p[1] - t) / t,
        start,
        bounds=([0, 0], [np.inf, np.inf]),
        loss="soft_l1",
        f_scale=ROBUST_SCALE,
        x_scale="jac",
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-12,
    )
    alpha, inv_beta = float(result.x[0]) / 1e3, float(result.x[1]) / 1e6
    alpha = alpha if alpha > 1e-9 else 0.0  # below a nanosecond is the solver's bound, not a latency
    predicted = alpha + x * inv_beta
    relative = np.abs(predicted - t) / t
    out.update(
        alpha_s=float(alpha),
        rel_rms_error=float(np.sqrt(np.mean(relative**2))),
        rel_median_error=float(np.median(relative)),
    )
    # A per-byte term under 1% of the largest message's time is no measured bandwidth.
    if x.max() * inv_beta > 0.01 * t.max():
        out.update(beta_bytes_per_s=float(1.0 / inv_beta), bandwidth_identified=True)
    return out


def comm_time_s(fit: dict[str, Any], op: str, size_bytes: float, world_size: int, messages: int = 1) -> float:
    """Predicted time of ``messages`` collectives moving ``size_bytes`` in total.
    NaN when the fit's bandwidth is not identified."""
    beta = fit.get("beta_bytes_per_s")
    if not beta or fit.get("alpha_s") is None:
        return float("nan")
    return messages * float(fit["alpha_s"]) + bus_factor(op, world_size) * size_bytes / float(beta)


def ddp_buckets(grad_bytes: float) -> int:
    """All-reduces DDP issues per step for ``grad_bytes`` of gradients (25 MB buckets)."""
    return max(1, math.ceil(grad_bytes / DDP_BUCKET_BYTES))


def find_commbench_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """commbench.json files named directly or found anywhere under the given directories."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_file() and path.name.endswith(".json"):
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob(RESULT_FILE)))
    unique: dict[Path, None] = dict.fromkeys(p.resolve() for p in found)
    return list(unique)


def read_commbench(path: str | os.PathLike) -> dict[str, Any]:
    """One result file, checked for the keys the analysis uses."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CommbenchError(f"{path}: cannot read a commbench result: {e}") from e
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise CommbenchError(
            f"{path}: key 'schema' must be {SCHEMA!r}, got {data.get('schema')!r}"
            if isinstance(data, dict)
            else f"{path}: not a JSON object"
        )
    for key in ("world_size", "nodes", "gpus_per_node", "results", "fits"):
        if key not in data:
            raise CommbenchError(f"{path}: missing key '{key}'")
    data["path"] = str(path)
    refit(data)
    return data


def refit(data: dict[str, Any]) -> None:
    """Fits from the file's raw measurements with this version's fit (files written by an
    older version are analysed alike); the recorded fits are kept as ``fits_recorded``."""
    rows = data.get("results") or []
    if not rows:
        return
    data["fits_recorded"] = data["fits"]
    data["fits"] = {
        op: fit_alpha_beta(
            [r["bytes"] for r in rows if r["op"] == op],
            [r["time_s"] for r in rows if r["op"] == op],
            bus_factor(op, int(data["world_size"])),
        )
        for op in dict.fromkeys(r["op"] for r in rows)
    }


def load_commbench(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    return [read_commbench(p) for p in find_commbench_files(paths)]


FIT_COLUMNS = [
    "nodes",
    "gpus_per_node",
    "world_size",
    "backend",
    "device_type",
    "op",
    "alpha_s",
    "beta_bytes_per_s",
    "busbw_gb_per_s",
    "bandwidth_identified",
    "rel_rms_error",
    "rel_median_error",
    "n_points",
    "label",
    "path",
]


def commbench_fit_table(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (result file, collective): the fitted alpha and beta of its topology."""
    import pandas as pd

    rows = []
    for data in results:
        for op, fit in data["fits"].items():
            beta = fit.get("beta_bytes_per_s")
            rows.append(
                {
                    "nodes": int(data["nodes"]),
                    "gpus_per_node": int(data["gpus_per_node"]),
                    "world_size": int(data["world_size"]),
                    "backend": data.get("backend", ""),
                    "device_type": data.get("device_type", ""),
                    "op": op,
                    "alpha_s": fit.get("alpha_s"),
                    "beta_bytes_per_s": beta,
                    "busbw_gb_per_s": beta / 1e9 if beta else None,
                    "bandwidth_identified": bool(fit.get("bandwidth_identified")),
                    "rel_rms_error": fit.get("rel_rms_error"),
                    "rel_median_error": fit.get("rel_median_error"),
                    "n_points": fit.get("n_points"),
                    "label": data.get("label", ""),
                    "path": data.get("path", ""),
                }
            )
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def fit_for_topology(
    results: Sequence[dict[str, Any]], nodes: int, gpus_per_node: int, op: str = "all_reduce"
) -> dict[str, Any] | None:
    """The most recent identified fit of ``op`` measured at exactly this topology."""
    matches = [
        d
        for d in results
        if int(d["nodes"]) == int(nodes)
        and int(d["gpus_per_node"]) == int(gpus_per_node)
        and (d["fits"].get(op) or {}).get("bandwidth_identified")
    ]
    if not matches:
        return None
    latest = max(matches, key=lambda d: d.get("created_at", 0))
    return {**latest["fits"][op], "path": latest.get("path", ""), "world_size": int(latest["world_size"])}
