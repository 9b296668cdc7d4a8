"""Reading run directories (docs/run-format.md) into one table of runs.

A :class:`RunSet` is what every other analysis module consumes, whatever the
source (run directories here, W&B in ``analysis.wandb_source``): ``runs`` has one
row per run (identity from run.json, state from status.json, every config key as
a dotted column such as ``TRAIN.OPTIMIZER``), ``records`` every metrics record of
every run in one table with a ``run_id`` column. One table, not one per run: the
per-run pandas overhead would dominate a 1000-run sweep.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.common import AnalysisError
from analysis.configfile import load_config_flat
from harness import runformat as rf
from harness.runformat import COMPLETED, RUN_FILES

# Identity columns every run row has (run.json fields), with the value used when absent.
IDENTITY_DEFAULTS: dict[str, Any] = {name: field.default for name, field in rf.RUN_FIELDS.items()}


@dataclass
class RunSet:
    """Runs from one or more sources, in one table."""

    runs: pd.DataFrame
    records: pd.DataFrame = field(default_factory=lambda: records_frame([]))
    #: Sweep manifests by sweep directory (``manifest.json`` contents).
    manifests: dict[str, dict] = field(default_factory=dict)

    @property
    def included(self) -> pd.DataFrame:
        """Runs that count in the numbers: completed and readable."""
        return self.runs[self.runs["included"]]

    @property
    def excluded(self) -> pd.DataFrame:
        return self.runs[~self.runs["included"]]

    def history(self, run_id: str) -> pd.DataFrame:
        """The records of one run (prefer whole-table operations on ``records``)."""
        return self.records[self.records["run_id"] == run_id]

    def included_records(self, kind: str | None = None) -> pd.DataFrame:
        """Records of included runs, optionally of one kind."""
        mask = self.records["run_id"].isin(self.included["run_id"])
        if kind is not None:
            mask &= self.records["kind"] == kind
        return self.records[mask]

    def config_keys(self) -> list[str]:
        """Dotted config keys present as columns (``TRAIN.LR``...)."""
        return [c for c in self.runs.columns if c[:1].isupper()]


def empty_runs() -> pd.DataFrame:
    cols = [
        "run_id",
        "source",
        "run_dir",
        *IDENTITY_DEFAULTS,
        "state",
        "error",
        "requeues",
        "best",
        "scaling",
        "included",
        "exclude_reason",
        "n_hosts",
    ]
    return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})


# ------------------------------------------------------------- discovery
def find_run_dirs(path: str | os.PathLike) -> tuple[list[Path], dict[str, dict]]:
    """Run directories under ``path`` (a run dir, a sweep dir or a dir of run dirs)
    and the manifests of the sweeps found, keyed by sweep directory."""
    root = Path(path)
    if not root.is_dir():
        raise AnalysisError(
            f"{root}: not a directory (give a sweep directory, a directory of "
            "run directories, or a run directory)"
        )
    manifests: dict[str, dict] = {}
    if _is_run_dir(root):
        manifest = _read_manifest(root.parent.parent) if root.parent.name == rf.SWEEP_RUNS_DIR else None
        if manifest is not None:
            manifests[str(root.parent.parent)] = manifest
        return [root], manifests
    found: list[Path] = []
    # Walk down until run dirs are met; a run dir's own sub-folders are never searched.
    stack = [root]
    while stack:
        here = stack.pop()
        manifest = _read_manifest(here)
        if manifest is not None:
            manifests[str(here)] = manifest
        try:
            children = sorted(p for p in here.iterdir() if p.is_dir())
        except OSError as e:
            raise AnalysisError(f"{here}: cannot list directory: {e}") from e
        for child in children:
            if _is_run_dir(child):
                found.append(child)
            elif child.name not in (*rf.RUN_SUBDIRS, "analysis") and not child.name.startswith("."):
                stack.append(child)
    if not found:
        raise AnalysisError(
            f"{root}: no run directories found (a run directory holds {' or '.join(RUN_FILES[:2])})"
        )
    return sorted(found), manifests


def _is_run_dir(path: Path) -> bool:
    return (path / rf.RUN_JSON).is_file() or (path / rf.STATUS_JSON).is_file()


def _read_manifest(path: Path) -> dict | None:
    file = path / rf.MANIFEST_JSON
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise AnalysisError(f"{file}: unreadable sweep manifest: {e}") from e
    if not isinstance(data, dict):
        raise AnalysisError(f"{file}: a sweep manifest must be a JSON object")
    return data


def manifest_scaling(manifest: dict | None, where: str = "manifest.json") -> str | None:
    """``manifest["spec"]["scaling"]`` (weak|strong), or None when not stated."""
    if not manifest:
        return None
    spec = manifest.get("spec")
    value = spec.get("scaling") if isinstance(spec, dict) else None
    if value in (None, ""):
        return None
    if value not in ("weak", "strong"):
        raise AnalysisError(f"{where}: spec.scaling is {value!r}; expected 'weak' or 'strong'")
    return value


# ---------------------------------------------------------------- reading
def load_run_dirs(paths: Iterable[str | os.PathLike]) -> RunSet:
    """Every run under ``paths`` in one RunSet. Unreadable or unfinished runs are
    kept as rows with ``included=False`` and the reason, never dropped."""
    rows: list[dict] = []
    records: list[dict] = []
    manifests: dict[str, dict] = {}
    all_dirs: list[Path] = []
    scaling_of: dict[str, str | None] = {}
    for path in paths:
        run_dirs, found = find_run_dirs(path)
        manifests.update(found)
        scaling_of.update({d: manifest_scaling(m, f"{d}/manifest.json") for d, m in found.items()})
        all_dirs.extend(run_dirs)
    for run_dir in all_dirs:
        row, run_records = read_run_dir(run_dir)
        row["scaling"] = _sweep_scaling(run_dir, scaling_of)
        records.extend(run_records)
        rows.append(row)
    runs = pd.DataFrame(rows) if rows else empty_runs()
    dup = runs["run_id"][runs["run_id"].duplicated()]
    if len(dup):
        raise AnalysisError(f"run directory {dup.iloc[0]} was given twice; give each sweep once")
    return RunSet(runs=runs, records=records_frame(records), manifests=manifests)


def _sweep_scaling(run_dir: Path, scaling_of: dict[str, str | None]) -> str | None:
    for parent in run_dir.parents:
        if str(parent) in scaling_of:
            return scaling_of[str(parent)]
    return None


def read_run_dir(run_dir: str | os.PathLike) -> tuple[dict, list[dict]]:
    """(row, records) of one run directory; each record carries the ``run_id``.
    Problems make the row excluded with the file named in ``exclude_reason``;
    they do not raise."""
    run_dir = Path(run_dir)
    row: dict[str, Any] = {
        "run_id": str(run_dir.resolve()),
        "source": "dir",
        "run_dir": str(run_dir),
        **IDENTITY_DEFAULTS,
        "run_name": run_dir.name,
    }
    problems: list[str] = []
    run_json = _read_json(run_dir / rf.RUN_JSON, problems)
    status = _read_json(run_dir / rf.STATUS_JSON, problems)
    row.update({k: v for k, v in run_json.items() if k in IDENTITY_DEFAULTS or k not in row})
    row["state"] = str(status.get("state", "unknown"))
    row["error"] = first_line(status.get("error"))
    row["requeues"] = int(status.get("requeues") or 0)
    row["best"] = _float_or_nan(status.get("best"))
    if not row["primary_metric"]:
        row["primary_metric"] = str(status.get("primary_metric") or "")
    row.update(_read_config(run_dir / rf.CONFIG_YAML, problems))
    records = read_metrics(run_dir / rf.METRICS_JSONL, problems)
    for record in records:
        record["run_id"] = row["run_id"]
    finish_row(row, problems)
    return row, records


def finish_row(row: dict, problems: list[str]) -> None:
    """Derived columns and the include/exclude decision (shared with the W&B source)."""
    hosts = row.get("hosts") or ([row["host"]] if row.get("host") else [])
    row["hosts"] = tuple(sorted(set(hosts)))
    row["n_hosts"] = len(row["hosts"])
    if not row.get("global_batch"):
        row["global_batch"] = int(row.get("batch_size_per_gpu") or 0) * int(row.get("gpus") or 1)
    reasons = list(problems)
    if row["state"] != COMPLETED:
        reasons.insert(0, f"state {row['state']}")
    for key in ("workload", "strategy", "primary_metric"):
        if not row.get(key):
            reasons.append(f"run.json has no {key}")
    row["included"] = not reasons
    row["exclude_reason"] = "; ".join(reasons)


def _read_json(path: Path, problems: list[str]) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        problems.append(f"{path.name} missing")
        return {}
    except (OSError, ValueError) as e:
        problems.append(f"{path.name} unreadable: {e}")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not a JSON object")
        return {}
    return data


def _read_config(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = load_config_flat(f.read()) or {}
    except FileNotFoundError:
        problems.append("config.yaml missing")
        return {}
    except (OSError, yaml.YAMLError) as e:
        problems.append(f"config.yaml unreadable: {e}")
        return {}
    if not isinstance(data, dict):
        problems.append("config.yaml is not a mapping")
        return {}
    return data


def read_metrics(path: Path, problems: list[str] | None = None) -> list[dict]:
    """The records of a metrics.jsonl. A torn last line (a run still writing) is
    skipped; a bad line elsewhere is a problem."""
    problems = [] if problems is None else problems
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        problems.append("metrics.jsonl missing")
        return []
    filled = [line for line in lines if line.strip()]
    try:  # one parse for the whole file (3x faster); line by line only to name a bad line
        parsed = json.loads(b"[" + b",".join(filled) + b"]")
    except ValueError:
        parsed = None
    if parsed is not None and len(parsed) == len(filled) and all(isinstance(r, dict) for r in parsed):
        return [r for r in parsed if "kind" in r]
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number != len(lines):
                problems.append(f"metrics.jsonl line {number} is not JSON")
            continue
        if isinstance(record, dict) and "kind" in record:
            records.append(record)
    return records


def records_frame(records: list[dict]) -> pd.DataFrame:
    """All records as one table. A record repeated for the same (run, kind, step)
    after a resume keeps its last copy; rows are ordered by run, then step."""
    if not records:
        return pd.DataFrame(
            {
                "run_id": pd.Series(dtype=object),
                "kind": pd.Series(dtype=object),
                "step": pd.Series(dtype=float),
            }
        )
    frame = pd.DataFrame.from_records(records)
    frame = frame.drop_duplicates(subset=["run_id", "kind", "step"], keep="last")
    return frame.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)


def first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
