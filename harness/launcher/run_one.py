"""``python -m harness.launcher.run_one SWEEP_DIR RUN``: train one run of a sweep
in this process tree (ddp on one machine spawns its local processes) through the same
path as ``harness train`` (``harness.cli.train_config``). The local backend starts one
of these per run."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from harness.cli import train_config
    from harness.config import load_config
    from harness.launcher.manifest import read_manifest

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m harness.launcher.run_one SWEEP_DIR RUN_NAME", file=sys.stderr)
        return 2
    sweep_dir, name = args
    runs = read_manifest(sweep_dir)["runs"]
    if name not in runs:
        print(f"run {name!r} is not in {sweep_dir}/manifest.json", file=sys.stderr)
        return 2
    cfg = load_config(runs[name]["base"], runs[name]["opts"])
    if cfg.JOB.KIND == "commbench":  # a measurement run (docs/commbench.md), not training
        from harness.commbench import run_local_job

        return run_local_job(cfg)
    if cfg.JOB.KIND in ("eval", "bench-model"):  # no training (docs/models.md)
        from harness.evaluate import run_local_job as run_model_job

        return run_model_job(cfg)
    from harness.local_ranks import die_with_parent

    die_with_parent()  # the local scheduler killed: this run checkpoints and stops (no orphan)
    return train_config(cfg, resume="auto")


if __name__ == "__main__":
    sys.exit(main())
