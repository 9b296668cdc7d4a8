"""The launcher: sweep specs -> runs -> jobs on Slurm (submitit) or this machine.

Modules: ``spec`` (load, validate, expand) and ``naming`` (run names),
``profiles`` (cluster profiles and resource shapes), ``manifest`` (the sweep
directory's manifest.json), ``slurm_backend`` / ``local_backend`` (submission;
``run_one`` is the local per-run entry), ``job`` (the checkpointable submitit
callable), ``scheduler`` (sacct/squeue/pids), ``status`` (run states),
``control`` (sweep, resubmit, cancel, wait) and ``cli`` (``harness sweep |
status | resubmit | cancel``). See docs/launcher.md.
"""
