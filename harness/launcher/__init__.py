"""The launcher: sweep specs -> runs -> jobs on Slurm (submitit) or this machine.

Modules: ``spec`` (load, validate, expand), ``profiles`` (cluster profiles and
resource shapes), ``manifest`` (the sweep directory's manifest.json),
``slurm_backend`` / ``local_backend`` (submission), ``job`` (the checkpointable
submitit callable), ``status`` (run states from status.json + sacct/squeue),
``control`` (resubmit, cancel) and ``cli`` (``harness sweep|status|resubmit|cancel``).
"""
