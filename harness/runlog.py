"""One rank-aware logger: text log, metrics.jsonl, status.json and W&B.

Every rank may call every method; only the main rank writes. W&B problems
(no network, bad key, init timeout) cost one warning and never stop training.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness import distributed as du
from harness.rundir import write_status
from harness.runformat import DISCARDED_JSONL, METRICS_JSONL, TRAIN_LOG, wandb_epoch_key

log = logging.getLogger("harness")


def setup_text_logging(run_dir: Path | None, main: bool) -> None:
    """Console (and ``train.log`` on the main rank); other ranks only warn."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO if main else logging.WARNING)
    fmt = logging.Formatter(f"%(asctime)s [rank{du.rank()}] %(levelname)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    log.addHandler(console)
    if main and run_dir is not None and not _is_stderr(run_dir / TRAIN_LOG):
        # (The local backend already sends stderr to train.log: one handler, no doubled lines.)
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / TRAIN_LOG)
        fh.setFormatter(fmt)
        log.addHandler(fh)


def _is_stderr(path: Path) -> bool:
    """Whether this process's stderr already writes to ``path``."""
    try:
        err, target = os.fstat(sys.stderr.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (err.st_dev, err.st_ino) == (target.st_dev, target.st_ino)


class WandbSink:
    """W&B from the main rank; disabled for good after the first failure."""

    def __init__(self) -> None:
        self.run: Any = None

    def start(self, settings: dict[str, Any], run_dir: Path, run_id: str, config: dict) -> str | None:
        if settings["mode"] == "disabled":
            return None
        try:
            import wandb

            self.run = wandb.init(
                project=settings["project"],
                entity=settings["entity"] or None,
                group=settings["group"],
                job_type=settings["job_type"],
                name=settings["name"],
                tags=list(settings["tags"]),
                config=config,
                dir=str(run_dir),
                mode=settings["mode"],
                id=run_id,
                resume="allow",
                settings=wandb.Settings(
                    init_timeout=settings["init_timeout"], console="off", x_disable_stats=True
                ),
            )
            self.run.define_metric("trainer/step")
            self.run.define_metric("train/*", step_metric="trainer/step")
            self.run.define_metric("throughput/*", step_metric="trainer/step")
            self.run.define_metric("time/*", step_metric="trainer/step")
            self.run.define_metric("memory/*", step_metric="trainer/step")
            self.run.define_metric("perf/*", step_metric="trainer/step")
            self.run.define_metric("epoch")
            self.run.define_metric("epoch/*", step_metric="epoch")
            self.run.define_metric("val/*", step_metric="epoch")
            return self.run.id
        except Exception as e:  # any W&B failure must leave training running
            log.warning("W&B disabled for this run: %s: %s", type(e).__name__, e)
            self.run = None
            return None

    def log(self, data: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.log(data)
        except Exception as e:
            log.warning("W&B logging failed, continuing without W&B: %s", e)
            self.run = None

    def finish(self, exit_code: int = 0) -> None:
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:
            log.warning("W&B finish failed: %s", e)
        self.run = None


class RunLogger:
    """Fans records out to metrics.jsonl and W&B, and keeps status.json current."""

    def __init__(self, run_dir: Path, primary_metric: str, higher_is_better: bool):
        self.main = du.is_main()
        self.run_dir = run_dir
        self.metrics_path = run_dir / METRICS_JSONL
        self.primary = primary_metric
        self.higher_is_better = higher_is_better
        self.wandb = WandbSink()
        self.best: float | None = None

    # ---- lifecycle
    def start_wandb(self, settings: dict[str, Any], run_id: str, config: dict) -> str | None:
        return self.wandb.start(settings, self.run_dir, run_id, config) if self.main else None

    def rewind(self, step: int) -> None:
        """After a resume from ``step``: records past it belong to lost work; move
        them to metrics.discarded.jsonl (kept, not deleted) so the history is exact."""
        if not self.main or not self.metrics_path.exists():
            return
        keep: list[str] = []
        drop: list[str] = []
        for line in self.metrics_path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a hard kill
                drop.append(line)
                continue
            (keep if rec.get("step", 0) <= step else drop).append(line)
            if rec.get("kind") == "val" and rec.get("step", 0) <= step:
                self._track_best(rec.get(self.primary))
        if drop:
            with open(self.run_dir / DISCARDED_JSONL, "a") as f:
                f.write("\n".join(drop) + "\n")
            from harness.rundir import atomic_write_text

            atomic_write_text(self.metrics_path, "".join(k + "\n" for k in keep))

    def finish(self, exit_code: int = 0) -> None:
        if self.main:
            self.wandb.finish(exit_code)

    # ---- records
    def record(
        self, kind: str, values: dict[str, Any], *, step: int, epoch: float, elapsed: float, samples: int
    ) -> None:
        if not self.main:
            return
        rec = {
            "kind": kind,
            "step": step,
            "epoch": epoch,
            "time": round(elapsed, 4),
            "samples": samples,
            "unix_time": round(time.time(), 3),
        }
        rec.update({k: _plain(v) for k, v in values.items()})
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if kind == "val":
            self._track_best(rec.get(self.primary))
        self.wandb.log(self._wandb_view(kind, rec))

    def _wandb_view(self, kind: str, rec: dict[str, Any]) -> dict[str, Any]:
        scalars = {k: v for k, v in rec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        # Every row carries its position, so W&B histories map back to metrics.jsonl records.
        position = {
            "trainer/step": rec["step"],
            "trainer/samples": rec["samples"],
            "trainer/time": rec["time"],
            "trainer/kind": kind,
        }
        if kind == "train":
            out = {k: v for k, v in scalars.items() if "/" in k}
            out["trainer/steady"] = int(bool(rec.get("steady")))
            return {**out, **position}
        if kind == "epoch":
            out = {wandb_epoch_key(k): v for k, v in scalars.items() if "/" in k}
        else:
            out = {k: v for k, v in scalars.items() if k.startswith("val/")}
        out["epoch"] = rec["epoch"]
        return {**out, **position}

    def _track_best(self, value: Any) -> None:
        if not isinstance(value, (int, float)) or math.isnan(value):
            return
        if self.best is None or (value > self.best if self.higher_is_better else value < self.best):
            self.best = float(value)

    # ---- status
    def status(self, **fields: Any) -> None:
        if self.main:
            write_status(self.run_dir, best=self.best, **fields)

    def info(self, msg: str, *args: Any) -> None:
        log.info(msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        log.warning(msg, *args)


def _plain(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else str(v)
    return v
