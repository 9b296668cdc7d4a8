"""The synthetic FER generator: layouts, determinism, imbalance, learnability and the CLI."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

from efficientnet.data import CLASS_NAMES, class_counts, load_fer_split
from efficientnet.synth import class_sample_counts, synthetic_fer_arrays, write_synthetic_fer
from efficientnet.workload import add_data_cli


def test_same_seed_same_images_other_seed_other_images():
    images, labels, usages = synthetic_fer_arrays(40, seed=3)
    again = synthetic_fer_arrays(40, seed=3)
    np.testing.assert_array_equal(images, again[0])
    np.testing.assert_array_equal(labels, again[1])
    np.testing.assert_array_equal(usages, again[2])
    assert not np.array_equal(images, synthetic_fer_arrays(40, seed=4)[0])
    assert images.shape == (40, 48, 48) and images.dtype == np.uint8 and labels.dtype == np.int64


def test_classes_mildly_imbalanced_and_stratified():
    counts = class_sample_counts(700)
    assert counts.sum() == 700
    assert counts.argmin() == CLASS_NAMES.index("Disgust") and counts.argmax() == CLASS_NAMES.index("Happy")
    assert 0.2 < counts.min() / counts.max() < 0.5
    _, labels, usages = synthetic_fer_arrays(140, seed=0, test_fraction=0.2)
    for usage in ("Training", "PublicTest", "PrivateTest"):
        assert set(labels[usages == usage].tolist()) == set(range(7)), usage
    # Rows come in the Kaggle order: Training, then PublicTest, then PrivateTest.
    assert list(dict.fromkeys(usages.tolist())) == ["Training", "PublicTest", "PrivateTest"]
    assert (usages == "Training").mean() == pytest.approx(0.8, abs=0.03)


def test_csv_has_exactly_the_kaggle_columns(tmp_path):
    path = write_synthetic_fer(str(tmp_path), 30, "csv", seed=1)
    assert path == str(tmp_path / "fer2013.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["emotion", "pixels", "Usage"]
    assert len(rows) == 31 and all(len(row) == 3 for row in rows)
    assert {row[2] for row in rows[1:]} == {"Training", "PublicTest", "PrivateTest"}
    assert all(len(row[1].split(" ")) == 2304 for row in rows[1:])


def test_layouts_and_overwrite(tmp_path):
    root = write_synthetic_fer(str(tmp_path / "tv"), 30, "torchvision")
    assert (tmp_path / "tv" / "fer2013" / "fer2013.csv").is_file() and root == str(tmp_path / "tv")
    root = write_synthetic_fer(str(tmp_path / "img"), 30, "folder")
    assert {p.name for p in (tmp_path / "img" / "train").iterdir()} == set(CLASS_NAMES)
    assert len(list((tmp_path / "img").glob("*/*/*.png"))) == 30
    with pytest.raises(FileExistsError, match="already exists"):
        write_synthetic_fer(root, 20, "folder")
    write_synthetic_fer(root, 20, "folder", overwrite=True)
    assert len(list((tmp_path / "img").glob("*/*/*.png"))) == 20


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n >= 14"):
        synthetic_fer_arrays(10)
    with pytest.raises(ValueError, match="test_fraction"):
        synthetic_fer_arrays(50, test_fraction=1.0)
    with pytest.raises(ValueError, match="unknown synthetic FER format"):
        write_synthetic_fer(str(tmp_path), 50, "hdf5")


def softmax_regression(train_x: np.ndarray, train_y: np.ndarray, steps: int = 250) -> tuple:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x = (train_x - mean) / std
    weights, bias = np.zeros((x.shape[1], 7)), np.zeros(7)
    onehot = np.eye(7)[train_y]
    for _ in range(steps):
        logits = x @ weights + bias
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        grad = (prob - onehot) / len(x)
        weights -= 0.5 * (x.T @ grad + 1e-3 * weights)
        bias -= 0.5 * grad.sum(0)
    return lambda test_x: (((test_x - mean) / std) @ weights + bias).argmax(1)


def test_classes_are_learnable_and_flip_invariant():
    """A linear model on raw pixels beats chance (1/7) clearly on held-out faces, flipped or not."""
    images, labels, usages = synthetic_fer_arrays(700, seed=11)
    pixels = images.reshape(len(images), -1).astype(np.float64) / 255.0
    flipped = images[:, :, ::-1].reshape(len(images), -1).astype(np.float64) / 255.0
    train, held_out = usages == "Training", usages != "Training"
    predict = softmax_regression(pixels[train], labels[train])
    accuracy = (predict(pixels[held_out]) == labels[held_out]).mean()
    flipped_accuracy = (predict(flipped[held_out]) == labels[held_out]).mean()
    majority = np.bincount(labels[held_out]).max() / held_out.sum()
    # Chance is 1/7 = 0.14; always answering the majority class scores about 0.2.
    assert accuracy > 0.35 and accuracy > majority + 0.15, (accuracy, majority)
    assert flipped_accuracy > 0.35, flipped_accuracy


def data_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="data tools")
    add_data_cli(data.add_subparsers(dest="data_command", required=True))
    return parser


def test_cli_synth_fer_writes_a_loadable_set(tmp_path, capsys):
    parser = data_parser()
    args = parser.parse_args(
        [
            "data",
            "synth-fer",
            str(tmp_path / "set"),
            "--n",
            "60",
            "--format",
            "folder",
            "--seed",
            "2",
            "--test-fraction",
            "0.25",
        ]
    )
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["root"] == str(tmp_path / "set") and printed["format"] == "folder"
    train = load_fer_split(printed["root"], "train")
    test = load_fer_split(printed["root"], "test")
    total = {name: class_counts(train)[name] + class_counts(test)[name] for name in CLASS_NAMES}
    assert total == printed["classes"]
    assert len(test) == pytest.approx(15, abs=3)
    # Writing again without --overwrite is an error with exit code 2, not a traceback.
    assert args.func(args) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "synth-fer", str(tmp_path), "--n", "60", "--format", "xml"])
