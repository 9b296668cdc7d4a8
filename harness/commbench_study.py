"""The shaped-link study: does the communication model hold on real network traffic?

On the local 2-node Slurm cluster (slurm/local-cluster.sh, nodes in network
namespaces) the node link is shaped to each rate with ``tc tbf``; at each rate
``harness commbench`` runs across the two nodes (1 process each) and a 2-node x
1-process DDP run of EfficientNet-B0 (48 px, synthetic FER) trains a few steps.
A 1-node, 1-process run of the same config measures compute. The model then
predicts the DDP step as compute + exposed all-reduce time from commbench's
alpha-beta, and the study compares:

- commbench's fitted bus bandwidth with the configured rate (goal: within 15%),
- the predicted with the measured DDP step time (goal: within 20%).

``make commbench-study`` runs 100, 300 and 1000 Mbit/s and writes the table and
plot into docs/commbench.md and docs/commbench-study.png; the test suite runs
one rate (tests/test_commbench_slurm.py). The link is unshaped afterwards,
whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "slurm" / "local-cluster.sh"
BASE_CONFIG = REPO / "configs" / "fer" / "effnet_b0_synthetic.yaml"
DOC = REPO / "docs" / "commbench.md"
PLOT = REPO / "docs" / "commbench-study.png"
BEGIN, END = "<!-- commbench-study:begin -->", "<!-- commbench-study:end -->"
BANDWIDTH_TOLERANCE = 0.15
STEP_TOLERANCE = 0.20


@dataclass
class StudyOptions:
    rates: list[str] = field(default_factory=lambda: ["100mbit", "300mbit", "1000mbit"])
    work: Path = REPO / "runs" / "commbench-study"
    state_dir: Path | None = None
    steps: int = 14
    warmup_steps: int = 4
    batch: int = 32
    min_bytes: str = "64K"
    max_bytes: str = "16M"
    iters: int = 3
    ops: str = "all_reduce,all_gather,reduce_scatter,broadcast"
    timeout_s: float = 900.0


@dataclass
class RatePoint:
    rate: str
    configured_bytes_per_s: float
    measured_bytes_per_s: float | None
    alpha_s: float | None
    bandwidth_error: float | None
    compute_s: float
    grad_bytes: float
    comm_s: float
    exposed_fraction: float
    overlap_measured: bool
    predicted_step_s: float
    measured_step_s: float
    step_error: float
    busbw_by_op: dict[str, float | None] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            self.bandwidth_error is not None
            and self.bandwidth_error <= BANDWIDTH_TOLERANCE
            and self.step_error <= STEP_TOLERANCE
        )


def rate_bytes_per_s(rate: str) -> float:
    """``300mbit`` -> 37.5e6 bytes/s (tc units: bit = bits/s, bps = bytes/s, k/m/g decimal)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)(bit|bps)", rate.strip().lower())
    if not match:
        raise ValueError(f"link rate {rate!r}: expected e.g. 100mbit, 1gbit")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]
    return value / 8 if match.group(3) == "bit" else value


def _cluster_script(command: str, *args: str, state_dir: Path | None) -> str:
    extra = ["--state-dir", str(state_dir)] if state_dir else []
    result = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), command, *args, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"local-cluster.sh {command} {' '.join(args)} exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-1500:]}"
        )
    return result.stdout


@contextlib.contextmanager
def shaped_link(rate: str, state_dir: Path | None = None) -> Iterator[None]:
    """The link between the two nodes at ``rate`` inside the block, unshaped after it."""
    _cluster_script("shape", rate, state_dir=state_dir)
    try:
        yield
    finally:
        _cluster_script("unshape", state_dir=state_dir)


def cluster_env(state_dir: Path | None) -> dict[str, str]:
    """SLURM_CONF of the running cluster; an error unless it has two nodes."""
    text = _cluster_script("env", state_dir=state_dir)
    env = dict(re.findall(r"export (\w+)=(\S+)", text))
    facts_path = Path(env["SLURM_LOCAL_STATE"]) / "cluster.env"
    if not facts_path.is_file() or "NODES=2" not in facts_path.read_text():
        raise RuntimeError(
            "the study needs the 2-node local cluster: bash slurm/local-cluster.sh up --nodes 2"
        )
    return env


def _write_profile(work: Path) -> Path:
    data = yaml.safe_load((REPO / "slurm" / "clusters" / "local.yaml").read_text())
    # gloo binds to the address of the host name; naming the node's veth makes that explicit.
    data.update(name="commbench-study", setup=[*data.get("setup", []), "export GLOO_SOCKET_IFNAME=eth0"])
    path = work / "cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _ensure_data(work: Path, opts: StudyOptions) -> Path:
    # Enough training images (80% of the set) for the study's steps on two processes.
    images = int(opts.steps * opts.batch * 2 / 0.75) + 1
    root = work / f"data-{images}"
    if not (root / "fer2013.csv").is_file():
        from efficientnet.synth import write_synthetic_fer

        write_synthetic_fer(str(root), n=images, fmt="csv", seed=0)
    return root


def _run_sweep(
    work: Path,
    profile: Path,
    name: str,
    grid: dict[str, list[Any]],
    overrides: dict[str, Any],
    timeout_s: float,
    seeds: Sequence[int] = (0,),
) -> Path:
    from harness.launcher.sweep_ops import launch_sweep, wait_for_sweep

    spec = {
        "name": name,
        "base": str(BASE_CONFIG),
        "grid": grid,
        "seeds": list(seeds),
        "overrides": {"LOG.WANDB.MODE": "disabled", "EVAL.EVERY_EPOCHS": 0, **overrides},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    # Fresh runs every time: a kept sweep would skip its completed runs.
    shutil.rmtree(work / "sweeps" / name, ignore_errors=True)
    sweep_dir = launch_sweep(
        str(path),
        backend="slurm",
        cluster=str(profile),
        root=str(work / "sweeps"),
        force=True,
        out=io.StringIO(),
    )
    # The local cluster answers sacct at once: a short poll keeps the four sweeps back to back.
    rows = wait_for_sweep(sweep_dir, poll_s=0.5, timeout_s=timeout_s)
    failed = [(r.name, r.state) for r in rows if r.state != "completed"]
    if failed:
        raise RuntimeError(
            f"sweep {name} did not complete: {failed}; logs under {sweep_dir}/runs/*/slurm-logs"
        )
    return sweep_dir


def _train_overrides(opts: StudyOptions, data_root: Path) -> dict[str, Any]:
    return {
        "DATASET.ROOT": str(data_root),
        "TRAIN.EPOCHS": 1,
        "TRAIN.MAX_STEPS_PER_EPOCH": opts.steps,
        "TRAIN.BATCH_SIZE_PER_GPU": opts.batch,
        "LOG.EVERY_N_STEPS": 2,
        "LOG.WARMUP_STEPS": opts.warmup_steps,
        "LOG.PROGRESS": False,
        "CHECKPOINT.EVERY_EPOCHS": 1,
        "EVAL.VIS_SAMPLES": 0,
    }


def steady_medians(run_dir: Path) -> dict[str, float]:
    """Median over steady train windows of the step time and, where logged, of the
    communication times (helper-agreed keys ``time/comm_s``, ``time/comm_exposed_s``)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    steady = [r for r in records if r.get("kind") == "train" and r.get("steady")]
    if not steady:
        raise RuntimeError(f"{run_dir}/metrics.jsonl has no steady train window; raise --steps")
    out = {}
    for key in ("time/step_s", "time/comm_s", "time/comm_exposed_s"):
        values = [float(r[key]) for r in steady if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    return out


def _runs(sweep_dir: Path, expected: int = 1) -> list[Path]:
    runs = sorted(p for p in (sweep_dir / "runs").iterdir() if p.is_dir())
    if len(runs) != expected:
        raise RuntimeError(f"{sweep_dir}/runs: expected {expected} run(s), found {len(runs)}")
    return runs


def _only_run(sweep_dir: Path) -> Path:
    return _runs(sweep_dir)[0]


def measure_compute(opts: StudyOptions, profile: Path, data_root: Path, tag: str) -> tuple[float, float]:
    """(step time, gradient bytes) of 1-node, 1-process runs: the compute of one DDP rank.

    Both local "nodes" share this host's cores, so two such runs go at once (one
    Slurm array, two seeds): each sees the core sharing a rank of the 2-node run
    sees, which a lone run would not. The step time is the mean of their medians."""
    _run_sweep(
        opts.work,
        profile,
        f"compute-{tag}",
        {"gpus": [1], "nodes": [1]},
        _train_overrides(opts, data_root),
        opts.timeout_s,
        seeds=(0, 1),
    )
    return compute_of(opts.work / "sweeps" / f"compute-{tag}")


def compute_of(sweep: Path) -> tuple[float, float]:
    """(step time, gradient bytes) of a finished compute sweep (two concurrent runs)."""
    runs = _runs(sweep, expected=2)
    params = json.loads((runs[0] / "run.json").read_text())["num_params"]
    return statistics.mean(steady_medians(r)["time/step_s"] for r in runs), 4.0 * params


def measure_rate(opts: StudyOptions, profile: Path, data_root: Path, rate: str) -> RatePoint:
    tag = rate.replace(".", "p")
    # Measured next to the DDP run: the host's load from other work drifts over minutes.
    measure_compute(opts, profile, data_root, tag)
    args = [
        "--min-bytes",
        opts.min_bytes,
        "--max-bytes",
        opts.max_bytes,
        "--iters",
        str(opts.iters),
        "--warmup",
        "1",
        "--ops",
        opts.ops,
        "--label",
        f"tbf {rate}",
    ]
    with shaped_link(rate, opts.state_dir):
        _run_sweep(
            opts.work,
            profile,
            f"commbench-{tag}",
            {"gpus": [2], "nodes": [2]},
            {"JOB.KIND": "commbench", "JOB.ARGS": args},
            opts.timeout_s,
        )
        _run_sweep(
            opts.work,
            profile,
            f"ddp-{tag}",
            {"gpus": [2], "nodes": [2]},
            _train_overrides(opts, data_root),
            opts.timeout_s,
        )
    # Compute again after the DDP run: the mean of both brackets the DDP run in time.
    measure_compute(opts, profile, data_root, f"{tag}-after")
    return evaluate_rate(opts.work, rate)


def evaluate_rate(work: Path, rate: str) -> RatePoint:
    """The comparison at ``rate`` from the finished sweeps under ``work/sweeps``."""
    from analysis.commbench_data import read_commbench
    from analysis.commmodel import predict_ddp_step

    tag = rate.replace(".", "p")
    sweeps = work / "sweeps"
    brackets = [
        compute_of(p) for p in (sweeps / f"compute-{tag}", sweeps / f"compute-{tag}-after") if p.is_dir()
    ]
    compute_s, grad_bytes = statistics.mean(c for c, _ in brackets), brackets[0][1]
    bench, ddp = sweeps / f"commbench-{tag}", sweeps / f"ddp-{tag}"
    result = read_commbench(_only_run(bench) / "commbench.json")
    if result["nodes"] != 2:
        raise RuntimeError(f"commbench at {rate} ran on {result['hosts']}, not on two nodes")
    fit = result["fits"]["all_reduce"]
    configured = rate_bytes_per_s(rate)
    beta = fit.get("beta_bytes_per_s")
    medians = steady_medians(_only_run(ddp))
    exposed = None
    if medians.get("time/comm_s"):
        exposed = medians.get("time/comm_exposed_s", float("nan")) / medians["time/comm_s"]
    prediction = predict_ddp_step(compute_s, grad_bytes, fit, world_size=2, exposed_fraction=exposed)
    measured = medians["time/step_s"]
    return RatePoint(
        rate=rate,
        configured_bytes_per_s=configured,
        measured_bytes_per_s=beta,
        alpha_s=fit.get("alpha_s"),
        bandwidth_error=abs(beta - configured) / configured if beta else None,
        compute_s=compute_s,
        grad_bytes=grad_bytes,
        comm_s=prediction["comm_s"],
        exposed_fraction=prediction["exposed_fraction"],
        overlap_measured=prediction["overlap_measured"],
        predicted_step_s=prediction["predicted_step_s"],
        measured_step_s=measured,
        step_error=abs(prediction["predicted_step_s"] - measured) / measured,
        busbw_by_op={op: f.get("beta_bytes_per_s") for op, f in result["fits"].items()},
    )


def run_study(opts: StudyOptions) -> list[RatePoint]:
    cluster = cluster_env(opts.state_dir)
    os.environ.update(cluster)
    opts.work.mkdir(parents=True, exist_ok=True)
    profile = _write_profile(opts.work)
    data_root = _ensure_data(opts.work, opts)
    _cluster_script("unshape", state_dir=opts.state_dir)  # compute is measured without a shaped link
    points = [measure_rate(opts, profile, data_root, rate) for rate in opts.rates]
    write_study_json(opts, points)
    return points


def write_study_json(
    opts: StudyOptions, points: Sequence[RatePoint], finished_at: float | None = None
) -> None:
    (opts.work / "study.json").write_text(
        json.dumps(
            {
                "options": {**asdict(opts), "work": str(opts.work), "state_dir": str(opts.state_dir or "")},
                "finished_at": finished_at or time.time(),
                "points": [asdict(p) for p in points],
            },
            indent=2,
        )
    )


def load_study(path: Path) -> tuple[list[RatePoint], StudyOptions, float]:
    """The points, options and finishing time a study wrote to its study.json."""
    data = json.loads(Path(path).read_text())
    opts = StudyOptions(**{k: v for k, v in data["options"].items() if k not in ("work", "state_dir")})
    return [RatePoint(**p) for p in data["points"]], opts, data.get("finished_at", Path(path).stat().st_mtime)


def _mbit(bytes_per_s: float | None) -> str:
    return "not identified" if not bytes_per_s else f"{bytes_per_s * 8 / 1e6:.0f}"


def study_table(points: Sequence[RatePoint]) -> str:
    header = (
        "| link (tbf) | all-reduce busbw Mbit/s | error | α ms | compute s | comm s (model) "
        "| exposed | predicted step s | measured step s | error | pass |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for p in points:
        exposed = f"{p.exposed_fraction:.2f}" + ("" if p.overlap_measured else " (assumed)")
        bw_err = "-" if p.bandwidth_error is None else f"{p.bandwidth_error:.1%}"
        alpha = "-" if p.alpha_s is None else f"{p.alpha_s * 1e3:.2f}"
        lines.append(
            f"| {p.rate} | {_mbit(p.measured_bytes_per_s)} | {bw_err} | {alpha} | {p.compute_s:.3f} "
            f"| {p.comm_s:.3f} | {exposed} | {p.predicted_step_s:.3f} | {p.measured_step_s:.3f} "
            f"| {p.step_error:.1%} | {'yes' if p.passed else 'NO'} |"
        )
    return "\n".join(lines)


def other_ops_table(points: Sequence[RatePoint]) -> str:
    ops = sorted({op for p in points for op in p.busbw_by_op})
    lines = [
        "| link (tbf) | " + " | ".join(f"{op} busbw Mbit/s" for op in ops) + " |",
        "|---|" + "---|" * len(ops),
    ]
    for p in points:
        lines.append(f"| {p.rate} | " + " | ".join(_mbit(p.busbw_by_op.get(op)) for op in ops) + " |")
    return "\n".join(lines)


def write_plot(points: Sequence[RatePoint], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    configured = [p.configured_bytes_per_s * 8 / 1e6 for p in points]
    measured = [(p.measured_bytes_per_s or float("nan")) * 8 / 1e6 for p in points]
    left.plot(configured, configured, "k--", label="configured")
    left.plot(configured, measured, "o-", label="commbench all-reduce busbw")
    left.fill_between(
        configured,
        [c * (1 - BANDWIDTH_TOLERANCE) for c in configured],
        [c * (1 + BANDWIDTH_TOLERANCE) for c in configured],
        alpha=0.15,
        label="±15%",
    )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="tbf rate (Mbit/s)",
        ylabel="bandwidth (Mbit/s)",
        title="Link bandwidth recovered by commbench",
    )
    left.legend()
    right.plot(configured, [p.measured_step_s for p in points], "o-", label="measured DDP step")
    right.plot(
        configured, [p.predicted_step_s for p in points], "s--", label="compute + exposed comm (model)"
    )
    right.plot(configured, [p.compute_s for p in points], color="grey", lw=0.8, label="1-node compute")
    right.set(
        xscale="log",
        xlabel="tbf rate (Mbit/s)",
        ylabel="step time (s)",
        title="EfficientNet-B0, 2 nodes x 1 process",
    )
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_doc(
    points: Sequence[RatePoint], opts: StudyOptions, measured_at: float, doc: Path = DOC, plot: Path = PLOT
) -> None:
    """Replace the study section of docs/commbench.md (between its markers)."""
    write_plot(points, plot)
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise RuntimeError(f"{doc} lacks the markers {BEGIN} / {END}")
    section = "\n".join(
        [
            BEGIN,
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(measured_at))} with "
            "`make commbench-study` "
            f"(rates {', '.join(opts.rates)}; EfficientNet-B0, 48 px, batch {opts.batch} per process, "
            f"{opts.steps} steps, median of steady windows; commbench {opts.min_bytes}..{opts.max_bytes}, "
            f"{opts.iters} iters). Gradient bytes: {points[0].grad_bytes / 1e6:.1f} MB.",
            "",
            study_table(points),
            "",
            "Every collective's fitted bus bandwidth at the same rates:",
            "",
            other_ops_table(points),
            "",
            f"![shaped-link study]({plot.name})",
            END,
        ]
    )
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    doc.write_text(before + section + after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.commbench_study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = StudyOptions()
    parser.add_argument("--rates", default=",".join(defaults.rates), help="comma list of tc rates")
    parser.add_argument("--work", type=Path, default=defaults.work, help="directory for sweeps and data")
    parser.add_argument("--state-dir", type=Path, default=None, help="the local cluster's state dir")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="training steps per run")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/commbench.md")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="STUDY_JSON",
        help="only rewrite docs/commbench.md from a study.json written earlier",
    )
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="run nothing: re-evaluate the finished sweeps under --work (e.g. after a "
        "change to the fit) into its study.json",
    )
    args = parser.parse_args(argv)
    if args.evaluate:
        _, opts, finished_at = load_study(args.work / "study.json")
        opts.work = args.work.resolve()
        points = [evaluate_rate(opts.work, rate) for rate in opts.rates]
        write_study_json(opts, points, finished_at)
        print(study_table(points))
        return 0 if all(p.passed for p in points) else 1
    if args.render:
        points, opts, measured_at = load_study(args.render)
        write_doc(points, opts, measured_at)
        print(study_table(points))
        return 0 if all(p.passed for p in points) else 1
    opts = StudyOptions(
        rates=[r.strip() for r in args.rates.split(",") if r.strip()],
        work=args.work.resolve(),
        state_dir=args.state_dir,
        steps=args.steps,
    )
    for rate in opts.rates:
        rate_bytes_per_s(rate)
    points = run_study(opts)
    print(study_table(points))
    if not args.no_doc:
        write_doc(points, opts, time.time())
        print(f"wrote {DOC} and {PLOT}")
    return 0 if all(p.passed for p in points) else 1


if __name__ == "__main__":
    sys.exit(main())
