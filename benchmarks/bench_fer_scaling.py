"""Single process vs DDP with N local processes on synthetic FER, in one session.

Prints each run's steady-state global img/s (median of the logged windows after
LOG.WARMUP_STEPS) and the ratios against the 1-process baseline measured in the
same session: speedup S(N) = X(N)/X(1) and weak-scaling efficiency S(N)/N.

    python benchmarks/bench_fer_scaling.py --model efficientnet_b0 --procs 1 2 --steps 30
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from efficientnet.synth import write_synthetic_fer
from harness.config import load_config
from harness.spawn import launch


def steady_throughput(run_dir: Path) -> tuple[float, float]:
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train" and r["steady"]]
    return (statistics.median(r["throughput/img_per_s"] for r in train),
            statistics.median(r["time/data_wait_share"] for r in train))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_b0", help="MODEL.NAME")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    parser.add_argument("--batch", type=int, default=32, help="per-process batch (weak scaling)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the median")
    parser.add_argument("--workers", type=int, default=0, help="DATA.NUM_WORKERS")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        n = max(args.procs) * args.batch * (args.steps + 1) + 200
        root = write_synthetic_fer(f"{tmp}/fer", n=int(n / 0.8) + 1, fmt="csv", seed=0)
        results = {}
        for procs in args.procs:
            strategy = "ddp" if procs > 1 else "single"
            cfg = load_config("configs/fer/effnet_b0_synthetic.yaml", [
                "DATASET.ROOT", root, "OUTPUT_DIR", f"{tmp}/runs", "RUN_NAME", f"p{procs}",
                "MODEL.NAME", args.model, "DIST.STRATEGY", strategy, "DIST.GPUS", str(procs),
                "TRAIN.BATCH_SIZE_PER_GPU", str(args.batch), "TRAIN.EPOCHS", "1",
                "TRAIN.MAX_STEPS_PER_EPOCH", str(args.steps), "EVAL.EVERY_EPOCHS", "0",
                "LOG.EVERY_N_STEPS", "5", "LOG.WARMUP_STEPS", str(args.warmup), "LOG.PROGRESS", "False",
                "LOG.WANDB.MODE", "disabled", "DATA.NUM_WORKERS", str(args.workers)])
            launch(cfg)
            results[procs] = steady_throughput(Path(tmp) / "runs" / f"p{procs}")
    base = results[args.procs[0]][0]
    print(f"model {args.model}, {args.batch} img/process/step, {args.steps} steps, 48 px, CPU gloo")
    print(f"{'procs':>5} {'img/s':>8} {'speedup':>8} {'efficiency':>10} {'data wait':>9}")
    for procs, (x, wait) in results.items():
        speedup = x / base
        print(f"{procs:>5} {x:>8.1f} {speedup:>8.2f} {speedup / procs * args.procs[0]:>10.2f} {wait:>9.1%}")


if __name__ == "__main__":
    main()
