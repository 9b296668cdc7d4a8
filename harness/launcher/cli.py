"""``harness sweep | status | resubmit | cancel``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from harness.launcher.status import DEFAULT_LOST_AFTER_S, DEFAULT_STALLED_AFTER_S


def _errors() -> tuple[type[BaseException], ...]:
    from harness.launcher.job_state import SchedulerError
    from harness.launcher.manifest import ManifestError
    from harness.launcher.profiles import ProfileError
    from harness.launcher.spec import SpecError

    return (SpecError, ProfileError, ManifestError, SchedulerError, ValueError)


def _guard(handler: Any) -> Any:
    """Turn the launcher's expected errors into one clear line and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except _errors() as e:
            if getattr(args, "debug", False):  # `harness --debug`: the traceback instead
                raise
            print(f"harness {args.command}: error: {e}", file=sys.stderr)
            return 2

    return run


class WaitDisplay:
    """``harness sweep --wait``'s progress. On a terminal: one line redrawn in place, a bar
    over the finished runs, the counts and the time waited. Elsewhere (a log file, CI):
    the counts line, printed only when it changes."""

    BAR_WIDTH = 20

    def __init__(self, stream: TextIO, tty: bool | None = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self.last_line: str | None = None
        self.drawn = False

    def update(self, rows: list[Any]) -> None:
        from harness.launcher.status import TERMINAL, summary_line

        line = summary_line(rows)
        if not self.tty:
            if line != self.last_line:
                print(line, file=self.stream, flush=True)
            self.last_line = line
            return
        done = sum(row.state in TERMINAL for row in rows)
        filled = self.BAR_WIDTH * done // max(1, len(rows))
        waited = int(time.monotonic() - self.started)
        bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
        # \r and erase-to-end-of-line: the same terminal line, however long the last one was.
        self.stream.write(
            f"\r\x1b[K[{bar}] {done}/{len(rows)} finished | {line} | {waited // 60}:{waited % 60:02d}"
        )
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _final_code(rows: list[Any]) -> int:
    return 0 if all(r.state == "completed" for r in rows) else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.launcher.status import format_table, summary_line
    from harness.launcher.sweep_ops import launch_sweep, wait_for_sweep

    sweep_dir = launch_sweep(
        args.spec,
        backend=args.backend,
        cluster=args.cluster,
        root=args.root,
        dry_run=args.dry_run,
        force=args.force,
    )
    if args.dry_run or not args.wait:
        if not args.dry_run:
            print(f"follow it with: harness status {sweep_dir} --watch 10")
        return 0
    try:
        display = WaitDisplay(sys.stdout)
        try:
            rows = wait_for_sweep(
                sweep_dir, poll_s=args.poll, timeout_s=args.timeout, progress=display.update
            )
        finally:
            display.close()
    except TimeoutError as e:
        print(f"harness sweep: {e}", file=sys.stderr)
        return 1
    print(format_table(rows))
    print(summary_line(rows))
    return _final_code(rows)


def cmd_status(args: argparse.Namespace) -> int:
    from harness.launcher.status import all_finished, format_table, status_json, summary_line, sweep_status

    while True:
        rows, source = sweep_status(args.sweep_dir, args.lost_after, stalled_after_s=args.stalled_after)
        if source.startswith("unavailable"):
            print(
                f"harness status: warning: scheduler {source}; states come from status.json only",
                file=sys.stderr,
            )
        if args.json:
            print(status_json(rows, source, args.sweep_dir), flush=True)
        else:
            if args.watch:
                print("\033[2J\033[H", end="")
                print(f"{args.sweep_dir}  ({time.strftime('%H:%M:%S')}, scheduler: {source})")
            print(format_table(rows))
            print(summary_line(rows), flush=True)
        if not args.watch or all_finished(rows):
            return 0
        time.sleep(args.watch)


def cmd_resubmit(args: argparse.Namespace) -> int:
    from harness.launcher.sweep_ops import resubmit

    chosen = resubmit(
        args.sweep_dir,
        only=args.only,
        names=args.runs,
        overrides=args.set,
        backend=args.backend,
        cluster=args.cluster,
    )
    if chosen:
        print(f"resubmitted {len(chosen)} run(s): {', '.join(chosen)}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from harness.launcher.sweep_ops import cancel

    cancel(args.sweep_dir, names=args.runs)
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep``, ``status``, ``resubmit`` and ``cancel`` to the harness command."""
    sweep = subparsers.add_parser(
        "sweep",
        help="expand a sweep spec and submit its runs (Slurm or this machine)",
        description="Expand a sweep spec (configs/sweeps/*.yaml) into runs and submit every run that is "
        "not completed or still queued/running. Writes ROOT/<sweep name>/manifest.json.",
    )
    sweep.add_argument("spec", help="sweep spec YAML")
    sweep.add_argument(
        "--backend",
        choices=("local", "slurm"),
        default="slurm",
        help="slurm: job arrays through submitit; local: this machine, detached (default: slurm)",
    )
    sweep.add_argument(
        "--cluster",
        default=None,
        help="cluster profile name in slurm/clusters/ or a path to one (default: local)",
    )
    sweep.add_argument(
        "--root", default="sweeps", help="parent directory of sweep directories (default: sweeps)"
    )
    sweep.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and, for slurm, each array's sbatch script; submit nothing",
    )
    sweep.add_argument(
        "--force", action="store_true", help="accept a spec that changed since the sweep directory was made"
    )
    sweep.add_argument(
        "--wait", action="store_true", help="block until every run has finished; exit 1 unless all completed"
    )
    sweep.add_argument(
        "--poll", type=float, default=5.0, help="seconds between checks with --wait (default: 5)"
    )
    sweep.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="with --wait, give up after this many seconds (default: never)",
    )
    sweep.set_defaults(func=_guard(cmd_sweep))

    status = subparsers.add_parser(
        "status",
        help="state of every run of a sweep",
        description="One row per run from its status.json and sacct (squeue when accounting is unavailable).",
    )
    status.add_argument("sweep_dir", help="sweep directory (holds manifest.json)")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument(
        "--watch",
        type=float,
        default=0,
        metavar="SECONDS",
        help="refresh every SECONDS until every run has finished",
    )
    status.add_argument(
        "--lost-after",
        type=float,
        default=DEFAULT_LOST_AFTER_S,
        metavar="SECONDS",
        help="a running run whose heartbeat is older than this and whose job is gone is "
        f"lost (default: {DEFAULT_LOST_AFTER_S:.0f})",
    )
    status.add_argument(
        "--stalled-after",
        type=float,
        default=DEFAULT_STALLED_AFTER_S,
        metavar="SECONDS",
        help="a running run whose job is alive but whose step has not advanced for this long "
        f"is stalled (default: {DEFAULT_STALLED_AFTER_S:.0f})",
    )
    status.set_defaults(func=_guard(cmd_status))

    resub = subparsers.add_parser(
        "resubmit",
        help="resubmit failed or unfinished runs of a sweep",
        description="Resubmit runs; they resume from checkpoints/last.pt.",
    )
    resub.add_argument("sweep_dir", help="sweep directory (holds manifest.json)")
    resub.add_argument("runs", nargs="*", help="only these runs (default: all that match --only)")
    resub.add_argument(
        "--only",
        choices=("failed", "unfinished"),
        default="unfinished",
        help="failed: failed or lost runs; unfinished: also cancelled, preempted and never "
        "submitted runs (default: unfinished)",
    )
    resub.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override added to the resubmitted runs (repeatable), e.g. FAULT.CRASH_AT_STEP=-1",
    )
    resub.add_argument(
        "--backend", choices=("local", "slurm"), default=None, help="backend to use (default: the sweep's)"
    )
    resub.add_argument("--cluster", default=None, help="cluster profile (default: the one the sweep used)")
    resub.set_defaults(func=_guard(cmd_resubmit))

    cancel = subparsers.add_parser(
        "cancel",
        help="cancel runs of a sweep (all unfinished runs by default)",
        description="Cancel the named runs of a sweep, or every run that is not completed. Slurm jobs get "
        "scancel; local runs get SIGTERM (they checkpoint at the current step) and SIGKILL after "
        "20 s. Each run's status.json then says cancelled; `harness resubmit SWEEP_DIR` (--only "
        "unfinished) continues them from their checkpoints.",
    )
    cancel.add_argument("sweep_dir", help="sweep directory (holds manifest.json)")
    cancel.add_argument("runs", nargs="*", help="runs to cancel (default: every run not completed)")
    cancel.set_defaults(func=_guard(cmd_cancel))
