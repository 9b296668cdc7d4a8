"""Keys the studies need: DATASET.SUBSET, DATASET.VAL_FRACTION, train/acc, EVAL.AMP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import ConfigError, load_config
from harness.data import TrainSubset, subset_indices
from tests.spine_helpers import FER_SYNTH, fast_opts, records


def test_subset_is_seeded_fixed_and_maps_keys() -> None:
    a, b = subset_indices(100, 10, seed=3), subset_indices(100, 10, seed=3)
    assert a == b and len(set(a)) == 10 and a == sorted(a)
    assert subset_indices(100, 10, seed=4) != a
    assert subset_indices(7, 0, seed=0) == list(range(7))
    with pytest.raises(ValueError, match="DATASET.SUBSET is 8 but the training set has only 7"):
        subset_indices(7, 8, seed=0)

    class Keyed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 100

        def __getitem__(self, key):
            return key

    subset = TrainSubset(Keyed(), a)
    assert len(subset) == 10
    assert subset[(5, 2)] == (5, a[2]) and subset[3] == a[3]
    assert subset.__getitems__([(1, 0), (1, 9)]) == [(1, a[0]), (1, a[9])]


def test_val_fraction_holds_out_a_seeded_share_of_the_training_split(fer_csv_root: str) -> None:
    from efficientnet.data import load_fer_split
    from efficientnet.task import FERTask

    whole = load_fer_split(fer_csv_root, "train")
    cfg = load_config(FER_SYNTH, ["DATASET.ROOT", fer_csv_root, "DATASET.VAL_FRACTION", "0.1"])
    train, val = FERTask(cfg).build_datasets()
    assert len(val) == round(0.1 * len(whole)) and len(train) + len(val) == len(whole)
    again_train, again_val = FERTask(cfg).build_datasets()
    np.testing.assert_array_equal(val.arrays.images, again_val.arrays.images)
    other_seed = FERTask(
        load_config(FER_SYNTH, ["DATASET.ROOT", fer_csv_root, "DATASET.VAL_FRACTION", "0.1", "SEED", "5"])
    ).build_datasets()[1]
    assert not np.array_equal(val.arrays.labels, other_seed.arrays.labels) or not np.array_equal(
        val.arrays.images, other_seed.arrays.images
    )
    # Held-out images are not trained on: every validation image is missing from training.
    train_rows = {img.tobytes() for img in train.arrays.images}
    assert sum(img.tobytes() in train_rows for img in val.arrays.images) <= 1  # synthetic duplicates aside
    with pytest.raises(ConfigError, match="DATASET.VAL_FRACTION"):
        load_config(FER_SYNTH, ["DATASET.ROOT", fer_csv_root, "DATASET.VAL_FRACTION", "1.5"])


def test_a_number_given_as_val_split_is_the_held_out_fraction(tmp_path: Path) -> None:
    for opts in (["DATASET.VAL_SPLIT", "0.1"], ["DATASET.VAL_SPLIT", "0.25"]):
        cfg = load_config(FER_SYNTH, opts)
        assert cfg.DATASET.VAL_FRACTION == float(opts[1]) and cfg.DATASET.VAL_SPLIT == "val"
    yaml_file = tmp_path / "held_out.yaml"
    yaml_file.write_text(f"_BASE_: {Path(FER_SYNTH).resolve()}\nDATASET:\n  VAL_SPLIT: 0.2\n")
    assert load_config(yaml_file).DATASET.VAL_FRACTION == 0.2
    # Split names stay names, and a fraction outside [0, 1) names the key it became.
    assert load_config(FER_SYNTH, ["DATASET.VAL_SPLIT", "test"]).DATASET.VAL_SPLIT == "test"
    assert load_config(FER_SYNTH, ["DATASET.VAL_SPLIT", "PrivateTest"]).DATASET.VAL_FRACTION == 0.0
    with pytest.raises(ConfigError, match="DATASET.VAL_FRACTION must be in"):
        load_config(FER_SYNTH, ["DATASET.VAL_SPLIT", "1.5"])
    # Pose has no such spelling: its keys are checked as written.
    with pytest.raises(ConfigError, match="DATASET.VAL_SPLIT"):
        load_config(None, ["TASK", "pose", "DATASET.VAL_SPLIT", "0.1"])


def test_eval_amp_false_validates_in_fp32() -> None:
    from harness.trainer import eval_autocast

    cpu = torch.device("cpu")
    layer = torch.nn.Linear(4, 2)
    x = torch.randn(3, 4)
    for eval_amp, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        cfg = load_config(FER_SYNTH, ["TRAIN.AMP", "bf16", "EVAL.AMP", str(eval_amp)])
        with eval_autocast(cfg, cpu):
            assert layer(x).dtype == dtype


def test_train_acc_subset_epochs_and_fp32_eval_in_a_real_run(fer_csv_root: str, tmp_path: Path) -> None:
    from harness.spawn import launch

    cfg = load_config(
        FER_SYNTH,
        fast_opts(
            fer_csv_root,
            tmp_path,
            RUN_NAME="keys",
            TRAIN__MAX_STEPS_PER_EPOCH=0,
            DATASET__SUBSET=64,
            TRAIN__AMP="bf16",
            EVAL__AMP=False,
            DATASET__VAL_FRACTION=0.05,
            LOG__WANDB__MODE="disabled",
        ),
    )
    assert launch(cfg) == "completed"
    run = tmp_path / "keys"
    train = records(run, "train")
    epochs = records(run, "epoch")
    # 64 samples at batch 16: four steps an epoch, two log windows of two steps.
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert all(0.0 <= r["train/acc"] <= 1.0 for r in train + epochs)
    assert len(epochs) == 2
    # The epoch accuracy is the mean of its windows (equal step counts).
    assert epochs[0]["train/acc"] == pytest.approx((train[0]["train/acc"] + train[1]["train/acc"]) / 2)
    assert all(0.0 <= r["val/accuracy"] <= 1.0 for r in records(run, "val"))
