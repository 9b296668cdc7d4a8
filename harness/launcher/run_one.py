"""``python -m harness.launcher.run_one SWEEP_DIR RUN``: train one run of a sweep
in this process tree (ddp on one machine spawns its local processes), the way
``harness train`` would. The local backend starts one of these per run."""
from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_PREEMPTED = 3  # same code as `harness train` for a run that stopped early


def main(argv: Sequence[str] | None = None) -> int:
    from harness.config import load_config
    from harness.spawn import launch, needs_spawn
    from harness.launcher.manifest import read_manifest
    from harness.preemption import install_signal_handlers

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
    if not needs_spawn(cfg):
        install_signal_handlers()
    state = launch(cfg, resume="auto")
    print(f"run {state}: {cfg.OUTPUT_DIR}/{cfg.RUN_NAME}", flush=True)
    return 0 if state == "completed" else EXIT_PREEMPTED


if __name__ == "__main__":
    sys.exit(main())
