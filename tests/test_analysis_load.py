"""Loading run directories (many, broken, unfinished) and W&B runs into one table."""

from __future__ import annotations

import json
import shutil

import pytest

from analysis.load import AnalysisError, find_run_dirs, load_run_dirs
from analysis.pipeline import Options, analyze
from analysis.sources import combine, load_sources
from analysis.throughput import run_throughput
from analysis.wandb_source import load_wandb
from tests.analysis_fixtures import write_run, write_sweep


def replicate(template, dest_root, count: int, start_seed: int = 0) -> None:
    """Copies of a run directory with their own name and seed (writing every copy
    with the fixture would dominate the test's time)."""
    meta = json.loads((template / "run.json").read_text())
    for i in range(count):
        name = f"{template.name}-r{i}"
        dest = dest_root / name
        shutil.copytree(template, dest)
        meta.update(run_name=name, seed=start_seed + i)
        (dest / "run.json").write_text(json.dumps(meta))


def test_loading_1000_run_directories(tmp_path):
    templates = tmp_path / "templates"
    sweep = tmp_path / "big"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "manifest.json").write_text(json.dumps({"spec": {"scaling": "weak"}}))
    for g, x in ((1, 100.0), (2, 180.0), (4, 340.0), (8, 600.0)):
        for strategy in ("dp", "ddp"):
            template = write_run(templates, strategy=strategy, gpus=g, throughput=x)
            replicate(template, sweep / "runs", 125)
    runset = load_run_dirs([sweep])
    assert len(runset.runs) == 1000 and runset.runs["included"].all()
    assert runset.records["run_id"].nunique() == 1000
    assert len(runset.records) == 1000 * len(runset.history(runset.runs["run_id"].iloc[0]))
    assert set(runset.runs["scaling"]) == {"weak"}
    assert runset.runs["run_name"].is_unique
    per_run = run_throughput(runset)
    expected = runset.runs.set_index("run_id")["gpus"].map({1: 100.0, 2: 180.0, 4: 340.0, 8: 600.0})
    assert (per_run.set_index("run_id")["throughput_median"] - expected).abs().max() < 1e-9
    table = analyze(runset).scaling
    assert len(table) == 8 and (table["n_runs"] == 125).all()
    assert table.set_index(["strategy", "gpus"]).loc[("ddp", 8), "efficiency"] == pytest.approx(0.75)


def test_broken_and_unfinished_runs_are_listed_not_mixed_in(tmp_path):
    write_run(tmp_path, "good", throughput=100)
    write_run(tmp_path, "running", throughput=100, state="running", stop_after_epoch=0)
    write_run(tmp_path, "preempted", throughput=100, state="preempted")
    pending = tmp_path / "pending"
    pending.mkdir()
    (pending / "status.json").write_text(json.dumps({"state": "pending"}))
    bad_json = write_run(tmp_path, "bad-json", throughput=100)
    (bad_json / "run.json").write_text("{not json")
    torn = write_run(tmp_path, "torn", throughput=100)
    with open(torn / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 99')  # a run killed mid-write: last line torn
    garbled = write_run(tmp_path, "garbled", throughput=100)
    lines = (garbled / "metrics.jsonl").read_text().splitlines()
    lines[2] = "garbage"
    (garbled / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    runs = load_run_dirs([tmp_path]).runs.set_index("run_name")
    assert set(runs.index[runs["included"]]) == {"good", "torn"}
    assert runs.loc["running", "exclude_reason"] == "state running"
    assert runs.loc["preempted", "exclude_reason"] == "state preempted"
    assert "run.json missing" in runs.loc["pending", "exclude_reason"]
    assert "run.json unreadable" in runs.loc["bad-json", "exclude_reason"]
    assert "metrics.jsonl line 3 is not JSON" in runs.loc["garbled", "exclude_reason"]


def test_discovery_of_sweep_run_and_parent_directories(tmp_path):
    sweep = write_sweep(tmp_path / "root", "s1", [dict(gpus=1), dict(gpus=2)], scaling="strong")
    write_sweep(tmp_path / "root", "s2", [dict(gpus=1)], scaling=None)
    dirs, manifests = find_run_dirs(tmp_path / "root")
    assert len(dirs) == 3 and len(manifests) == 2
    one, manifests = find_run_dirs(sweep / "runs" / "fer-ddp-g2-b32-s0")
    assert len(one) == 1 and manifests[str(sweep)]["spec"]["scaling"] == "strong"
    runs = load_run_dirs([tmp_path / "root"]).runs
    assert sorted(runs["scaling"].fillna("-")) == ["-", "strong", "strong"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(AnalysisError, match="no run directories"):
        find_run_dirs(tmp_path / "empty")
    with pytest.raises(AnalysisError, match="not a directory"):
        load_run_dirs([tmp_path / "missing"])
    with pytest.raises(AnalysisError, match="given twice"):
        load_run_dirs([sweep, sweep])


def test_bad_manifest_scaling_names_the_file(tmp_path):
    sweep = write_sweep(tmp_path, "s", [dict(gpus=1)])
    (sweep / "manifest.json").write_text(json.dumps({"spec": {"scaling": "diagonal"}}))
    with pytest.raises(AnalysisError, match=r"manifest.json: spec.scaling is 'diagonal'"):
        load_run_dirs([sweep])


def test_unknown_by_key_is_named(tmp_path):
    write_run(tmp_path, throughput=100)
    with pytest.raises(AnalysisError, match=r"--by TRAIN.OPTIMISER.*Did you mean: TRAIN.OPTIMIZER"):
        analyze(load_run_dirs([tmp_path]), Options(by=["TRAIN.OPTIMISER"]))


def test_no_source_is_an_error():
    with pytest.raises(AnalysisError, match="SWEEP_DIR or --wandb"):
        load_sources([])


# ------------------------------------------------------------------ W&B
class FakeRun:
    """The attributes of ``wandb.apis.public.Run`` the loader reads."""

    def __init__(self, run_dir, run_id: str, state: str = "finished"):
        import yaml

        self.id, self.name, self.state, self.group = run_id, run_dir.name, state, "sweep-a"
        meta = json.loads((run_dir / "run.json").read_text())
        self.config = {**yaml.safe_load((run_dir / "config.yaml").read_text()), "run": meta}
        self.summary = {"num_params": meta["num_params"], "_runtime": 12.0}
        self._rows = [
            {**json.loads(line), "_step": i}
            for i, line in enumerate((run_dir / "metrics.jsonl").read_text().splitlines())
        ]
        self.history_scans = 0

    def scan_history(self, keys=None, page_size=1000):
        self.history_scans += 1
        return iter([dict(r) for r in self._rows])


class FakeApi:
    """Stands in for ``wandb.Api`` only because tests cannot reach the W&B service."""

    def __init__(self, runs):
        self._runs = runs
        self.calls = []

    def runs(self, path, filters=None, **kwargs):
        self.calls.append((path, filters))
        return [r for r in self._runs if not filters or r.group == filters.get("group")]


def test_wandb_runs_map_to_the_same_table_and_are_cached(tmp_path):
    dirs = tmp_path / "dirs"
    fake = [
        FakeRun(write_run(dirs, gpus=1, throughput=100), "a1"),
        FakeRun(write_run(dirs, gpus=2, throughput=180), "a2"),
        FakeRun(write_run(dirs, gpus=4, throughput=300, state="running"), "a3", state="running"),
    ]
    fake[1].config.pop("run")  # older runs logged only the config: identity from config keys
    api = FakeApi(fake)
    cache = tmp_path / "cache"
    runset = load_wandb("team/proj", group="sweep-a", cache_dir=cache, api=api)
    assert api.calls == [("team/proj", {"group": "sweep-a"})]
    runs = runset.runs.set_index("run_name")
    assert list(runs["included"]) == [True, True, False]
    assert runs.loc["fer-ddp-g2-b32-s0", "gpus"] == 2
    assert runs.loc["fer-ddp-g2-b32-s0", "global_batch"] == 64
    assert runs.loc["fer-ddp-g2-b32-s0", "primary_metric"] == "val/accuracy"
    assert runs.loc["fer-ddp-g2-b32-s0", "num_params"] == 4_000_000
    assert runs.loc["fer-ddp-g1-b32-s0", "TRAIN.OPTIMIZER"] == "sgd"
    from_dirs = load_run_dirs([dirs])
    table_dirs = analyze(from_dirs).scaling
    table_wandb = analyze(runset).scaling
    assert list(table_wandb["efficiency"]) == pytest.approx(list(table_dirs["efficiency"]))
    assert sorted(p.name for p in (cache / "team_proj").iterdir()) == ["a1.json", "a2.json", "a3.json"]
    # Second analysis: finished runs come from the cache, the running one is fetched again.
    load_wandb("team/proj", group="sweep-a", cache_dir=cache, api=api)
    assert [r.history_scans for r in fake] == [1, 1, 2]
    load_wandb("team/proj", group="sweep-a", cache_dir=cache, api=api, refresh=True)
    assert [r.history_scans for r in fake] == [2, 2, 3]
    # Both sources in one table; a run given by both is kept once, from its directory.
    both = combine([from_dirs, runset])
    assert len(both.runs) == 6 and set(both.runs["source"]) == {"dir", "wandb"}
    for fake_run, run_dir in zip(fake, sorted(dirs.iterdir())):
        meta = json.loads((run_dir / "run.json").read_text())
        meta["wandb_id"] = fake_run.id
        (run_dir / "run.json").write_text(json.dumps(meta))
    both = combine([load_run_dirs([dirs]), runset])
    assert len(both.runs) == 3 and set(both.runs["source"]) == {"dir"}
    assert both.records["run_id"].nunique() == 3


def test_wandb_rows_without_kind_are_classified(tmp_path):
    run = FakeRun(write_run(tmp_path / "d", throughput=100), "b1")
    for row in run._rows:
        row.pop("kind")
    runset = load_wandb("team/proj", cache_dir=tmp_path / "cache", api=FakeApi([run]))
    assert set(runset.records["kind"]) == {"train", "epoch", "val"}
    assert analyze(runset).scaling["throughput_median"].iloc[0] == pytest.approx(100)


def test_wandb_path_is_checked(tmp_path):
    with pytest.raises(AnalysisError, match="ENTITY/PROJECT"):
        load_wandb("just-a-project", cache_dir=tmp_path, api=FakeApi([]))
    with pytest.raises(AnalysisError, match="no runs in group 'x'"):
        load_wandb("team/proj", group="x", cache_dir=tmp_path, api=FakeApi([]))


def test_analysis_never_imports_training_code():
    import subprocess
    import sys

    code = (
        "import sys, analysis.cli, analysis.report, analysis.wandb_source, analysis.publish; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'harness', 'efficientnet', "
        "'hrnet') and m not in ('harness', 'harness.runformat')); print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wandb_runs_logged_by_the_harness_run_logger(tmp_path):
    """History rows in the form harness.runlog sends to W&B (no kind, no steady,
    epoch records as epoch/*) and the flat config harness.train logs."""
    import yaml

    from harness.runformat import flatten
    from harness.runlog import RunLogger

    dirs = tmp_path / "dirs"
    fakes = []
    for gpus, x in ((1, 100.0), (2, 180.0)):
        run_dir = write_run(dirs, gpus=gpus, throughput=x, warmup_steps=5, log_every=5)
        meta = json.loads((run_dir / "run.json").read_text())
        view = RunLogger(run_dir, meta["primary_metric"], True)._wandb_view
        fake = FakeRun(run_dir, f"w{gpus}")
        fake._rows = [
            {**view(r["kind"], r), "_step": i, "_runtime": r["time"]}
            for i, r in enumerate(
                json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            )
        ]
        fake.config = {
            **flatten(yaml.safe_load((run_dir / "config.yaml").read_text())),
            "derived/world_size": meta["world_size"],
            "derived/global_batch": meta["global_batch"],
            "derived/lr": meta["lr"],
            "derived/num_params": meta["num_params"],
        }
        fakes.append(fake)
    runset = load_wandb("team/proj", cache_dir=tmp_path / "cache", api=FakeApi(fakes))
    from_dirs = load_run_dirs([dirs])
    assert list(runset.runs["num_params"]) == [4_000_000, 4_000_000]
    assert list(runset.runs["global_batch"]) == [32, 64]
    wandb_analysis = analyze(runset, Options(target=0.5))
    dir_analysis = analyze(from_dirs, Options(target=0.5))
    assert list(wandb_analysis.scaling["efficiency"]) == pytest.approx(
        list(dir_analysis.scaling["efficiency"])
    )
    assert (wandb_analysis.scaling["flags"] == "").all()  # steady records inferred from LOG.WARMUP_STEPS
    for column in ("samples_median", "epochs_median", "time_s_median"):
        assert list(wandb_analysis.time_to_target[column]) == pytest.approx(
            list(dir_analysis.time_to_target[column])
        )
    epochs = runset.records[runset.records["kind"] == "epoch"]
    assert epochs["time/epoch_s"].notna().all()


def test_flat_config_reader_equals_pyyaml_then_flatten(tmp_path):
    """The fast config.yaml reader gives exactly what PyYAML plus flatten give, for the
    shipped configs, frozen run configs and the forms it hands back to PyYAML."""
    from pathlib import Path

    import yaml

    from analysis.configfile import load_config_flat
    from harness.config import config_to_dict, get_harness_defaults
    from harness.runformat import flatten

    frozen = yaml.safe_dump(config_to_dict(get_harness_defaults()), sort_keys=False)
    configs = Path(__file__).resolve().parents[1] / "configs"
    texts = [f.read_text() for f in sorted(configs.rglob("*.yaml"))] + [
        frozen,
        "A:\n  B: [1, 2]\n  C: {}\n  D: {x: 1}\n  E:\n  - 3\n  - 4\nF: null\nG:\n",
        "A: |\n  two\n  lines\nB: 'quoted: text'\n",
        "- just\n- a list\n",
        "",
    ]
    for text in texts:
        want = yaml.safe_load(text)
        want = flatten(want, lists_as_tuples=True) if isinstance(want, dict) else want
        assert load_config_flat(text) == want, text[:200]


def test_metrics_file_with_a_bad_line_is_read_line_by_line(tmp_path):
    from analysis.load import read_metrics

    good = '{"kind": "train", "step": 1}'
    path = tmp_path / "metrics.jsonl"
    path.write_text(f"{good}\n\n{good[:-1]}, {good}\n{good}\n{good[:9]}")
    problems: list[str] = []
    records = read_metrics(path, problems)
    assert len(records) == 2  # the torn last line is skipped quietly
    assert problems == ["metrics.jsonl line 3 is not JSON"]
    path.write_text(f"{good}\n{good}\n")
    assert read_metrics(path) == [{"kind": "train", "step": 1}] * 2
