"""The models table: per model, the best validation metrics of a sweep's training runs
joined with the bench-model figures (``harness analyze --models``).

Sources, found by walking the given directories:

- training (and ``harness eval``) runs: a run directory with ``metrics.jsonl``; the model
  is ``MODEL.NAME`` of its ``config.yaml``; its best ``val`` record by the primary metric
  (``run.json``'s ``primary_metric``, default ``val/accuracy``) counts;
- bench-model results: every ``bench_model.json`` (a sweep job of ``JOB.KIND bench-model``
  writes one into its run directory; ``harness bench-model --out DIR`` anywhere else).

Writes ``models.csv`` and ``models.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import yaml

VAL_METRICS = (
    ("val/accuracy", "accuracy"),
    ("val/macro_f1", "macro_f1"),
    ("val/roc_auc", "roc_auc"),
    ("val/AP", "AP"),
)
COLUMNS = [
    ("model", "model"),
    ("input", "input"),
    ("params", "params"),
    ("gflops", "GFLOPs"),
    ("weights_fp16_mb", "fp16 weights MB"),
    ("latency_cpu_ms", "latency CPU ms"),
    ("latency_cpu_onnxruntime_ms", "CPU ONNX Runtime ms"),
    ("latency_cpu_openvino_ms", "CPU OpenVINO ms"),
    ("latency_gpu_ms", "latency GPU ms"),
    ("latency_gpu_fp16_ms", "GPU fp16 ms"),
    ("throughput_img_per_s", "throughput img/s"),
    ("throughput_device", "on"),
    ("train_img_per_s", "train img/s"),
    ("accuracy", "accuracy"),
    ("macro_f1", "F1"),
    ("roc_auc", "ROC-AUC"),
    ("AP", "AP"),
    ("runs", "runs"),
    ("best_run", "best run"),
]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a hard kill
    return records


def _model_of(run_dir: Path) -> str | None:
    config = run_dir / "config.yaml"
    if config.is_file():
        data = yaml.safe_load(config.read_text()) or {}
        name = (data.get("MODEL") or {}).get("NAME")
        if name:
            return str(name)
    run = run_dir / "run.json"
    return json.loads(run.read_text()).get("model") if run.is_file() else None


def best_validation(run_dir: Path) -> dict[str, Any] | None:
    """The best ``val`` record of one run directory, by its primary metric."""
    run_json = run_dir / "run.json"
    run = json.loads(run_json.read_text()) if run_json.is_file() else {}
    primary = run.get("primary_metric") or "val/accuracy"
    higher = run.get("higher_is_better", True)
    vals = [
        r
        for r in _read_jsonl(run_dir / "metrics.jsonl")
        if r.get("kind") == "val" and isinstance(r.get(primary), (int, float))
    ]
    if not vals:
        return None
    best = (max if higher else min)(vals, key=lambda r: r[primary])
    return {
        "run": run_dir.name,
        "primary": primary,
        "higher": higher,
        "value": best[primary],
        **{name: best.get(key) for key, name in VAL_METRICS},
    }


def collect(dirs: list[Path]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """(validation results by model, every bench-model row) under ``dirs``."""
    vals: dict[str, list[dict[str, Any]]] = {}
    bench: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for root in dirs:
        if not root.exists():
            raise FileNotFoundError(f"harness analyze --models: {root} does not exist")
        for metrics in sorted(root.rglob("metrics.jsonl")):
            run_dir = metrics.parent.resolve()
            if run_dir in seen:
                continue
            seen.add(run_dir)
            model, best = _model_of(run_dir), best_validation(run_dir)
            if model and best:
                vals.setdefault(model, []).append(best)
        for path in sorted(set(p.resolve() for p in root.rglob("bench_model.json"))):
            bench += json.loads(path.read_text())
    return vals, bench


def _pick(rows: list[dict[str, Any]], device: str, runtime: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["device"] == device and r["runtime"] == runtime]


def _median_ok(rows: list[dict[str, Any]], key: str) -> float:
    values = sorted(r[key] for r in rows if r.get("status") == "ok" and isinstance(r.get(key), (int, float)))
    return values[len(values) // 2] if values else math.nan


def models_table(vals: dict[str, list[dict[str, Any]]], bench: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model and benchmarked input size (validation joins by model). Several
    bench rows of one model, size, device and runtime (repeats) give the median."""
    rows = []
    keys = sorted(
        {(r["model"], r["input"]) for r in bench}
        | {(m, "") for m in vals if not any(r["model"] == m for r in bench)}
    )
    for model, size in keys:
        mine = [r for r in bench if r["model"] == model and r["input"] == size]
        row: dict[str, Any] = {"model": model, "input": size or None}
        if mine:
            row.update({k: mine[0][k] for k in ("params", "gflops", "weights_fp16_mb")})
        row["latency_cpu_ms"] = _median_ok(_pick(mine, "cpu", "eager"), "latency_ms_median")
        row["latency_cpu_onnxruntime_ms"] = _median_ok(_pick(mine, "cpu", "onnxruntime"), "latency_ms_median")
        row["latency_cpu_openvino_ms"] = _median_ok(_pick(mine, "cpu", "openvino"), "latency_ms_median")
        row["latency_gpu_ms"] = _median_ok(_pick(mine, "cuda", "eager"), "latency_ms_median")
        row["latency_gpu_fp16_ms"] = _median_ok(_pick(mine, "cuda", "fp16"), "latency_ms_median")
        device = "cuda" if _pick(mine, "cuda", "eager") else "cpu"
        row["throughput_device"] = device if mine else None
        row["throughput_img_per_s"] = _median_ok(_pick(mine, device, "eager"), "throughput_img_per_s")
        row["train_img_per_s"] = _median_ok(_pick(mine, device, "eager"), "train_img_per_s")
        results = vals.get(model, [])
        if results:
            higher = results[0]["higher"]
            best = (max if higher else min)(results, key=lambda r: r["value"])
            row.update({name: best.get(name) for _, name in VAL_METRICS})
            row["best_run"], row["runs"] = best["run"], len(results)
        rows.append(row)
    return rows


def write_models_table(dirs: list[Path], out: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    import pandas as pd

    from analysis.markdown import table

    vals, bench = collect(dirs)
    if not vals and not bench:
        raise FileNotFoundError(
            f"harness analyze --models: no run with validation records and no "
            f"bench_model.json under {', '.join(map(str, dirs))}"
        )
    rows = models_table(vals, bench)
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "models.csv", out / "models.md"
    frame.to_csv(csv_path, index=False)
    columns = [(c, h) for c, h in COLUMNS if c in frame.columns and frame[c].notna().any()]
    hardware = sorted(
        {f"{r.get('cpu_model', '?')}" + (f" + {r['gpu_name']}" if r.get("gpu_name") else "") for r in bench}
    )
    text = [
        "# Models table\n",
        f"Sources: {', '.join(map(str, dirs))}\n",
        "Validation: the best `val` record of each model's runs (by the run's primary metric). "
        "Latency: batch 1, median ms (eager fp32 unless named). Throughput and train img/s: eager fp32 "
        "at the largest benchmarked batch, on the GPU when one was benchmarked. GFLOPs: "
        "FlopCounterMode, one forward pass (a multiply-add counts 2).\n",
        f"Benchmark hardware: {'; '.join(hardware) or 'none'}\n",
        table(frame, columns),
    ]
    md_path.write_text("\n".join(text))
    return csv_path, md_path, rows


def run_models(args: argparse.Namespace) -> int:
    """``harness analyze --models SWEEP_DIR... [--bench DIR...] [--out DIR]``."""
    dirs = [Path(d) for d in list(args.sweep_dirs) + list(getattr(args, "bench", []) or [])]
    if not dirs:
        print("harness analyze --models: give at least one SWEEP_DIR", flush=True)
        return 2
    out = Path(args.out) if args.out else dirs[0] / "analysis"
    try:
        csv_path, md_path, rows = write_models_table(dirs, out)
    except FileNotFoundError as e:
        print(str(e), flush=True)
        return 2
    print(f"models table: {len(rows)} models -> {md_path} ({csv_path.name})")
    return 0
