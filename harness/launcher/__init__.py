"""The launcher: sweep specs -> runs -> jobs on Slurm (submitit) or this machine.

Modules:
- ``spec`` (load, validate, expand) and ``naming`` (run names);
- ``profiles`` (cluster profiles and resource shapes);
- ``manifest`` (the sweep directory's manifest.json);
- ``slurm_backend`` (submitit job arrays) and ``local_queue`` (the detached
  per-sweep queue on this machine; ``run_one`` is its per-run entry);
- ``job`` (the checkpointable submitit callable);
- ``job_state`` (what sacct, squeue or local pids say about jobs);
- ``status`` (run states from status.json plus job_state);
- ``sweep_ops`` (the sweep verbs: submit, resubmit, cancel, wait);
- ``cli`` (``harness sweep | status | resubmit | cancel``).

See docs/launcher.md.
"""
