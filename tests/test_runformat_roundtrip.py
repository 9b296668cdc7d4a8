"""The run format round trip: a real (tiny) `harness train` run directory holds every file
and field ``harness.runformat`` documents, typed as documented, and the analysis reads it
back into the same identity. docs/run-format.md names every documented field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from analysis.load import load_run_dirs
from analysis.throughput import run_throughput
from harness import runformat as rf
from tests.spine_helpers import FER_SYNTH, fast_opts

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(fer_csv_root: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.config import load_config
    from harness.spawn import launch  # what `harness train` runs, in this process

    out = tmp_path_factory.mktemp("roundtrip")
    cfg = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            out,
            RUN_NAME="rt",
            TRAIN__EPOCHS=1,
            TRAIN__MAX_STEPS_PER_EPOCH=3,
            TRAIN__BATCH_SIZE_PER_GPU=8,
            LOG__EVERY_N_STEPS=1,
            LOG__WANDB__MODE="disabled",
        ),
    )
    assert launch(cfg) == "completed"
    return out / "rt"


def _required(fields: dict) -> list[str]:
    return [name for name, spec in fields.items() if not spec.optional]


def test_every_documented_file_and_field_is_written_with_its_type(run_dir: Path) -> None:
    for name in (*rf.RUN_FILES, rf.CHECKPOINT, rf.TRAIN_LOG):
        assert (run_dir / name).is_file(), name
    identity = json.loads((run_dir / rf.RUN_JSON).read_text())
    status = json.loads((run_dir / rf.STATUS_JSON).read_text())
    assert [k for k in _required(rf.RUN_FIELDS) if k not in identity] == []
    assert [k for k in _required(rf.STATUS_FIELDS) if k not in status] == []
    assert rf.check_types(identity, rf.RUN_FIELDS, "run.json") == []
    assert rf.check_types(status, rf.STATUS_FIELDS, "status.json") == []
    assert status["state"] == rf.COMPLETED and status["state"] in rf.STATES

    records = [json.loads(line) for line in (run_dir / rf.METRICS_JSONL).read_text().splitlines()]
    assert {r["kind"] for r in records} == set(rf.RECORD_KINDS)
    for i, record in enumerate(records):
        where = f"metrics.jsonl record {i} ({record['kind']})"
        assert [k for k in rf.RECORD_FIELDS if k not in record] == [], where
        assert rf.check_types(record, rf.RECORD_FIELDS, where) == []
        documented = {k: m for k, m in rf.METRICS.items() if record["kind"] in m.kinds}
        assert [k for k in _required(documented) if k not in record] == [], where
        assert rf.check_types(record, documented, where) == []
        if record["kind"] == rf.VAL:
            primary = identity["primary_metric"]
            assert primary in record and primary.startswith(rf.VAL_PREFIX)
    # Every namespaced key a train or epoch record carries is documented (val/* is the evaluator's).
    keys = {(r["kind"], k) for r in records if r["kind"] != rf.VAL for k in r if "/" in k}
    undocumented = {
        (kind, k)
        for kind, k in keys
        if kind not in getattr(rf.METRICS.get(k), "kinds", ()) and not k.startswith("memory/peak_")
    }
    assert undocumented == set()
    assert all(rf.metric_unit(k) for _, k in keys if k.startswith(("time/", "throughput/", "memory/")))


def test_analysis_reads_back_the_identity_the_run_wrote(run_dir: Path) -> None:
    identity = json.loads((run_dir / rf.RUN_JSON).read_text())
    runset = load_run_dirs([run_dir])
    row = runset.runs.iloc[0]
    assert bool(row["included"]), row["exclude_reason"]
    for name in rf.RUN_FIELDS:
        if name in identity:
            expected = tuple(identity[name]) if isinstance(identity[name], list) else identity[name]
            assert row[name] == expected, name
    # The field map and the device rule agree with what training wrote.
    flat = rf.flatten(yaml.safe_load((run_dir / rf.CONFIG_YAML).read_text()))
    from_config = rf.run_fields_from_config(flat)
    assert from_config == {k: identity[k] for k in from_config}
    assert from_config["gpus"] == 1 and identity["global_batch"] == identity["batch_size_per_gpu"]
    assert all(row[key] == flat[key] for key in rf.CONFIG_TO_RUN)  # config columns, dotted
    lines = (run_dir / rf.METRICS_JSONL).read_text().splitlines()
    assert len(runset.records) == len(lines)
    throughput = run_throughput(runset)
    assert throughput["throughput_median"].iloc[0] > 0


def test_the_docs_name_every_documented_field() -> None:
    doc = (REPO / "docs" / "run-format.md").read_text()
    names = [*rf.RUN_FIELDS, *rf.STATUS_FIELDS, *rf.RECORD_FIELDS, *rf.METRICS]
    assert [n for n in names if f"`{n}`" not in doc] == []
    assert [n for n in (*rf.RUN_FILES, rf.CHECKPOINT, rf.TRAIN_LOG) if n not in doc] == []
    assert "harness/runformat.py" in doc
