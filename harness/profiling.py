"""torch.profiler around chosen training steps (the PROFILE config block), and the
``harness profile`` command.

Each rank writes its Chrome trace to ``<run dir>/profile/trace-rank<r>-cycle<c>.json``
(open in chrome://tracing, Perfetto or TensorBoard). When training ends, rank 0 writes
``profile/summary.md``: its top operators by self time and by memory, and, when the
optional Holistic Trace Analysis package (``pip install .[profile]``) is installed and
the traces have GPU kernels, HTA's temporal breakdown and communication/computation
overlap over every rank's trace.

This module imports torch only inside functions: the CLI imports it to build its parser.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("harness")
PROFILE_DIR = "profile"
SUMMARY = "summary.md"
TOP_N = 15


class StepProfiler:
    """``torch.profiler.profile`` on the schedule of cfg.PROFILE; inert when disabled.

    ``start()`` before the first step, ``step()`` after every optimizer step, ``stop()``
    when training returns (every rank, then rank 0 writes the summary)."""

    def __init__(self, cfg: Any, run_dir: Path, device: Any, rank: int):
        p = cfg.PROFILE
        self.enabled = bool(p.ENABLED)
        self.dir = run_dir / PROFILE_DIR
        self.rank = rank
        self.cuda = device.type == "cuda"
        self.prof: Any = None
        self.cycles = 0
        self.first_cycle_steps = int(p.WAIT) + int(p.WARMUP) + int(p.ACTIVE)
        if not self.enabled:
            return
        for key in ("WAIT", "WARMUP", "REPEAT"):
            if int(p[key]) < 0:
                raise ValueError(f"PROFILE.{key} must be >= 0, got {p[key]}")
        if int(p.ACTIVE) < 1:
            raise ValueError(f"PROFILE.ACTIVE must be >= 1 (steps recorded per cycle), got {p.ACTIVE}")
        import torch.profiler as tp

        activities = [tp.ProfilerActivity.CPU] + ([tp.ProfilerActivity.CUDA] if self.cuda else [])
        self.prof = tp.profile(
            activities=activities,
            schedule=tp.schedule(
                wait=int(p.WAIT), warmup=int(p.WARMUP), active=int(p.ACTIVE), repeat=int(p.REPEAT)
            ),
            on_trace_ready=self._trace_ready,
            record_shapes=bool(p.RECORD_SHAPES),
            profile_memory=bool(p.PROFILE_MEMORY),
            with_stack=bool(p.WITH_STACK),
        )

    def start(self) -> None:
        if self.prof is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.prof.start()

    def step(self) -> None:
        if self.prof is not None:
            self.prof.step()

    def stop(self, summarize: bool = True) -> None:
        """End profiling; with ``summarize`` (every rank must call it then), rank 0 writes summary.md."""
        if self.prof is None:
            return
        prof, self.prof = self.prof, None
        prof.stop()
        if not summarize:
            return
        from harness import distributed as du

        du.barrier()  # every rank's trace is on disk
        if self.rank == 0:
            if self.cycles == 0:
                log.warning(
                    "PROFILE: training ended before a profiling cycle completed (PROFILE.WAIT + "
                    "WARMUP + ACTIVE = %d steps); no trace was written",
                    self.first_cycle_steps,
                )
            write_summary(self.dir, prof if self.cycles else None, self.cuda)

    def _trace_ready(self, prof: Any) -> None:
        path = self.dir / f"trace-rank{self.rank}-cycle{self.cycles}.json"
        prof.export_chrome_trace(str(path))
        self.cycles += 1
        log.info("PROFILE: wrote %s", path)


# ------------------------------------------------------------------ summary
def operator_rows(prof: Any, cuda: bool) -> list[dict[str, Any]]:
    """One row per operator of the last recorded cycle (self/total times in ms, memory in MiB)."""
    rows = []
    for e in prof.key_averages():
        rows.append(
            {
                "name": e.key,
                "calls": e.count,
                "self_cpu_ms": e.self_cpu_time_total / 1e3,
                "cpu_total_ms": e.cpu_time_total / 1e3,
                "self_device_ms": getattr(e, "self_device_time_total", 0.0) / 1e3 if cuda else 0.0,
                "self_cpu_mem_mib": e.self_cpu_memory_usage / 2**20,
                "self_device_mem_mib": getattr(e, "self_device_memory_usage", 0) / 2**20 if cuda else 0.0,
            }
        )
    return rows


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |\n"
    head += "|" + "|".join("---" for _ in columns) + "|\n"
    body = ""
    for r in rows:
        cells = [
            f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]).replace("|", "\\|") for k, _ in columns
        ]
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


def render_summary(rows: list[dict[str, Any]], cuda: bool, hta: str) -> str:
    time_key = "self_device_ms" if cuda else "self_cpu_ms"
    time_cols = [
        ("name", "operator"),
        ("calls", "calls"),
        ("self_cpu_ms", "self CPU (ms)"),
        ("cpu_total_ms", "CPU total (ms)"),
    ]
    time_cols += [("self_device_ms", "self CUDA (ms)")] if cuda else []
    mem_key = "self_device_mem_mib" if cuda else "self_cpu_mem_mib"
    mem_cols = [("name", "operator"), ("calls", "calls"), ("self_cpu_mem_mib", "self CPU memory (MiB)")] + (
        [("self_device_mem_mib", "self CUDA memory (MiB)")] if cuda else []
    )
    by_time = sorted(rows, key=lambda r: -r[time_key])[:TOP_N]
    # Self memory is allocations minus frees inside the operator: the top ones hold memory.
    by_mem = [r for r in sorted(rows, key=lambda r: -r[mem_key]) if r[mem_key] > 0][:TOP_N]
    text = (
        "# Profile summary (rank 0)\n\nOperators of the profiled steps of rank 0 (every cycle's "
        "steps together), from `torch.profiler`'s key averages. Per-rank Chrome traces: "
        "`trace-rank<r>-cycle<c>.json` beside this file.\n\n"
    )
    text += f"## Top {TOP_N} operators by self {'CUDA' if cuda else 'CPU'} time\n\n"
    text += _table(by_time, time_cols)
    text += f"\n## Top {TOP_N} operators by self memory\n\n"
    text += (
        _table(by_mem, mem_cols)
        if by_mem
        else "No memory recorded: set `PROFILE.PROFILE_MEMORY True` to record allocations.\n"
    )
    text += "\n## Holistic Trace Analysis\n\n" + hta + "\n"
    return text


def hta_report(trace_dir: Path) -> str:
    """HTA's temporal breakdown and comm/compute overlap over the per-rank traces, as markdown;
    or the reason it could not run."""
    try:
        from hta.trace_analysis import TraceAnalysis
    except ImportError:
        return (
            "Not run: the optional `holistictraceanalysis` package is not installed "
            "(`pip install -e '.[profile]'`)."
        )
    try:
        analyzer = TraceAnalysis(trace_dir=str(trace_dir))
        breakdown = analyzer.get_temporal_breakdown(visualize=False)
        text = "Temporal breakdown of each rank's GPU time (HTA):\n\n" + breakdown.to_markdown(index=False)
        try:
            overlap = analyzer.get_comm_comp_overlap(visualize=False)
            text += "\n\nCommunication overlapped with computation (HTA):\n\n" + overlap.to_markdown(
                index=False
            )
        except Exception as e:  # no NCCL kernels (single GPU, dp)
            text += f"\n\nComm/compute overlap not available: {type(e).__name__}: {e}"
        return text
    except Exception as e:  # HTA analyses GPU kernels; CPU-only traces have none
        first = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        return (
            f"Not available for these traces ({first}). HTA's breakdowns are built from GPU kernel "
            "events; CPU-only traces have none, so use the operator tables above and the run's "
            "`time/*` step breakdown in metrics.jsonl instead."
        )


def write_summary(trace_dir: Path, prof: Any, cuda: bool) -> Path:
    path = trace_dir / SUMMARY
    trace_dir.mkdir(parents=True, exist_ok=True)
    if prof is None:
        path.write_text(
            "# Profile summary\n\nNo profiling cycle completed: training ended within the first "
            "PROFILE.WAIT + PROFILE.WARMUP + PROFILE.ACTIVE steps.\n"
        )
        return path
    path.write_text(render_summary(operator_rows(prof, cuda), cuda, hta_report(trace_dir)))
    log.info("PROFILE: wrote %s", path)
    return path


# ------------------------------------------------------------------ CLI
def cmd_profile(args: argparse.Namespace) -> int:
    from harness.cli import cmd_train

    args.opts = list(args.opts) + ["PROFILE.ENABLED", "True"]
    return cmd_train(args)


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "profile",
        help="train one run with torch.profiler on (PROFILE.ENABLED True)",
        description="`harness train` with PROFILE.ENABLED True: the PROFILE.WAIT/WARMUP/ACTIVE/REPEAT "
        "steps are profiled; one Chrome trace per rank and profile/summary.md go into the run "
        "directory. Trailing KEY VALUE pairs override config keys, e.g. PROFILE.ACTIVE 5.",
    )
    p.add_argument("--config", required=True, help="experiment YAML (may use _BASE_)")
    p.add_argument(
        "--gpus", type=int, help="devices (DIST.GPUS); on CPU the number of gloo processes for ddp"
    )
    p.add_argument("--strategy", choices=("single", "dp", "ddp"), help="DIST.STRATEGY")
    p.add_argument("--output-dir", help="OUTPUT_DIR: parent of the run directory")
    p.add_argument("--run-name", help="RUN_NAME: the run directory's name")
    p.add_argument(
        "--resume", default="auto", help="as for `harness train`: auto, never or a checkpoint path"
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    p.set_defaults(func=cmd_profile)
