"""FER2013 readers, label order, augmentation determinism and class weighting."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader

from efficientnet.data import (
    CLASS_NAMES,
    FERArrays,
    FERDataError,
    FERDataset,
    class_counts,
    class_weights,
    detect_format,
    load_fer_split,
    load_fer_splits,
    sample_weights,
    summarize,
)
from efficientnet.synth import write_synthetic_fer
from efficientnet.transforms import FERAugment, affine_inverse, augment, warp

N_IMAGES = 140
SEED = 5


class ChecksumFreeFER2013(torchvision.datasets.FER2013):
    """torchvision's own reader; only the md5 of the real Kaggle files is not checked."""

    _RESOURCES = {key: (name, None) for key, (name, _) in torchvision.datasets.FER2013._RESOURCES.items()}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    """The same synthetic samples in the three layouts."""
    base = tmp_path_factory.mktemp("fer")
    return {
        fmt: write_synthetic_fer(str(base / fmt), N_IMAGES, fmt, seed=SEED)
        for fmt in ("csv", "torchvision", "folder")
    }


def as_multiset(arrays: FERArrays) -> list[tuple[int, bytes]]:
    pairs = zip(arrays.images, arrays.labels, strict=True)
    return sorted((int(label), image.tobytes()) for image, label in pairs)


def torchvision_arrays(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    dataset = ChecksumFreeFER2013(root, split=split)
    images = np.stack([image.numpy() for image, _ in dataset._samples])
    labels = np.array([label for _, label in dataset._samples], dtype=np.int64)
    return images, labels


# ------------------------------------------------------------ formats agree
@pytest.mark.parametrize("splits", [("train", "train"), ("PublicTest+PrivateTest", "test")])
def test_three_formats_give_same_counts_and_images(roots, splits):
    csv_split, folder_split = splits
    from_csv = load_fer_split(roots["csv"], csv_split, "csv")
    from_torchvision = load_fer_split(roots["torchvision"], csv_split, "torchvision")
    from_folder = load_fer_split(roots["folder"], folder_split, "folder")
    assert len(from_csv) > 0
    assert class_counts(from_csv) == class_counts(from_torchvision) == class_counts(from_folder)
    np.testing.assert_array_equal(from_csv.images, from_torchvision.images)
    np.testing.assert_array_equal(from_csv.labels, from_torchvision.labels)
    assert as_multiset(from_csv) == as_multiset(from_folder)


@pytest.mark.parametrize("ours, theirs", [("train", "train"), ("PublicTest+PrivateTest", "test")])
def test_counts_and_images_equal_torchvision_fer2013(roots, ours, theirs):
    images, labels = torchvision_arrays(roots["torchvision"], theirs)
    arrays = load_fer_split(roots["torchvision"], ours)
    counts = {name: int(c) for name, c in zip(CLASS_NAMES, np.bincount(labels, minlength=7), strict=True)}
    assert class_counts(arrays) == counts
    np.testing.assert_array_equal(arrays.images, images)
    np.testing.assert_array_equal(arrays.labels, labels)


def test_val_and_test_are_public_and_private(roots):
    public = load_fer_split(roots["csv"], "val")
    private = load_fer_split(roots["csv"], "test")
    both = load_fer_split(roots["csv"], "PublicTest+PrivateTest")
    assert len(public) + len(private) == len(both)
    np.testing.assert_array_equal(np.concatenate([public.images, private.images]), both.images)
    np.testing.assert_array_equal(load_fer_split(roots["csv"], "PublicTest").images, public.images)


def test_several_splits_at_once_equal_one_at_a_time(roots):
    for fmt in ("csv", "torchvision", "folder"):
        both = load_fer_splits(roots[fmt], ["train", "val"], fmt)
        for split in ("train", "val"):
            np.testing.assert_array_equal(both[split].images, load_fer_split(roots[fmt], split, fmt).images)


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "train" / "Sad").mkdir(parents=True)
    (tmp_path / "test" / "Sad").mkdir(parents=True)
    with pytest.raises(FERDataError, match="FER split 'val' of .*test has no samples"):
        load_fer_split(str(tmp_path), "val")


def test_icml_face_data_csv_with_spaced_columns(roots, tmp_path):
    source = load_fer_split(roots["csv"], "Training+PublicTest+PrivateTest")
    usages = (
        ["Training"] * len(load_fer_split(roots["csv"], "train"))
        + ["PublicTest"] * len(load_fer_split(roots["csv"], "val"))
        + ["PrivateTest"] * len(load_fer_split(roots["csv"], "test"))
    )
    (tmp_path / "fer2013").mkdir()
    with open(tmp_path / "fer2013" / "icml_face_data.csv", "w") as f:
        f.write("emotion, Usage, pixels\n")
        for image, label, usage in zip(source.images, source.labels, usages, strict=True):
            # Only the header has the spaces; values do not (torchvision matches "Training").
            f.write(f"{label},{usage},{' '.join(map(str, image.ravel()))}\n")
    for ours, theirs in (("train", "train"), ("PublicTest+PrivateTest", "test")):
        arrays = load_fer_split(str(tmp_path), ours)
        images, labels = torchvision_arrays(str(tmp_path), theirs)
        np.testing.assert_array_equal(arrays.images, images)
        np.testing.assert_array_equal(arrays.labels, labels)
        assert arrays.source.endswith("icml_face_data.csv")


def test_torchvision_train_csv_reads_and_unlabelled_test_csv_is_refused(roots, tmp_path):
    train = load_fer_split(roots["csv"], "train")
    (tmp_path / "fer2013").mkdir()
    with open(tmp_path / "fer2013" / "train.csv", "w") as f:
        f.write("emotion,pixels\n")
        for image, label in zip(train.images, train.labels, strict=True):
            f.write(f"{label},{' '.join(map(str, image.ravel()))}\n")
    with open(tmp_path / "fer2013" / "test.csv", "w") as f:
        f.write("pixels\n" + " ".join(["0"] * 2304) + "\n")
    arrays = load_fer_split(str(tmp_path), "train", "torchvision")
    np.testing.assert_array_equal(arrays.images, train.images)
    images, labels = torchvision_arrays(str(tmp_path), "train")
    np.testing.assert_array_equal(arrays.labels, labels)
    with pytest.raises(FERDataError, match="no labels"):
        load_fer_split(str(tmp_path), "val", "torchvision")


def test_auto_detection(roots, tmp_path):
    assert detect_format(roots["csv"]) == "csv"
    assert detect_format(os.path.dirname(roots["csv"])) == "csv"
    assert detect_format(roots["torchvision"]) == "torchvision"
    assert detect_format(roots["folder"]) == "folder"
    with pytest.raises(FERDataError, match="does not exist"):
        detect_format(str(tmp_path / "missing"))
    with pytest.raises(FERDataError, match="cannot tell"):
        detect_format(str(tmp_path))


# -------------------------------------------------------------- label order
def test_sorted_class_folders_keep_labels_by_name(tmp_path):
    """Sorted folder order is Neutral=4, Sad=5, Surprise=6; the csv order must win."""
    for split in ("train", "test"):
        for name in sorted(CLASS_NAMES):
            # Lower-case names must match too (case-insensitive by name).
            folder = tmp_path / split / (name.lower() if name == "Sad" else name)
            folder.mkdir(parents=True)
            value = 20 * CLASS_NAMES.index(name) + 10
            for i in range(3):
                Image.fromarray(np.full((48, 48), value, dtype=np.uint8)).save(folder / f"{i}.png")
    arrays = load_fer_split(str(tmp_path), "train")
    assert len(arrays) == 21
    np.testing.assert_array_equal(arrays.labels, (arrays.images[:, 0, 0].astype(np.int64) - 10) // 20)
    by_value = {int(img[0, 0]): int(label) for img, label in zip(arrays.images, arrays.labels, strict=True)}
    assert by_value[20 * 4 + 10] == CLASS_NAMES.index("Sad") == 4
    assert by_value[20 * 5 + 10] == CLASS_NAMES.index("Surprise") == 5
    assert by_value[20 * 6 + 10] == CLASS_NAMES.index("Neutral") == 6
    assert class_counts(load_fer_split(str(tmp_path), "val")) == dict.fromkeys(CLASS_NAMES, 3)


def test_folder_images_of_any_size_and_mode_become_48px_gray(tmp_path):
    happy = tmp_path / "train" / "Happy"
    happy.mkdir(parents=True)
    (tmp_path / "test").mkdir()
    Image.new("RGB", (96, 80), (200, 200, 200)).save(happy / "big.jpg", quality=100)
    Image.new("L", (48, 48), 7).save(happy / "small.png")
    (happy / "notes.txt").write_text("not an image; ignored")
    arrays = load_fer_split(str(tmp_path), "train", "folder")
    assert arrays.images.shape == (2, 48, 48) and arrays.images.dtype == np.uint8
    assert sorted(int(v) for v in arrays.images[:, 24, 24]) == [7, 200]
    assert class_counts(arrays)["Happy"] == 2


# -------------------------------------------------------------------- errors
def write_csv_rows(path, rows: list[str]) -> str:
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n" + "".join(r + "\n" for r in rows))
    return str(path)


GOOD_PIXELS = " ".join(["12"] * 2304)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        (f"3,{' '.join(['12'] * 2303)},Training", "row 1 \\(line 3\\) has 2303 pixel values"),
        (f"3,{GOOD_PIXELS[:-2]}x1,Training", "row 1 \\(line 3\\) has a non-numeric pixel value \\('x1'\\)"),
        (f"3,{GOOD_PIXELS[:-2]}256,Training", "row 1 \\(line 3\\) has a pixel value above 255"),
        (f"7,{GOOD_PIXELS},Training", "row 1 \\(line 3\\) has emotion '7'"),
        (f"happy,{GOOD_PIXELS},Training", "row 1 \\(line 3\\) has emotion 'happy'"),
        (f"3,{GOOD_PIXELS},Validation", "row 1 \\(line 3\\) has unknown Usage 'Validation'"),
    ],
)
def test_corrupt_csv_row_names_file_and_row(tmp_path, bad_row, message):
    path = write_csv_rows(tmp_path / "broken.csv", [f"0,{GOOD_PIXELS},Training", bad_row])
    with pytest.raises(FERDataError, match=f"broken.csv: {message}"):
        load_fer_split(path, "train")


def test_corrupt_row_is_found_beyond_the_first_parse_block(tmp_path):
    rows = [f"0,{GOOD_PIXELS},Training"] * 4100 + [f"1,{GOOD_PIXELS} 5,Training"]
    path = write_csv_rows(tmp_path / "long.csv", rows)
    with pytest.raises(FERDataError, match="long.csv: row 4100 \\(line 4102\\) has 2305 pixel values"):
        load_fer_split(path, "train", "csv")


def test_missing_column_and_unknown_split(tmp_path):
    path = tmp_path / "nousage.csv"
    path.write_text(f"emotion,pixels\n0,{GOOD_PIXELS}\n")
    with pytest.raises(FERDataError, match="nousage.csv: missing column\\(s\\) Usage"):
        load_fer_split(str(path), "train")
    good = write_csv_rows(tmp_path / "good.csv", [f"0,{GOOD_PIXELS},Training"])
    with pytest.raises(FERDataError, match="unknown FER split 'validation'"):
        load_fer_split(good, "validation")
    with pytest.raises(FERDataError, match="unknown FER format 'parquet'"):
        load_fer_split(good, "train", "parquet")


def test_unreadable_image_names_its_path(tmp_path):
    fear = tmp_path / "train" / "Fear"
    fear.mkdir(parents=True)
    Image.new("L", (48, 48)).save(fear / "ok.png")
    (fear / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(FERDataError, match=f"cannot read FER image {fear / 'broken.png'}"):
        load_fer_split(str(tmp_path), "train", "folder")


def test_unknown_class_folder_is_named(tmp_path):
    (tmp_path / "train" / "Happy").mkdir(parents=True)
    (tmp_path / "train" / "Contempt").mkdir()
    with pytest.raises(FERDataError, match="unknown FER class folder '.*train/Contempt'"):
        load_fer_split(str(tmp_path), "train")


def test_folder_split_names(roots):
    with pytest.raises(FERDataError, match="unknown FER split 'PublicTest'"):
        load_fer_split(roots["folder"], "PublicTest", "folder")
    assert len(load_fer_split(roots["folder"], "Training")) == len(load_fer_split(roots["folder"], "train"))


# ------------------------------------------------------------------ summary
def test_summarize_is_json_with_sizes_and_counts_by_name(roots):
    summary = summarize(roots["folder"], "auto", ["train", "val"])
    assert json.loads(json.dumps(summary)) == summary
    for split in ("train", "val"):
        assert list(summary[split]["classes"]) == list(CLASS_NAMES)
        assert sum(summary[split]["classes"].values()) == summary[split]["size"] > 0
    assert summary["train"]["classes"] == class_counts(load_fer_split(roots["csv"], "train"))


# ---------------------------------------------------------------- weighting
def test_sample_and_class_weights():
    labels = np.array([0, 0, 0, 3, 3, 6])
    per_sample = sample_weights(labels)
    assert per_sample.dtype == torch.float64
    expected = torch.tensor([1 / 3] * 3 + [1 / 2] * 2 + [1.0], dtype=torch.float64)
    torch.testing.assert_close(per_sample, expected)
    # Each present class carries the same total weight under the sampler.
    totals = torch.zeros(7, dtype=torch.float64).index_add_(0, torch.from_numpy(labels), per_sample)
    torch.testing.assert_close(totals[[0, 3, 6]], torch.ones(3, dtype=torch.float64))
    per_class = class_weights(torch.from_numpy(labels))
    assert per_class.dtype == torch.float32 and per_class.shape == (7,)
    assert per_class[[1, 2, 4, 5]].tolist() == [0.0] * 4
    assert per_class[[0, 3, 6]].mean().item() == pytest.approx(1.0)
    assert per_class[6] / per_class[0] == pytest.approx(3.0)


# ------------------------------------------------------------- the dataset
NO_AUG = FERAugment(crop_padding=0, hflip=False, rotation_deg=0.0, scale=(1.0, 1.0))


@pytest.fixture(scope="module")
def train_arrays(roots) -> FERArrays:
    return load_fer_split(roots["csv"], "train")


def test_items_are_single_channel_uint8(train_arrays):
    dataset = FERDataset(train_arrays, train=True, aug=FERAugment(random_erasing=0.5), seed=1)
    for key in (3, (2, 3)):
        item = dataset[key]
        assert item["input"].shape == (1, 48, 48) and item["input"].dtype == torch.uint8
        assert item["target"].dtype == torch.int64 and item["target"].dim() == 0
        assert item["target"].item() == train_arrays.labels[3] and item["index"] == 3
    np.testing.assert_array_equal(dataset[3]["input"][0].numpy(), train_arrays.images[3])
    big = FERDataset(train_arrays, train=True, aug=FERAugment(image_size=64), seed=1)
    assert big[(0, 1)]["input"].shape == big[1]["input"].shape == (1, 64, 64)
    with pytest.raises(IndexError, match="out of range"):
        dataset[len(dataset)]


def test_augmentation_depends_only_on_seed_epoch_index(train_arrays):
    aug = FERAugment(random_erasing=0.5)
    first = FERDataset(train_arrays, train=True, aug=aug, seed=7)
    again = FERDataset(train_arrays, train=True, aug=aug, seed=7)
    np.random.seed(0)
    torch.manual_seed(0)
    a = first[(4, 10)]["input"]
    np.random.seed(1)  # global RNG state must not matter
    torch.manual_seed(1)
    assert torch.equal(a, again[(4, 10)]["input"])
    assert not torch.equal(a, first[(5, 10)]["input"])
    assert not torch.equal(a, FERDataset(train_arrays, True, aug, seed=8)[(4, 10)]["input"])
    # Without train, tuple keys give the plain image.
    plain = FERDataset(train_arrays, train=False, aug=aug, seed=7)
    np.testing.assert_array_equal(plain[(4, 10)]["input"][0].numpy(), train_arrays.images[10])


def test_dataloader_batches_identical_for_0_and_2_workers(train_arrays):
    dataset = FERDataset(train_arrays, train=True, aug=FERAugment(random_erasing=0.3), seed=3)
    keys = [(2, int(i)) for i in np.random.default_rng(0).permutation(len(dataset))[:48]]

    def batches(workers: int) -> list[dict]:
        loader = DataLoader(dataset, batch_size=16, sampler=keys, num_workers=workers)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 3
    for one, other in zip(serial, parallel, strict=True):
        assert one["input"].shape == (16, 1, 48, 48)
        for name in ("input", "target", "index"):
            assert torch.equal(one[name], other[name])


# --------------------------------------------------------------- transforms
def test_disabled_augmentation_is_the_identity(train_arrays):
    rng = np.random.default_rng(0)
    for image in train_arrays.images[:5]:
        np.testing.assert_array_equal(augment(image, NO_AUG, rng), image)


def test_hflip_alone_gives_original_or_mirror(train_arrays):
    image = train_arrays.images[0]
    aug = FERAugment(crop_padding=0, hflip=True, rotation_deg=0.0, scale=(1.0, 1.0))
    flipped = 0
    for index in range(20):
        out = augment(image, aug, np.random.default_rng([0, 0, index]))
        if np.array_equal(out, image[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(out, image)
    assert 0 < flipped < 20


def test_warp_geometry_shift_and_rotation():
    image = np.arange(48 * 48, dtype=np.int64).reshape(48, 48).astype(np.uint8)
    shifted = warp(image, affine_inverse((48, 48), 48, 0.0, 1.0, (3.0, -2.0), False), 48)
    # A shift of (+3, -2) moves content right 3 and up 2; uncovered pixels are 0 like padding.
    np.testing.assert_array_equal(shifted[:46, 3:], image[2:, :45])
    assert shifted[:, :3].max() == 0 and shifted[46:].max() == 0
    # +90 degrees turns clockwise on screen (y points down).
    turned = warp(image, affine_inverse((48, 48), 48, 90.0, 1.0, (0.0, 0.0), False), 48)
    # cos(90 deg) is 6e-17, not 0, so bilinear weights may round a value down by 1.
    assert np.abs(turned.astype(int) - np.rot90(image, k=-1)).max() <= 1


def test_augment_config_validation():
    with pytest.raises(ValueError, match="scale must be"):
        FERAugment(scale=(1.2, 0.9))
    with pytest.raises(ValueError, match="random_erasing is a probability"):
        FERAugment(random_erasing=1.5)
    node = {"CROP_PADDING": 2, "SCALE": [0.8, 1.0], "HFLIP": False, "ROTATION": 5.0}
    aug = FERAugment.from_config(node, image_size=64)
    assert aug == FERAugment(crop_padding=2, scale=(0.8, 1.0), hflip=False, rotation_deg=5.0, image_size=64)
