"""Pose config layer: our configs, official HRNet files unmodified, key mapping, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import harness.config as harness_config
from harness.config import ConfigError, config_to_dict, flatten_config, load_config
from hrnet.config import recognizes

ROOT = Path(__file__).resolve().parents[1]
POSE_CONFIGS = ROOT / "configs" / "pose"
OFFICIAL = ROOT / "tests" / "fixtures" / "hrnet_official"
TINY = POSE_CONFIGS / "tiny_synthetic.yaml"
OFFICIAL_W32 = OFFICIAL / "w32_256x192_adam_lr1e-3.yaml"
OFFICIAL_FILES = sorted(OFFICIAL.glob("*.yaml"))
OUR_FILES = sorted(POSE_CONFIGS.glob("*.yaml"))


def test_fixtures_are_the_four_official_coco_files() -> None:
    names = [p.name for p in OFFICIAL_FILES]
    for res in ("256x192", "384x288"):
        for width in ("w32", "w48"):
            assert f"{width}_{res}_adam_lr1e-3.yaml" in names
    for path in OFFICIAL_FILES:
        raw = yaml.safe_load(path.read_text())
        assert "TASK" not in raw and raw["GPUS"] == "(0,1,2,3)"


@pytest.mark.parametrize("path", OUR_FILES, ids=lambda p: p.name)
def test_every_pose_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.TASK == "pose"
    assert cfg.MODEL.NAME == "pose_hrnet"
    assert cfg.is_frozen()


@pytest.mark.parametrize("path", OFFICIAL_FILES, ids=lambda p: p.name)
def test_official_file_loads_unmodified_and_maps_onto_harness_keys(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(path)
    assert cfg.TASK == "pose"
    # GPUS (0,1,2,3): nn.DataParallel over 4 devices, as the official trainer.
    assert cfg.DIST.STRATEGY == "dp" and cfg.DIST.GPUS == 4
    assert cfg.DATA.NUM_WORKERS == raw["WORKERS"] == 24
    assert cfg.LOG.EVERY_N_STEPS == raw["PRINT_FREQ"] == 100
    assert cfg.TRAIN.EPOCHS == raw["TRAIN"]["END_EPOCH"] - raw["TRAIN"]["BEGIN_EPOCH"] == 210
    assert cfg.EVAL.BATCH_SIZE_PER_GPU == raw["TEST"]["BATCH_SIZE_PER_GPU"]
    assert harness_config.global_batch_size(cfg) == 4 * raw["TRAIN"]["BATCH_SIZE_PER_GPU"]
    assert cfg.TRAIN.OPTIMIZER == "adam" and cfg.TRAIN.LR == 0.001
    assert list(cfg.TRAIN.LR_STEP) == [170, 200]
    assert list(cfg.MODEL.IMAGE_SIZE) == raw["MODEL"]["IMAGE_SIZE"]
    assert cfg.MODEL.EXTRA.STAGE4.NUM_CHANNELS == raw["MODEL"]["EXTRA"]["STAGE4"]["NUM_CHANNELS"]
    assert cfg.OUTPUT_DIR == "output"


@pytest.mark.parametrize("name", ["w32_256x192", "w32_384x288", "w48_256x192", "w48_384x288"])
def test_our_configs_carry_the_official_values(name: str) -> None:
    ours = flatten_config(load_config(POSE_CONFIGS / f"{name}.yaml"))
    official = flatten_config(load_config(OFFICIAL / f"{name}_adam_lr1e-3.yaml"))
    assert ours.keys() == official.keys()
    differ = {k for k in ours if ours[k] != official[k]}
    # Deliberately left out: the output/TensorBoard dirs and the debug image dumps.
    assert differ == {
        "OUTPUT_DIR",
        "LOG_DIR",
        "DEBUG.DEBUG",
        "DEBUG.SAVE_BATCH_IMAGES_GT",
        "DEBUG.SAVE_BATCH_IMAGES_PRED",
        "DEBUG.SAVE_HEATMAPS_GT",
        "DEBUG.SAVE_HEATMAPS_PRED",
    }


def official_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = OFFICIAL_W32.read_text()
    assert old in text
    path = tmp_path / "variant.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    "gpus, strategy, count",
    [
        ("(0)", "single", 1),  # an int in yacs-style literal parsing, not a tuple
        ("(0,)", "single", 1),
        ("0", "single", 1),
        ("[2, 3]", "dp", 2),
        ("(0,1,2,3,4,5,6,7)", "dp", 8),
    ],
)
def test_gpus_forms(tmp_path: Path, gpus: str, strategy: str, count: int) -> None:
    cfg = load_config(official_variant(tmp_path, "GPUS: (0,1,2,3)", f"GPUS: {gpus}"))
    assert (cfg.DIST.STRATEGY, cfg.DIST.GPUS) == (strategy, count)
    assert len(cfg.GPUS) == count


@pytest.mark.parametrize("gpus", ["'abc'", "()", "(0,0)", "(-1)"])
def test_bad_gpus_value_names_the_key(tmp_path: Path, gpus: str) -> None:
    with pytest.raises(ConfigError, match="'GPUS'"):
        load_config(official_variant(tmp_path, "GPUS: (0,1,2,3)", f"GPUS: {gpus}"))


def test_explicit_harness_keys_win_over_official_ones() -> None:
    cfg = load_config(
        OFFICIAL_W32,
        [
            "DIST.STRATEGY",
            "ddp",
            "DATA.NUM_WORKERS",
            "2",
            "TRAIN.EPOCHS",
            "5",
            "LOG.EVERY_N_STEPS",
            "7",
            "EVAL.BATCH_SIZE_PER_GPU",
            "8",
        ],
    )
    assert (cfg.DIST.STRATEGY, cfg.DIST.GPUS) == ("ddp", 4)
    assert (cfg.DATA.NUM_WORKERS, cfg.TRAIN.EPOCHS, cfg.LOG.EVERY_N_STEPS) == (2, 5, 7)
    assert cfg.EVAL.BATCH_SIZE_PER_GPU == 8
    # The official keys mirror the effective values in the saved config.
    assert (cfg.WORKERS, cfg.TRAIN.END_EPOCH, cfg.PRINT_FREQ, cfg.TEST.BATCH_SIZE_PER_GPU) == (2, 5, 7, 8)

    two = load_config(OFFICIAL_W32, ["DIST.GPUS", "2"])
    assert (two.DIST.STRATEGY, two.DIST.GPUS, tuple(two.GPUS)) == ("dp", 2, (0, 1))


def test_official_keys_given_on_the_command_line_are_mapped() -> None:
    cfg = load_config(
        OFFICIAL_W32,
        [
            "WORKERS",
            "3",
            "PRINT_FREQ",
            "5",
            "TRAIN.BEGIN_EPOCH",
            "1",
            "TRAIN.END_EPOCH",
            "4",
            "TEST.BATCH_SIZE_PER_GPU",
            "6",
            "PIN_MEMORY",
            "False",
            "GPUS",
            "(0,1)",
        ],
    )
    assert (cfg.DATA.NUM_WORKERS, cfg.LOG.EVERY_N_STEPS, cfg.TRAIN.EPOCHS) == (3, 5, 3)
    assert cfg.EVAL.BATCH_SIZE_PER_GPU == 6 and cfg.DATA.PIN_MEMORY is False
    assert (cfg.DIST.STRATEGY, cfg.DIST.GPUS) == ("dp", 2)


def test_harness_keys_set_in_the_yaml_win_over_official_keys_anywhere() -> None:
    # tiny_synthetic.yaml sets DATA.NUM_WORKERS and TRAIN.EPOCHS itself.
    cfg = load_config(TINY, ["WORKERS", "3", "TRAIN.END_EPOCH", "9"])
    assert (cfg.DATA.NUM_WORKERS, cfg.TRAIN.EPOCHS) == (0, 3)
    assert (cfg.WORKERS, cfg.TRAIN.END_EPOCH) == (0, 3)


def test_epoch_range_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"TRAIN\.END_EPOCH.*TRAIN\.BEGIN_EPOCH"):
        load_config(OFFICIAL_W32, ["TRAIN.BEGIN_EPOCH", "210"])


def test_nesterov_maps_for_sgd_only() -> None:
    sgd = load_config(OFFICIAL_W32, ["TRAIN.OPTIMIZER", "sgd", "TRAIN.NESTEROV", "True"])
    assert sgd.TRAIN.OPTIMIZER == "sgd_nesterov"
    adam = load_config(OFFICIAL_W32, ["TRAIN.NESTEROV", "True"])
    assert adam.TRAIN.OPTIMIZER == "adam" and adam.TRAIN.NESTEROV is False


def test_data_dir_prefixes_paths_once() -> None:
    cfg = load_config(OFFICIAL_W32, ["DATA_DIR", "/datasets", "TEST.MODEL_FILE", "models/w32.pth"])
    assert cfg.DATASET.ROOT == "/datasets/data/coco/"
    assert cfg.MODEL.PRETRAINED == "/datasets/models/pytorch/imagenet/hrnet_w32-36af842e.pth"
    assert cfg.TEST.MODEL_FILE == "/datasets/models/w32.pth"
    assert cfg.DATA_DIR == ""


@pytest.mark.parametrize("path", [OFFICIAL_W32, TINY], ids=lambda p: p.name)
def test_saved_config_reloads_to_the_same_config(tmp_path: Path, path: Path) -> None:
    cfg = load_config(path, ["DATA_DIR", "/datasets", "WORKERS", "3"])
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    assert flatten_config(load_config(saved)) == flatten_config(cfg)


def test_pose_defaults_leave_the_harness_defaults_alone() -> None:
    load_config(OFFICIAL_W32)
    assert "GPUS" not in harness_config._C and "MODEL" not in harness_config._C
    assert harness_config._C.TRAIN.OPTIMIZER == "sgd"


@pytest.mark.parametrize(
    "opts, key",
    [
        (["MODEL.IMAGE_SIZE", "[96]"], "MODEL.IMAGE_SIZE"),
        (["MODEL.HEATMAP_SIZE", "[24, 30]"], "MODEL.HEATMAP_SIZE"),
        (["MODEL.IMAGE_SIZE", "[80, 128]", "MODEL.HEATMAP_SIZE", "[20, 32]"], "MODEL.IMAGE_SIZE"),
        (["MODEL.TARGET_TYPE", "offset"], "MODEL.TARGET_TYPE"),
        (["MODEL.NAME", "pose_resnet"], "MODEL.NAME"),
        (["MODEL.SIGMA", "0"], "MODEL.SIGMA"),
        (["MODEL.EXTRA.STAGE3.NUM_CHANNELS", "[8, 16]"], "MODEL.EXTRA.STAGE3.NUM_CHANNELS"),
        (["MODEL.EXTRA.STAGE2.BLOCK", "RESNEXT"], "MODEL.EXTRA.STAGE2.BLOCK"),
        (["MODEL.EXTRA.STAGE4.FUSE_METHOD", "CAT"], "MODEL.EXTRA.STAGE4.FUSE_METHOD"),
        (["MODEL.EXTRA.FINAL_CONV_KERNEL", "5"], "MODEL.EXTRA.FINAL_CONV_KERNEL"),
        (["DATASET.PROB_HALF_BODY", "1.5"], "DATASET.PROB_HALF_BODY"),
    ],
)
def test_bad_values_name_the_key(opts: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(TINY, opts)


def test_missing_stage_key_is_named(tmp_path: Path) -> None:
    path = official_variant(tmp_path, "    STAGE4:\n      NUM_MODULES: 3\n", "    STAGE4:\n")
    with pytest.raises(ConfigError, match=r"MODEL\.EXTRA\.STAGE4\.NUM_MODULES.*not set"):
        load_config(path)


@pytest.mark.parametrize(
    "old, new, key",
    [
        (
            "    STAGE2:\n      NUM_MODULES: 1\n",
            "    STAGE2:\n      NUM_MODULE: 1\n",
            "MODEL.EXTRA.STAGE2.NUM_MODULE",
        ),
        ("PRINT_FREQ: 100\n", "PRINT_FREQUENCY: 100\n", "PRINT_FREQUENCY"),
        ("  SIGMA: 2\n", "  SIGMA: 2\n  SIGMAS: 2\n", "MODEL.SIGMAS"),
    ],
)
def test_unknown_keys_are_named(tmp_path: Path, old: str, new: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown config key '{key}'"):
        load_config(official_variant(tmp_path, old, new))


def test_recognizes_official_pose_files_only() -> None:
    assert recognizes(yaml.safe_load(OFFICIAL_W32.read_text()))
    assert recognizes({"MODEL": {"NAME": "pose_hrnet"}})
    assert recognizes({"DATASET": {"DATASET": "coco"}})
    assert not recognizes({"MODEL": {"NAME": "efficientnet_b0"}, "DATASET": {"DATASET": "fer2013"}})
    assert not recognizes({"MODEL": "pose_hrnet", "TRAIN": {"LR": 0.1}})
