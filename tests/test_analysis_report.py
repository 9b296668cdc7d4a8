"""The report, its CSVs and every plot, from a small synthetic sweep; the CLI; --push-wandb."""

from __future__ import annotations

import argparse
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from analysis.cli import add_cli, main
from analysis.report import build_report
from tests.analysis_fixtures import write_run, write_sweep

X = {("dp", 1): 100, ("dp", 2): 150, ("dp", 4): 240, ("ddp", 1): 100, ("ddp", 2): 190, ("ddp", 4): 360}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """DP and DDP at 1/2/4 GPUs with two seeds, DDP also at 64/GPU, loader workers
    varied for DDP on 2 GPUs, and one failed run."""
    runs = []
    for (strategy, gpus), x in X.items():
        for seed in (0, 1):
            runs.append(
                dict(
                    strategy=strategy,
                    gpus=gpus,
                    batch_size_per_gpu=32,
                    seed=seed,
                    throughput=x * (1 + 0.02 * seed),
                    config={"DATA.NUM_WORKERS": 4},
                )
            )
    for gpus in (1, 2):
        runs.append(
            dict(
                strategy="ddp",
                gpus=gpus,
                batch_size_per_gpu=64,
                throughput=X[("ddp", gpus)] * 1.2,
                config={"DATA.NUM_WORKERS": 4},
            )
        )
    for workers, share in ((0, 0.5), (2, 0.2)):
        runs.append(
            dict(
                name=f"fer-ddp-g2-b32-w{workers}",
                strategy="ddp",
                gpus=2,
                batch_size_per_gpu=32,
                throughput=190 * (1 - share),
                data_wait_share=share,
                config={"DATA.NUM_WORKERS": workers},
            )
        )
    runs.append(
        dict(
            strategy="ddp",
            gpus=4,
            batch_size_per_gpu=64,
            seed=7,
            state="failed",
            error="RuntimeError: CUDA out of memory\nTraceback",
            config={"DATA.NUM_WORKERS": 4},
        )
    )
    return write_sweep(tmp_path_factory.mktemp("sweeps"), "fer-demo", runs, scaling="weak")


@pytest.fixture(scope="module")
def report(sweep):
    # DATA.NUM_WORKERS varies, so the comparison by it (the loader-worker study) is made unasked.
    return build_report([sweep], sweep / "analysis", target=0.6)


def test_csvs_have_the_promised_columns(report):
    scaling = pd.read_csv(report.csvs["scaling"])
    assert list(scaling.columns[:15]) == [
        "workload",
        "strategy",
        "scaling",
        "nodes",
        "gpus",
        "batch_size_per_gpu",
        "global_batch",
        "n_runs",
        "throughput_median",
        "throughput_q1",
        "throughput_q3",
        "speedup",
        "efficiency",
        "ddp_over_dp",
        "flags",
    ]
    ddp4 = scaling[
        (scaling["strategy"] == "ddp")
        & (scaling["gpus"] == 4)
        & (scaling["batch_size_per_gpu"] == 32)
        & (scaling["DATA.NUM_WORKERS"] == 4)
    ]
    assert ddp4["efficiency"].iloc[0] == pytest.approx(0.9, rel=1e-3)
    assert ddp4["ddp_over_dp"].iloc[0] == pytest.approx(1.5, rel=1e-3)
    fit = pd.read_csv(report.csvs["model_fit"])
    for column in (
        "workload",
        "strategy",
        "batch_size_per_gpu",
        "param_count",
        "grad_bytes",
        "bandwidth_gbps",
        "latency_s",
        "t_compute_s",
        "loo_rel_error",
        "gpus",
        "predicted_step_s",
        "predicted_efficiency",
        "kind",
    ):
        assert column in fit.columns
    assert set(fit[fit["kind"] == "prediction"]["gpus"]) == {16, 64, 256}
    ttt = pd.read_csv(report.csvs["time_to_target"])
    assert (ttt["target"] == 0.6).all() and set(ttt["status"]) <= {"reached", "not reached"}
    curves = pd.read_csv(report.csvs["convergence"])
    assert {"train/loss", "val/accuracy"} == set(curves["metric"])
    runs = pd.read_csv(report.csvs["runs"])
    assert runs["included"].sum() == len(runs) - 1
    workers = pd.read_csv(report.csvs["by_DATA.NUM_WORKERS"])
    assert set(workers["DATA.NUM_WORKERS"]) == {0, 2, 4}


def test_every_plot_is_a_valid_image(report):
    files = report.plot_files()
    names = {f.stem.rsplit("-", 1)[0] if f.stem.startswith("by-") else f.stem for f in files}
    for expected in (
        "speedup-fer-weak",
        "efficiency-fer-weak",
        "throughput-fer",
        "convergence-fer",
        "time-to-target-fer",
        "data-wait-vs-workers-fer",
    ):
        assert expected in names, f"missing plot {expected}: {sorted(names)}"
    for file in files:
        assert file.stat().st_size > 0
        if file.suffix == ".png":
            with Image.open(file) as image:
                image.verify()
            with Image.open(file) as image:
                assert image.size[0] > 300 and image.size[1] > 200
        else:
            assert ET.parse(file).getroot().tag.endswith("svg")


def test_report_reads_on_its_own(report):
    text = report.report.read_text()
    for section in (
        "## Summary",
        "## Scaling table",
        "## Plots",
        "## Diagnosis",
        "## Communication model",
        "## Convergence",
        "## Time to target",
        "## Comparison by key",
        "## Runs not included",
        "## Method",
    ):
        assert section in text
    assert "No run spanned more than one host" in text and "Baselines used" in text
    assert "**prediction**" in text
    assert "RuntimeError: CUDA out of memory" in text and "Traceback" not in text.split("## Runs not")[1]
    assert "data-bound" in text  # the 0-worker run waits on data half of the time
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (report.out_dir / link).is_file(), f"report links a missing file: {link}"


def test_cli_parser_explains_every_flag_and_runs(tmp_path, capsys):
    sweep = write_sweep(
        tmp_path,
        "cli",
        [dict(gpus=1, throughput=100), dict(gpus=2, throughput=180), dict(gpus=4, throughput=330)],
    )
    parser = argparse.ArgumentParser(prog="harness")
    add_cli(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["analyze"]
    for action in sub._actions:
        if action.dest != "help":
            assert action.help, f"{action.option_strings or action.dest} has no help text"
    args = parser.parse_args(
        [
            "analyze",
            str(sweep),
            "--out",
            str(tmp_path / "o"),
            "--by",
            "DATA.NUM_WORKERS",
            "--target-fraction",
            "0.8",
            "--predict-gpus",
            "32",
            "--format",
            "png",
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "o" / "report.md").is_file()
    assert (tmp_path / "o" / "data-wait-vs-workers-fer.png").is_file()  # --by DATA.NUM_WORKERS
    assert not list((tmp_path / "o").glob("*.svg"))
    fit = pd.read_csv(tmp_path / "o" / "model_fit.csv")
    assert set(fit[fit["kind"] == "prediction"]["gpus"]) == {32}
    assert main([]) == 2
    assert main([str(sweep), "--out", str(tmp_path / "x"), "--by", "TRAIN.NOPE"]) == 2
    assert "--by TRAIN.NOPE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(sweep), "--predict-gpus", "many"])


def test_push_wandb_writes_an_offline_analysis_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    for gpus in (1, 2):
        write_run(tmp_path / "sweep" / "runs", gpus=gpus, throughput=100 * gpus, sweep="tiny")
    result = build_report([tmp_path / "sweep"], tmp_path / "out", formats=["png"], push_wandb=True)
    offline = list((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and result.wandb_run_dir == offline[0]
    assert list(offline[0].glob("run-*.wandb"))


def test_report_of_a_sweep_where_nothing_completed(tmp_path):
    write_run(tmp_path / "runs", gpus=1, state="failed", error="ValueError: bad config\nTraceback")
    write_run(tmp_path / "runs", gpus=2, state="running", stop_after_epoch=0)
    result = build_report([tmp_path / "runs"], tmp_path / "out", formats=["png"])
    assert result.plot_files() == []
    text = result.report.read_text()
    assert "0 completed and included" in text and "ValueError: bad config" in text
    assert pd.read_csv(result.csvs["runs"])["included"].sum() == 0


def test_figures_drawn_by_the_helper_processes_equal_those_drawn_here(sweep, tmp_path, monkeypatch):
    """The forked drawing processes change nothing in the tables or the files written."""
    from analysis.report import plot_workers

    with plot_workers(2) as pool:
        assert pool is not None  # Linux: fork is available
    in_pool = build_report([sweep], tmp_path / "pool", target=0.6)
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    here = build_report([sweep], tmp_path / "here", target=0.6)
    assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == sorted(
        p.name for p in (tmp_path / "here").iterdir()
    )
    assert in_pool.plots.keys() == here.plots.keys()
    for name in ("scaling", "convergence", "time_to_target", "runs"):
        pooled = (tmp_path / "pool" / f"{name}.csv").read_text().replace(str(tmp_path / "pool"), "")
        assert pooled == (tmp_path / "here" / f"{name}.csv").read_text().replace(str(tmp_path / "here"), "")
