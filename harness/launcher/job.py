"""The callable that submitit runs on every Slurm task of a run.

Preemption: Slurm (or ``scancel --signal=USR2``, or submitit's ``_interrupt``)
sends USR2 to every task. Submitit's own handler would checkpoint and requeue
at once, in the middle of a step; instead the signal only sets
``harness.preemption``'s flag, the trainer stops at the next step boundary
(agreed across ranks), saves ``checkpoints/last.pt`` at that step and returns
"preempted", and only then is submitit's handler called: on rank 0 it asks
``checkpoint()`` for the resubmission, runs ``scontrol requeue`` and exits. The
requeued job resumes from the checkpoint (``resume="auto"``) and continues the
same W&B run (its id lives in the run directory).
"""

from __future__ import annotations

import signal
from typing import Any

import submitit


class SweepRun(submitit.helpers.Checkpointable):
    """Train one run of a sweep inside the current Slurm task."""

    def __init__(self, sweep_dir: str, name: str, base: str, opts: list[str]) -> None:
        self.sweep_dir = sweep_dir
        self.name = name
        self.base = base
        self.opts = list(opts)

    def __call__(self) -> str:
        from harness import preemption
        from harness.config import load_config
        from harness.local_ranks import die_with_parent
        from harness.train import run_training

        cfg = load_config(self.base, self.opts)
        if cfg.JOB.KIND == "commbench":  # a measurement job: nothing to checkpoint or requeue
            from harness.commbench import run_job

            return run_job(cfg, list(cfg.JOB.ARGS))
        if cfg.JOB.KIND in ("eval", "bench-model"):  # no training: nothing to checkpoint or requeue
            from harness.evaluate import run_job as run_model_job

            return run_model_job(cfg)
        usr_sig = submitit.JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(usr_sig)

        def stop_at_step_boundary(signum: int, frame: Any) -> None:
            preemption.request_stop(f"signal {signal.Signals(signum).name}")

        signal.signal(usr_sig, stop_at_step_boundary)
        # If this task's parent (slurmstepd/srun) dies, stop as on a preemption: checkpoint at the
        # next step boundary and exit, rather than train on unseen (submitit ignores SIGTERM).
        die_with_parent(usr_sig)
        state = run_training(cfg, resume="auto")
        if state == "preempted" and callable(submitit_handler):
            # Rank 0: checkpoint() + scontrol requeue + exit; other ranks: returns.
            submitit_handler(usr_sig, None)
        return state

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Resubmit the same run; it resumes from checkpoints/last.pt."""
        return submitit.helpers.DelayedSubmission(SweepRun(self.sweep_dir, self.name, self.base, self.opts))

    def __repr__(self) -> str:
        return f"SweepRun({self.name!r})"
