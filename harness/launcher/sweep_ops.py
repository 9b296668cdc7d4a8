"""Sweep verbs: submit a spec, resubmit runs, cancel runs, wait for the end."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from harness.launcher import local_queue, slurm_backend
from harness.launcher.job_state import SchedulerError, cancel_local, cancel_slurm, is_local, pid_alive
from harness.launcher.manifest import (
    ManifestError,
    locked,
    manifest_path,
    new_manifest,
    read_manifest,
    record_submission,
    run_dir,
    updating,
    write_manifest,
)
from harness.launcher.profiles import ClusterProfile, load_profile
from harness.launcher.spec import RunPlan, expand_sweep, load_spec
from harness.launcher.status import RunState, all_finished, format_table, summary_line, sweep_status
from harness.launcher.submit_checks import check_submission
from harness.rundir import atomic_write_json, read_status
from harness.runformat import STATUS_JSON

BACKENDS = ("local", "slurm")
# States in which a run is left alone by a re-run of `harness sweep`.
_LIVE = {"pending", "running", "requeued"}


def mark_pending(directory: Path) -> None:
    """status.json -> pending, keeping what earlier attempts recorded (requeues,
    best, started_at). Written before submission, so a job that starts at once
    is never overwritten by it."""
    directory.mkdir(parents=True, exist_ok=True)
    status = read_status(directory)
    status.update(state="pending", error=None, traceback=None, submitted_at=time.time())
    atomic_write_json(directory / STATUS_JSON, status)


def _profile(backend: str, cluster: str | None) -> ClusterProfile | None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "slurm":
        return load_profile(cluster or "local")
    return None


def plan_table(plans: list[dict[str, Any]], actions: dict[str, str]) -> str:
    header = ("RUN", "ACTION", "STRATEGY", "GPUS", "NODES", "B/GPU", "GLOBAL", "SHAPE")
    body = []
    for run in plans:
        c = run["config"]
        shape = run.get("shape")
        shape_text = (
            f"{shape['nodes']}x{shape['tasks_per_node']} task, {shape['gpus_per_node']} gpu/node"
            if shape
            else "local"
        )
        body.append(
            (
                run["name"],
                actions.get(run["name"], "submit"),
                c["DIST.STRATEGY"],
                str(run["overrides"]["devices"]),
                str(c["DIST.NODES"]),
                str(c["TRAIN.BATCH_SIZE_PER_GPU"]),
                str(run["overrides"]["global_batch"]),
                shape_text,
            )
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body])


def launch_sweep(
    spec_path: str,
    backend: str = "slurm",
    cluster: str | None = None,
    root: str = "sweeps",
    dry_run: bool = False,
    force: bool = False,
    out: TextIO = sys.stdout,
) -> Path:
    """Expand ``spec_path`` and submit every run that is not done or alive."""
    profile = _profile(backend, cluster)
    spec = load_spec(spec_path)
    sweep_dir = (Path(root) / spec.name).resolve()
    plans = expand_sweep(spec, sweep_dir, profile)
    cluster_info = profile.to_dict() if profile else None
    fresh = new_manifest(spec, plans, sweep_dir, backend, cluster_info)
    # What the submission needs, checked before anything is read or written: the dry run too.
    check_submission(sweep_dir, fresh, list(fresh["runs"]), profile)
    actions: dict[str, str] = {p.name: "submit" for p in plans}
    existing = read_manifest(sweep_dir) if manifest_path(sweep_dir).is_file() else None
    if existing is not None:
        if existing["spec_hash"] != fresh["spec_hash"] and not force:
            raise ManifestError(_spec_changed(existing, plans, sweep_dir))
        rows, _ = sweep_status(sweep_dir, manifest=existing)
        for row in rows:
            if row.name in actions and (row.state == "completed" or (row.state in _LIVE and row.job_id)):
                actions[row.name] = f"skip ({row.state})"
    to_submit = [p.name for p in plans if actions[p.name] == "submit"]
    if dry_run:
        _print_plan(out, sweep_dir, fresh, actions, to_submit, profile, spec.name)
        return sweep_dir
    with locked(sweep_dir):
        manifest = fresh
        if existing is not None:
            manifest = _merge(existing, fresh)
        write_manifest(sweep_dir, manifest)
    print(
        f"sweep {spec.name}: {len(plans)} runs, {len(to_submit)} to submit, "
        f"{len(plans) - len(to_submit)} skipped ({sweep_dir})",
        file=out,
    )
    if to_submit:
        submit_runs(sweep_dir, to_submit, backend, profile, out)
    return sweep_dir


def _spec_changed(existing: dict[str, Any], plans: list[RunPlan], sweep_dir: Path) -> str:
    old, new = existing["runs"], {p.name: p for p in plans}
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(
        n
        for n in set(old) & set(new)
        if old[n]["config"] != new[n].config
        or old[n].get("shape") != (shape.to_dict() if (shape := new[n].shape) else None)
    )
    details = "; ".join(
        f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for label, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    )
    return (
        f"sweep {existing['name']!r} in {sweep_dir} was made from a different spec or base config "
        f"({details or 'configs differ'}); pass --force to update it (completed runs are kept) "
        "or give the spec a new name"
    )


def _merge(existing: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """The new spec's runs, keeping each kept run's submission history."""
    merged = dict(fresh)
    merged["created_at"] = existing.get("created_at", fresh["created_at"])
    merged["arrays"] = existing.get("arrays", [])
    merged["sbatch_calls"] = existing.get("sbatch_calls", 0)
    for name, run in merged["runs"].items():
        old = existing["runs"].get(name)
        if old:
            for key in ("submissions", "backend", "job_id", "array_job_id", "array_index", "submitted_at"):
                if key in old:
                    run[key] = old[key]
    return merged


def _print_plan(
    out: TextIO,
    sweep_dir: Path,
    manifest: dict[str, Any],
    actions: dict[str, str],
    to_submit: list[str],
    profile: ClusterProfile | None,
    job_name: str,
) -> None:
    runs = list(manifest["runs"].values())
    print(f"sweep {manifest['name']} -> {sweep_dir} (dry run: nothing is submitted)", file=out)
    print(plan_table(runs, actions), file=out)
    if profile is None:
        print(f"\nlocal backend: {len(to_submit)} runs would run on this machine", file=out)
        return
    chunks = slurm_backend.group_arrays([manifest["runs"][n] for n in to_submit], profile)
    print(f"\n{len(chunks)} sbatch call(s) on cluster profile '{profile.name}'", file=out)
    for i, chunk in enumerate(chunks):
        names = ", ".join(r["name"] for r in chunk.runs)
        print(f"\n# ---- array {i}: {len(chunk.runs)} run(s), {chunk.shape.label()}", file=out)
        print(f"# runs: {names}", file=out)
        print(slurm_backend.render_sbatch(sweep_dir, chunk, profile, job_name), file=out)


def submit_runs(
    sweep_dir: Path, names: list[str], backend: str, profile: ClusterProfile | None, out: TextIO = sys.stdout
) -> None:
    """Mark ``names`` pending and hand them to the backend; records job ids."""
    manifest = read_manifest(sweep_dir)
    for name in names:
        mark_pending(run_dir(sweep_dir, name))
    if backend == "slurm":
        assert profile is not None
        chunks = slurm_backend.group_arrays([manifest["runs"][n] for n in names], profile)
        # Recorded array by array: if a later sbatch fails, the earlier jobs are known,
        # and the runs left without a job read `pending` for `resubmit --only unfinished`.
        submitted: set[str] = set()
        try:
            for record in slurm_backend.submit_chunks(sweep_dir, chunks, profile, manifest["name"]):
                with updating(sweep_dir) as current:
                    for name, job_id, index in record["runs"]:
                        record_submission(current, name, "slurm", job_id, record["array_job_id"], index)
                        _link_job_logs(sweep_dir, name, job_id)
                        submitted.add(name)
                    current["arrays"].append({**record, "runs": [r[0] for r in record["runs"]]})
                    current["sbatch_calls"] = current.get("sbatch_calls", 0) + 1
                    current["backend"], current["cluster"] = "slurm", profile.to_dict()
                print(f"submitted array {record['array_job_id']} ({len(record['runs'])} runs)", file=out)
        except SchedulerError as e:
            left = len(names) - len(submitted)
            raise SchedulerError(
                f"{e}. {left} run(s) were not submitted and stay pending without a job; "
                f"after fixing the cause: harness resubmit {sweep_dir}"
            ) from e
        return
    with updating(sweep_dir) as current:  # the scheduler reads its job id under this lock
        pid = local_queue.start_scheduler(sweep_dir, names)
        for name in names:
            record_submission(current, name, "local", local_queue.queue_job_id(pid))
        current["backend"] = "local"
    print(f"local scheduler pid {pid}: {len(names)} runs; logs in {sweep_dir}/runs/<run>/train.log", file=out)


def _link_job_logs(sweep_dir: Path, name: str, job_id: str) -> None:
    """``runs/<run>/slurm-logs`` -> submitit's folder of the run's current job, where
    every task's stdout and stderr go (``<job>_<task>_log.out/.err``)."""
    link = run_dir(sweep_dir, name) / "slurm-logs"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("..") / ".." / "slurm" / job_id)


def select_runs(rows: list[RunState], only: str, names: list[str]) -> list[str]:
    """Runs to resubmit: ``failed`` = failed or lost; ``unfinished`` = anything not
    completed and not alive (failed, lost, cancelled, preempted, never submitted)."""
    wanted = set(names)
    chosen = []
    for row in rows:
        if wanted and row.name not in wanted:
            continue
        if only == "failed":
            ok = row.state in ("failed", "lost")
        else:
            ok = row.state in ("failed", "lost", "cancelled", "preempted") or (
                row.state == "pending" and not row.job_id
            )
        if ok:
            chosen.append(row.name)
    return chosen


def _sweep_rows(sweep_dir: str | Path, names: list[str] | None) -> tuple[Path, dict[str, Any], list[Any]]:
    """The sweep's manifest and status rows; naming a run the sweep lacks is an error."""
    sweep_dir = Path(sweep_dir).resolve()
    manifest = read_manifest(sweep_dir)
    unknown = sorted(set(names or []) - set(manifest["runs"]))
    if unknown:
        raise ManifestError(f"no run(s) {unknown} in {sweep_dir}")
    rows, _ = sweep_status(sweep_dir, manifest=manifest)
    return sweep_dir, manifest, rows


def resubmit(
    sweep_dir: str | Path,
    only: str = "unfinished",
    names: list[str] | None = None,
    overrides: list[str] | None = None,
    backend: str | None = None,
    cluster: str | None = None,
    out: TextIO = sys.stdout,
) -> list[str]:
    """Resubmit the chosen runs; they resume from their checkpoints.

    ``overrides`` (``KEY=VALUE``) are appended to those runs' config overrides
    and recorded in the manifest (e.g. to turn off a fault injection)."""
    sweep_dir, manifest, rows = _sweep_rows(sweep_dir, names)
    chosen = select_runs(rows, only, names or [])
    if not chosen:
        print(f"nothing to resubmit ({summary_line(rows)})", file=out)
        return []
    backend = backend or manifest.get("backend") or "slurm"
    profile = None
    if backend == "slurm":
        profile = load_profile(cluster) if cluster else _stored_profile(manifest)
    check_submission(sweep_dir, manifest, chosen, profile)
    if overrides:
        _apply_overrides(sweep_dir, chosen, overrides)
    submit_runs(sweep_dir, chosen, backend, profile, out)
    return chosen


def _stored_profile(manifest: dict[str, Any]) -> ClusterProfile:
    from harness.launcher.profiles import profile_from_dict

    stored = dict(manifest.get("cluster") or {})
    if not stored:
        return load_profile("local")
    path = stored.pop("path", "") or "manifest"
    return profile_from_dict(stored, path)


def _apply_overrides(sweep_dir: Path, names: list[str], overrides: list[str]) -> None:
    from harness.config import flatten_config, load_config

    pairs = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        pairs += [key, value]  # spelled as on the command line: decoded like `harness train` opts
    with updating(sweep_dir) as manifest:
        for name in names:
            run = manifest["runs"][name]
            opts = run["opts"] + pairs
            run["config"] = flatten_config(load_config(run["base"], opts))  # fails before submitting
            run["opts"] = opts
            run.setdefault("resubmit_overrides", []).extend(overrides)


def cancel(
    sweep_dir: str | Path, names: list[str] | None = None, out: TextIO = sys.stdout, grace_s: float = 20.0
) -> list[str]:
    """Cancel the named runs (all runs when none are named) that are not completed."""
    sweep_dir, _, rows = _sweep_rows(sweep_dir, names)
    targets = [
        r for r in rows if (not names or r.name in names) and r.state not in ("completed", "cancelled")
    ]
    slurm_ids = [r.job_id for r in targets if r.job_id and not is_local(r.job_id)]
    cancel_slurm(slurm_ids)
    signalled = []
    for row in targets:
        # Pending local runs only need the status below: the scheduler skips cancelled runs.
        if row.job_id and cancel_local(row.job_id, signal.SIGTERM):
            signalled.append(int(row.job_id.split(":")[1]))
    deadline = time.time() + grace_s
    while signalled and time.time() < deadline:  # SIGTERM lets a local run checkpoint first
        signalled = [pid for pid in signalled if pid_alive(pid)]
        time.sleep(0.2)
    for pid in signalled:
        cancel_local(f"local:{pid}", signal.SIGKILL)
    for row in targets:
        directory = run_dir(sweep_dir, row.name)
        directory.mkdir(parents=True, exist_ok=True)
        status = read_status(directory)
        status.update(state="cancelled", cancelled_at=time.time())
        atomic_write_json(directory / STATUS_JSON, status)
    print(
        f"cancelled {len(targets)} run(s)" + (f"; scancel {' '.join(slurm_ids)}" if slurm_ids else ""),
        file=out,
    )
    return [r.name for r in targets]


def wait_for_sweep(
    sweep_dir: str | Path,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
    lost_after_s: float = 600.0,
    out: TextIO | None = None,
    progress: Callable[[list[RunState]], None] | None = None,
) -> list[RunState]:
    """Block until every run is in a final state (seen twice in a row, because a
    preempted run is final only if its job does not come back). ``progress`` gets the
    rows at every check (``harness sweep --wait``'s display); otherwise ``out`` gets
    the summary line whenever it changes."""
    last_line = None
    deadline = None if timeout_s is None else time.time() + timeout_s
    settled = 0
    while True:
        rows, _ = sweep_status(sweep_dir, lost_after_s)
        settled = settled + 1 if all_finished(rows) else 0
        if settled >= 2:
            return rows
        if deadline is not None and time.time() > deadline:
            raise TimeoutError(f"sweep {sweep_dir} not finished after {timeout_s}s:\n{format_table(rows)}")
        if progress is not None:
            progress(rows)
        elif out is not None and summary_line(rows) != last_line:
            last_line = summary_line(rows)
            print(last_line, file=out, flush=True)
        time.sleep(poll_s)
