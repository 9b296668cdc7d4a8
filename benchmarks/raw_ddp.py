"""The minimal torchrun DDP script P2 compares the harness with (gloo, CPU).

    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m benchmarks.raw_ddp DATA STEPS BATCH [MODEL]

Rank 0 prints the global img/s of the steps after the warm-up as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

from benchmarks.fer_runs import overrides, raw_loop_steps_per_s


def main() -> None:
    data, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    model = sys.argv[4] if len(sys.argv) > 4 else "efficientnet_b0"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    opts = overrides(data, "/tmp/raw-ddp-unused", "raw", world, steps, batch, 0, ["MODEL.NAME", model])
    steps_per_s = raw_loop_steps_per_s(opts, warmup=5)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"img_per_s": steps_per_s * batch * world}), flush=True)


if __name__ == "__main__":
    main()
