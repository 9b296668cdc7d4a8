"""Config loading: every shipped YAML, the named errors, no global mutation."""

from pathlib import Path

import pytest

from harness.config import _C, ConfigError, get_cfg, load_config, read_yaml_chain

REPO = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "sweeps" not in p.parts)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_loads_and_freezes(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.is_frozen()
    assert cfg.RUN_NAME
    with pytest.raises(AttributeError):
        cfg.SEED = 3


def test_base_chain_merges_child_over_parent() -> None:
    raw = read_yaml_chain(REPO / "configs/fer/effnet_b0_synthetic.yaml")
    assert raw["TRAIN"]["EPOCHS"] == 3  # child
    assert raw["TRAIN"]["SCHEDULER"] == "cosine"  # inherited
    assert "_BASE_" not in raw


def test_overrides_do_not_touch_defaults() -> None:
    before = _C.clone()
    a = load_config(REPO / "configs/fer/effnet_b0_synthetic.yaml", ["TRAIN.LR", "0.5", "SEED", "7"])
    b = load_config(REPO / "configs/fer/effnet_b0_synthetic.yaml")
    assert a.TRAIN.LR == 0.5 and b.TRAIN.LR == 0.002 and a.SEED == 7 and b.SEED == 0
    assert _C == before
    assert get_cfg("fer").MODEL.NAME == "efficientnet_b0"


def test_unknown_key_names_key_and_suggests(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("TASK: fer\nTRAIN:\n  BATCH_SIZE_PER_GPUS: 8\n")
    expected = r"TRAIN\.BATCH_SIZE_PER_GPUS.*bad\.yaml.*TRAIN\.BATCH_SIZE_PER_GPU"
    with pytest.raises(ConfigError, match=expected):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"'DIST\.STRATEGIE'.*command line.*DIST\.STRATEGY"):
        load_config(None, ["DIST.STRATEGIE", "ddp"])


@pytest.mark.parametrize(
    "opts, message",
    [
        (["TRAIN.LR", "fast"], r"TRAIN\.LR.*expects float"),
        (["TRAIN.EPOCHS", "2.5"], r"TRAIN\.EPOCHS.*expects int"),
        (["DIST.STRATEGY", "fsdp"], r"DIST\.STRATEGY.*single, dp, ddp"),
        (["TRAIN.OPTIMIZER", "lamb"], r"TRAIN\.OPTIMIZER.*sgd_nesterov"),
        (["DIST.STRATEGY", "dp", "DIST.GPUS", "2", "DIST.NODES", "2"], r"dp runs in one process on one node"),
        (["DIST.STRATEGY", "ddp", "DIST.GPUS", "0"], r"ddp needs DIST\.GPUS >= 1"),
        (["DIST.STRATEGY", "ddp", "DIST.GPUS", "3", "DIST.NODES", "2"], r"divide evenly"),
        (["TRAIN.BATCH_SIZE_PER_GPU", "30", "TRAIN.GRAD_ACCUM", "4"], r"divisible by TRAIN\.GRAD_ACCUM"),
        (["DIST.STRATEGY", "single", "DIST.GPUS", "2"], r"single uses one device"),
        (["TRAIN.CLASS_WEIGHTING", "focal"], r"TRAIN\.CLASS_WEIGHTING"),
        (["TASK", "segmentation"], r"TASK.*fer, pose"),
        (["TRAIN.LR"], r"KEY VALUE pairs"),
        (["CHECKPOINT.EVERY_EPOCHS", "-1"], r"CHECKPOINT\.EVERY_EPOCHS.*>= 0"),
        (["EVAL.EVERY_EPOCHS", "-2"], r"EVAL\.EVERY_EPOCHS.*>= 0"),
    ],
)
def test_bad_values_fail_at_load_with_the_key(opts: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "configs/fer/effnet_b0_synthetic.yaml", opts)


def test_base_cycle_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("_BASE_: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml.*named as _BASE_ by .*c\.yaml"):
        load_config(tmp_path / "c.yaml")


def test_derived_run_name_and_global_batch() -> None:
    from harness.config import global_batch_size

    cfg = load_config(
        REPO / "configs/fer/effnet_b0_synthetic.yaml",
        ["DIST.STRATEGY", "ddp", "DIST.GPUS", "4", "TRAIN.BATCH_SIZE_PER_GPU", "64"],
    )
    assert cfg.RUN_NAME == "fer-ddp-g4-b64-s0"
    assert global_batch_size(cfg) == 256
