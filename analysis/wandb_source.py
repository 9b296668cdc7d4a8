"""Runs of a W&B group, mapped to the same table as run directories.

Uses only the public API: ``wandb.Api().runs(path, filters={"group": G})``,
``run.config``, ``run.summary`` and ``run.scan_history()`` (every row, not the
sampled ``history()``). Each run is cached as JSON under
``<cache>/<entity>_<project>/<run id>.json``; a later analysis reads the cache
unless ``refresh`` is set or the run was still running when it was cached.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from analysis.common import AnalysisError, default_cache_dir
from analysis.load import IDENTITY_DEFAULTS, RunSet, empty_runs, finish_row, first_line, records_frame
from harness import runformat as rf
from harness.runformat import flatten

# W&B run states -> run-format states.
STATES = {
    "finished": rf.COMPLETED,
    "failed": rf.FAILED,
    "crashed": rf.FAILED,
    "killed": rf.CANCELLED,
    "running": rf.RUNNING,
    "pending": rf.PENDING,
    "preempted": rf.PREEMPTED,
}
FINAL_STATES = {"finished", "failed", "crashed", "killed"}
# Used only when a run's config does not say which metric is primary.
PRIMARY_BY_WORKLOAD = {"fer": ("val/accuracy", True), "pose": ("val/AP", True)}


def load_wandb(
    path: str,
    group: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
    api: Any = None,
) -> RunSet:
    """Runs of ``path`` (``ENTITY/PROJECT``), optionally one group, as a RunSet.
    ``api``: an object with ``wandb.Api``'s ``runs`` method (default: ``wandb.Api()``)."""
    if not re.fullmatch(r"[^/\s]+/[^/\s]+", path or ""):
        raise AnalysisError(f"--wandb {path!r}: expected ENTITY/PROJECT")
    if api is None:
        import wandb

        api = wandb.Api()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = cache / path.replace("/", "_")
    cache.mkdir(parents=True, exist_ok=True)
    filters = {"group": group} if group else {}
    rows, records = [], []
    for run in api.runs(path, filters=filters):
        data = _cached_or_fetched(run, cache, refresh)
        row, run_records = map_run(data, path)
        rows.append(row)
        records.extend(run_records)
    if not rows:
        raise AnalysisError(f"--wandb {path}: no runs" + (f" in group {group!r}" if group else ""))
    import pandas as pd

    runs = pd.DataFrame(rows) if rows else empty_runs()
    return RunSet(runs=runs, records=records_frame(records))


def _cached_or_fetched(run: Any, cache: Path, refresh: bool) -> dict:
    file = cache / f"{run.id}.json"
    if file.is_file() and not refresh:
        try:
            data = json.loads(file.read_text())
        except ValueError:
            data = None
        if data and data.get("wandb_state") in FINAL_STATES:
            return data
    data = {
        "id": run.id,
        "name": run.name,
        "group": getattr(run, "group", "") or "",
        "wandb_state": run.state,
        "config": _plain(dict(run.config)),
        "summary": _plain(dict(run.summary)),
        "history": [_plain(dict(row)) for row in run.scan_history()],
        "fetched_at": time.time(),
    }
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, file)
    return data


def _plain(value: Any) -> Any:
    """JSON-safe copy (W&B objects such as summary media become strings)."""
    return json.loads(json.dumps(value, default=str))


def map_run(data: dict, path: str) -> tuple[dict, list[dict]]:
    """(row, records) in the run-directory form, from a cached W&B run."""
    config = data.get("config") or {}
    flat = flatten(config, lists_as_tuples=True)
    from_config = rf.run_fields_from_config(flat)
    identity: dict[str, Any] = config["run"] if isinstance(config.get("run"), dict) else {}
    row: dict[str, Any] = {
        "run_id": f"wandb:{path}/{data['id']}",
        "source": "wandb",
        "run_dir": "",
        **IDENTITY_DEFAULTS,
        "run_name": data.get("name") or data["id"],
        "wandb_group": data.get("group", ""),
        "wandb_id": data["id"],
    }
    for key in IDENTITY_DEFAULTS:
        for source in (identity.get(key), flat.get(key), flat.get(f"derived/{key}"), from_config.get(key)):
            if source is not None:
                row[key] = source
                break
    row["wandb_id"] = data["id"]  # the W&B run itself is the authority on its id
    summary = data.get("summary") or {}
    if not row["primary_metric"] and row["workload"] in PRIMARY_BY_WORKLOAD:
        row["primary_metric"], row["higher_is_better"] = PRIMARY_BY_WORKLOAD[row["workload"]]
    if not row["num_params"]:
        row["num_params"] = int(summary.get("num_params") or 0)
    row.update({k: v for k, v in flat.items() if k[:1].isupper()})
    row["state"] = STATES.get(data.get("wandb_state", ""), str(data.get("wandb_state", "unknown")))
    row["error"] = first_line(summary.get("error", ""))
    row["requeues"] = int(summary.get("requeues") or 0)
    row["best"] = float("nan")
    row["scaling"] = None
    records = _records(data.get("history", []), flat)
    for record in records:
        record["run_id"] = row["run_id"]
    finish_row(row, [])
    return row, records


# harness/runlog.py logs epoch records to W&B as epoch/<last part of the key>.
EPOCH_KEYS = {rf.wandb_epoch_key(key): key for key, metric in rf.METRICS.items() if rf.EPOCH in metric.kinds}


def _records(rows: list[dict], flat: dict[str, Any]) -> list[dict]:
    """W&B history rows as metrics.jsonl records. Rows that carry ``kind`` are taken
    as they are, and so are rows with the harness's ``trainer/kind``, ``trainer/step``,
    ``trainer/samples``, ``trainer/time`` and ``trainer/steady``; older views (train rows
    with ``trainer/step``, epoch rows
    with ``epoch/*``, val rows with ``val/*``) is mapped back, epoch and val rows
    taking step and samples from the train row before them, and ``steady`` inferred
    from ``LOG.WARMUP_STEPS`` when not logged."""
    warmup = int(flat.get("LOG.WARMUP_STEPS") or 0)
    window = int(flat.get("LOG.EVERY_N_STEPS") or 1)
    last = {"step": 0, "samples": 0}
    out = []
    for row in sorted(rows, key=lambda r: r.get("_step") or 0):
        record = {k: v for k, v in row.items() if v is not None}
        kind = record.get("kind") or record.get("trainer/kind")
        if kind not in ("train", "epoch", "val"):
            if "time/epoch_s" in record or any(k.startswith("epoch/") for k in record):
                kind = "epoch"
            elif "trainer/step" in record or "throughput/img_per_s" in record:
                kind = "train"
            elif any(k.startswith("val/") for k in record):
                kind = "val"
            else:
                continue
        record["kind"] = kind
        for logged, key in (
            ("trainer/step", "step"),
            ("trainer/samples", "samples"),
            ("trainer/time", "time"),
            ("_runtime", "time"),
            ("trainer/steady", "steady"),
        ):
            if logged in record:
                record.setdefault(key, record[logged])
        if kind == "epoch":
            record.update({EPOCH_KEYS[k]: v for k, v in list(record.items()) if k in EPOCH_KEYS})
        if kind == "train":
            if "steady" not in record:  # windows that began after the warmup
                record["steady"] = record.get("step", 0) - window >= warmup
            record["steady"] = bool(record["steady"])
            last = {key: record.get(key, last[key]) for key in last}
        else:
            record.setdefault("step", last["step"])
            record.setdefault("samples", last["samples"])
        out.append(record)
    return out
