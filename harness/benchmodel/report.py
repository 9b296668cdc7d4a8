"""bench-model outputs: hardware description, CSV, Markdown table, plots, W&B."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

CSV = "bench_model.csv"
MARKDOWN = "bench_model.md"
JSON = "bench_model.json"
LATENCY_PLOT = "latency_vs_gflops.png"
THROUGHPUT_PLOT = "throughput_vs_batch.png"

TABLE_COLUMNS = [
    ("model", "model"),
    ("input", "input"),
    ("runtime", "runtime"),
    ("precision", "precision"),
    ("device", "device"),
    ("params", "params"),
    ("gflops", "GFLOPs"),
    ("weights_fp16_mb", "fp16 weights MB"),
    ("latency_ms_median", "latency b1 ms (median)"),
    ("latency_ms_p90", "p90 ms"),
    ("throughput_img_per_s", "img/s"),
    ("throughput_batch", "at batch"),
    ("train_img_per_s", "train img/s"),
    ("peak_memory_gib", "peak mem GiB"),
    ("check_max_abs_err", "max |err| vs eager"),
    ("status", "status"),
]


def hardware() -> dict[str, Any]:
    """What the rows ran on: CPU model, GPU name and driver, library versions."""
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "gpu_name": "",
        "gpu_driver": "",
        "cuda_version": torch.version.cuda or "",
    }
    if torch.cuda.is_available():
        info["gpu_name"] = torch.cuda.get_device_name(0)
        info["gpu_driver"] = _nvidia_driver()
    for package in ("onnx", "onnxruntime", "openvino"):
        try:
            module = __import__(package)
            info[f"{package}_version"] = getattr(module, "__version__", "")
        except ImportError:
            info[f"{package}_version"] = ""
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def write_outputs(rows: list[dict[str, Any]], out_dir: Path, command: str) -> dict[str, Path]:
    """CSV, JSON (with the per-batch throughputs), Markdown table and the two plots."""
    import pandas as pd

    from analysis.markdown import table

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "throughput_by_batch"} for r in rows])
    paths = {"csv": out_dir / CSV, "json": out_dir / JSON, "markdown": out_dir / MARKDOWN}
    frame.to_csv(paths["csv"], index=False)
    paths["json"].write_text(json.dumps(rows, indent=1, default=str) + "\n")
    columns = [(c, h) for c, h in TABLE_COLUMNS if c in frame.columns]
    first = rows[0] if rows else {}
    gpu = f"GPU {first['gpu_name']} driver {first['gpu_driver']}" if first.get("gpu_name") else "no GPU"
    lines = [
        f"# bench-model\n\nCommand: `{command}`\n",
        f"Hardware: {first.get('cpu_model', '?')} ({first.get('cpu_count', '?')} cores, "
        f"{first.get('threads', '?')} threads used); {gpu}. torch {first.get('torch_version', '?')}, "
        f"onnxruntime {first.get('onnxruntime_version', '?')}, "
        f"openvino {first.get('openvino_version', '?')}.\n",
        "GFLOPs: FlopCounterMode, one forward pass at batch 1 (a multiply-add counts 2; halve for "
        "GMACs). Latency: batch 1, median and p90 over the timed iterations after warm-up. ONNX Runtime "
        "and OpenVINO rows are timed only when their outputs match eager fp32 PyTorch within "
        "1e-5 + 1e-3·max|output| (weights at PyTorch's default random init).\n",
        table(frame, columns),
    ]
    paths["markdown"].write_text("\n".join(lines))
    ok = [r for r in rows if r.get("status") == "ok"]
    if ok:
        paths["latency_plot"] = _latency_plot(ok, out_dir / LATENCY_PLOT)
        paths["throughput_plot"] = _throughput_plot(ok, out_dir / THROUGHPUT_PLOT)
    return paths


def _latency_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for runtime in sorted({r["runtime"] for r in rows}):
        sel = [r for r in rows if r["runtime"] == runtime]
        ax.scatter([r["gflops"] for r in sel], [r["latency_ms_median"] for r in sel], label=runtime)
    for r in rows:
        if r["runtime"] == "eager":
            ax.annotate(f"{r['model']} {r['input']}", (r["gflops"], r["latency_ms_median"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GFLOPs per image (FlopCounterMode)")
    ax.set_ylabel("latency at batch 1, median (ms)")
    ax.set_title(f"Latency vs GFLOPs ({rows[0]['device']})")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _throughput_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for r in rows:
        points = sorted((int(b), v) for b, v in r["throughput_by_batch"].items())
        ax.plot(
            [b for b, _ in points],
            [v for _, v in points],
            marker="o",
            label=f"{r['model']} {r['input']} {r['runtime']}",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch")
    ax.set_ylabel("inference throughput (img/s)")
    ax.set_title(f"Throughput vs batch ({rows[0]['device']})")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_wandb(
    rows: list[dict[str, Any]], paths: dict[str, Path], mode: str, project: str, out_dir: Path, name: str
) -> str | None:
    """The table and plots as one W&B run (job_type bench-model); a failure is one warning."""
    if mode == "disabled":
        return None
    try:
        import wandb

        run = wandb.init(
            project=project,
            job_type="bench-model",
            name=name,
            dir=str(out_dir),
            mode=mode,
            config={
                "hardware": {
                    k: v
                    for k, v in (rows[0] if rows else {}).items()
                    if k.endswith(("_version", "_name", "_driver", "cpu_model"))
                }
            },
            settings=wandb.Settings(console="off", x_disable_stats=True),
        )
        columns = sorted({k for r in rows for k in r if k != "throughput_by_batch"})
        data = [[_scalar(r.get(c)) for c in columns] for r in rows]
        payload: dict[str, Any] = {"bench_model/table": wandb.Table(columns=columns, data=data)}
        for key in ("latency_plot", "throughput_plot"):
            if key in paths:
                payload[f"bench_model/{key}"] = wandb.Image(str(paths[key]))
        run.log(payload)
        run.finish()
        return run.id
    except Exception as e:  # W&B is a copy of the files; never lose the files over it
        print(f"bench-model: W&B logging skipped: {type(e).__name__}: {e}")
        return None


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)
