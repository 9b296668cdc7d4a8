"""FER2013 readers (Kaggle csv, torchvision layout, image folders) and the Dataset.

Labels are always indices into :data:`CLASS_NAMES`, the Kaggle csv order.
Image folders are matched to it by class *name*: the sorted folder order
(Neutral, Sad, Surprise as 4, 5, 6) differs from the csv order (Sad, Surprise,
Neutral), and mixing the two silently mislabels three classes.

See docs/fer.md for the formats and split names.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from efficientnet.defaults import CLASS_NAMES, FORMATS, NUM_CLASSES
from efficientnet.transforms import FERAugment, augment_batch, keyed_noise, keyed_uniforms, resize
from harness.errors import UserError

IMAGE_SIDE = 48
NUM_PIXELS = IMAGE_SIDE * IMAGE_SIDE
USAGES = ("Training", "PublicTest", "PrivateTest")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm")

# Harness split names -> Kaggle Usage values. Raw Usage names and "A+B" unions also work.
SPLIT_USAGES: dict[str, tuple[str, ...]] = {
    "train": ("Training",),
    "val": ("PublicTest",),
    "test": ("PrivateTest",),
}
# Split -> sub-directory of an image-folder set (when no directory has the split's own name).
# PublicTest or PrivateTest alone cannot be told apart inside test/, so they are not accepted.
FOLDER_SPLITS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "test",
    "test": "test",
    "publictest+privatetest": "test",
}
_CLASS_BY_LOWER_NAME = {name.lower(): index for index, name in enumerate(CLASS_NAMES)}


class FERDataError(UserError, ValueError):
    """Bad FER data; the message names the file (and row) or directory."""


@dataclass
class FERArrays:
    """One split held in memory."""

    images: np.ndarray  # uint8, N x 48 x 48
    labels: np.ndarray  # int64 indices into CLASS_NAMES
    source: str  # the file or directory read

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


# ------------------------------------------------------------------ formats
def detect_format(root: str) -> str:
    """``csv``, ``torchvision`` or ``folder`` for a dataset root (see docs/fer.md)."""
    if os.path.isfile(root):
        return "csv"
    if os.path.isdir(os.path.join(root, "fer2013")):
        return "torchvision"
    if any(os.path.isfile(os.path.join(root, name)) for name in ("fer2013.csv", "icml_face_data.csv")):
        return "csv"
    if os.path.isdir(os.path.join(root, "train")):
        return "folder"
    if not os.path.exists(root):
        raise FERDataError(f"FER dataset root does not exist: {root}")
    raise FERDataError(
        f"cannot tell the FER format of {root}: expected a csv file, a directory with fer2013.csv, "
        f"a torchvision root with fer2013/, or an image-folder root with train/ and test/"
    )


def load_fer_split(root: str, split: str, fmt: str = "auto") -> FERArrays:
    """Read one split of FER2013 as uint8 N x 48 x 48 images and canonical labels.

    ``fmt``: ``csv`` (``root`` is the csv, or a directory holding
    ``fer2013.csv``), ``torchvision`` (``root/fer2013/`` as
    ``torchvision.datasets.FER2013`` reads it), ``folder`` (``root/train/<Class>/``,
    ``root/test/<Class>/``) or ``auto``. ``split``: ``train``, ``val``
    (PublicTest), ``test`` (PrivateTest), a raw Usage name, or a ``+`` union
    such as ``PublicTest+PrivateTest`` (torchvision's test split).
    An empty split is an error.
    """
    return load_fer_splits(root, [split], fmt)[split]


def load_fer_splits(root: str, splits: Sequence[str], fmt: str = "auto") -> dict[str, FERArrays]:
    """Several splits at once (a csv is read and tokenised once); see :func:`load_fer_split`."""
    root = os.fspath(root)
    if fmt not in FORMATS:
        raise FERDataError(f"unknown FER format {fmt!r} (DATASET.FORMAT); choose one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt == "csv":
        result = _read_csv(_csv_in(root), splits)
    elif fmt == "torchvision":
        result = _read_torchvision(root, splits)
    else:
        result = {split: read_folder(root, split) for split in splits}
    for split, arrays in result.items():
        if len(arrays) == 0:
            raise FERDataError(f"FER split {split!r} of {arrays.source} has no samples")
    return result


def _csv_in(root: str) -> str:
    if os.path.isfile(root):
        return root
    for name in ("fer2013.csv", "icml_face_data.csv"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    raise FERDataError(f"no FER csv at {root}: give the csv file or a directory holding fer2013.csv")


def _read_torchvision(root: str, splits: Sequence[str]) -> dict[str, FERArrays]:
    """The file torchvision would read: fer2013.csv, else icml_face_data.csv, else train/test.csv."""
    base = os.path.join(root, "fer2013")
    for name in ("fer2013.csv", "icml_face_data.csv"):
        path = os.path.join(base, name)
        if os.path.isfile(path):
            return _read_csv(path, splits)
    for split in splits:
        usages = split_usages(split)
        if set(usages) <= {"PublicTest", "PrivateTest"}:
            raise FERDataError(
                f"{base} has neither fer2013.csv nor icml_face_data.csv, and its test.csv "
                f"has no labels, so split {split!r} cannot be read"
            )
        if usages != ("Training",):
            raise FERDataError(
                f"split {split!r} mixes training and test rows; {base} only has train.csv and test.csv"
            )
    path = os.path.join(base, "train.csv")
    if not os.path.isfile(path):
        raise FERDataError(
            f"torchvision FER root {root}: none of fer2013.csv, icml_face_data.csv, train.csv found in {base}"
        )
    return _read_csv(path, splits, all_rows_are="Training")


# --------------------------------------------------------------------- csv
def split_usages(split: str) -> tuple[str, ...]:
    """The Kaggle Usage values of a split name (``train``, ``val``, ``PublicTest+PrivateTest``...)."""
    if split in SPLIT_USAGES:
        return SPLIT_USAGES[split]
    by_lower = {usage.lower(): usage for usage in USAGES}
    usages = []
    for part in split.split("+"):
        usage = by_lower.get(part.strip().lower())
        if usage is None:
            raise FERDataError(
                f"unknown FER split {split!r}; use one of {', '.join(SPLIT_USAGES)}, "
                f"a Usage name ({', '.join(USAGES)}) or a '+' union of them"
            )
        usages.append(usage)
    return tuple(dict.fromkeys(usages))


def _read_csv(path: str, splits: Sequence[str], all_rows_are: str | None = None) -> dict[str, FERArrays]:
    usages_of = {split: split_usages(split) for split in splits}
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise FERDataError(f"cannot read FER csv {path}: {e}") from e
    # icml_face_data.csv spells its columns "emotion, Usage, pixels".
    frame.columns = [str(c).strip() for c in frame.columns]
    required = ["emotion", "pixels"] + ([] if all_rows_are else ["Usage"])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise FERDataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}"
        )
    _check_truncated(path, frame, required)
    if all_rows_are:
        usage = pd.Series(np.full(len(frame), all_rows_are))
    else:
        usage = frame["Usage"].str.strip()
        unknown = ~usage.isin(USAGES)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise FERDataError(
                f"{path}: {_where(row)} has unknown Usage {usage.iloc[row]!r}; "
                f"expected one of {', '.join(USAGES)}"
            )
    emotions, pixels = frame["emotion"].to_numpy(), frame["pixels"].to_numpy()
    result = {}
    for split, usages in usages_of.items():
        rows = np.flatnonzero(usage.isin(usages).to_numpy())
        result[split] = FERArrays(
            images=parse_pixels(pixels[rows], rows, path),
            labels=_parse_labels(emotions[rows], rows, path),
            source=path,
        )
    return result


def _check_truncated(path: str, frame: pd.DataFrame, required: list[str]) -> None:
    """A row with fewer fields than the header reads as empty strings; say it is truncated
    (rather than, e.g., "unknown Usage ''"). Only rows with an empty value are re-read."""
    empty = np.flatnonzero((frame[required] == "").any(axis=1).to_numpy())
    if not len(empty):
        return
    wanted = {int(r) + 1: int(r) for r in empty}  # file line index (0 = header) -> row
    with open(path, newline="") as f:
        records = (fields for fields in csv.reader(f) if fields)  # pandas skips blank lines too
        for index, fields in enumerate(records):
            if index in wanted and len(fields) < len(frame.columns):
                row = wanted[index]
                raise FERDataError(
                    f"{path}: {_where(row)} is truncated: it has {len(fields)} of the "
                    f"{len(frame.columns)} fields ({', '.join(frame.columns)})"
                )
            if index >= max(wanted):
                return


def _where(row: int) -> str:
    # Row 0 is the first data line, line 2 of the file (after the header).
    return f"row {row} (line {row + 2})"


def _parse_labels(values: np.ndarray, rows: np.ndarray, path: str) -> np.ndarray:
    stripped = pd.Series(values, dtype=str).str.strip()
    numeric = pd.to_numeric(stripped, errors="coerce").to_numpy()
    bad = ~np.isin(numeric, np.arange(NUM_CLASSES))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FERDataError(
            f"{path}: {_where(int(rows[i]))} has emotion {values[i]!r}; expected an "
            f"integer 0-{NUM_CLASSES - 1} ({', '.join(CLASS_NAMES)})"
        )
    return numeric.astype(np.int64)


def parse_pixels(texts: Sequence[str], rows: Sequence[int], path: str) -> np.ndarray:
    """Space-separated 48x48 pixel strings -> uint8 N x 48 x 48, checked row by row.

    Vectorised over bytes: blocks of rows are joined, checked (digits and
    blanks only, 2304 numbers per row, at most 3 digits each) and decoded
    from the digit positions; a Python loop over 82 M tokens would take a minute.
    ``rows`` are the file rows of ``texts``, for error messages.
    """
    n = len(texts)
    images = np.empty((n, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    # Blocks bound the temporary byte/index arrays to a few hundred MB.
    block = 4096
    for start in range(0, n, block):
        stop = min(n, start + block)
        images[start:stop] = _parse_block(texts[start:stop], rows[start:stop], path)
    return images


def _parse_block(texts: Sequence[str], rows: Sequence[int], path: str) -> np.ndarray:
    # Two leading blanks: every token then has two bytes before its last digit to look back at.
    joined = "  " + "\n".join(texts)
    raw = np.frombuffer(joined.encode("ascii", errors="replace"), dtype=np.uint8)
    newline = raw == ord("\n")
    digit = raw - np.uint8(ord("0"))
    is_digit = digit < 10
    if np.count_nonzero(is_digit) + np.count_nonzero(newline) + np.count_nonzero(raw == ord(" ")) != raw.size:
        blank = (raw == ord("\t")) | (raw == ord("\r"))
        invalid = ~(is_digit | newline | blank | (raw == ord(" ")))
        if invalid.any():
            first = int(np.flatnonzero(invalid)[0])
            i = int(np.count_nonzero(newline[:first]))
            raise FERDataError(
                f"{path}: {_where(int(rows[i]))} has a non-numeric pixel value ({_token_at(joined, first)!r})"
            )
    digit *= is_digit
    starts = is_digit.copy()
    starts[1:] &= ~is_digit[:-1]
    ends = is_digit.copy()
    ends[:-1] &= ~is_digit[1:]
    first_digit, last_digit = np.flatnonzero(starts), np.flatnonzero(ends)
    counts = np.diff(
        np.searchsorted(first_digit, np.flatnonzero(newline)), prepend=0, append=len(first_digit)
    )
    wrong = np.flatnonzero(counts != NUM_PIXELS)
    if wrong.size:
        i = int(wrong[0])
        raise FERDataError(
            f"{path}: {_where(int(rows[i]))} has {counts[i]} pixel values; expected {NUM_PIXELS} (48x48)"
        )
    extra_digits = last_digit - first_digit  # 0, 1 or 2 for values up to 255
    values = (
        digit[last_digit].astype(np.int16)
        + 10 * digit[last_digit - 1]
        + 100 * digit[last_digit - 2].astype(np.int16) * (extra_digits == 2)
    )
    too_big = (values > 255) | (extra_digits > 2)
    if too_big.any():
        i = int(np.flatnonzero(too_big)[0]) // NUM_PIXELS
        raise FERDataError(f"{path}: {_where(int(rows[i]))} has a pixel value above 255")
    return values.astype(np.uint8).reshape(len(texts), IMAGE_SIDE, IMAGE_SIDE)


def _token_at(text: str, position: int) -> str:
    start = max(text.rfind(" ", 0, position), text.rfind("\n", 0, position)) + 1
    ends = [e for e in (text.find(" ", position), text.find("\n", position)) if e >= 0]
    return text[start : min(ends) if ends else len(text)]


# ------------------------------------------------------------ image folders
def folder_split_dir(root: str, split: str) -> str:
    """``root/<split>`` when it exists, else the directory the split maps to (val/test -> test)."""
    own = os.path.join(root, split)
    if os.path.isdir(own):
        return own
    mapped = FOLDER_SPLITS.get(split.lower())
    if mapped is None:
        raise FERDataError(
            f"unknown FER split {split!r} for image folders under {root}; use one of "
            f"{', '.join(sorted(set(FOLDER_SPLITS)))} or an existing sub-directory name"
        )
    path = os.path.join(root, mapped)
    if not os.path.isdir(path):
        raise FERDataError(f"FER image-folder split {split!r} needs the directory {path}")
    return path


def class_index(folder_name: str, where: str) -> int:
    """Canonical index of a class folder, matched by name (case-insensitive)."""
    index = _CLASS_BY_LOWER_NAME.get(folder_name.strip().lower())
    if index is None:
        raise FERDataError(
            f"unknown FER class folder {os.path.join(where, folder_name)!r}; "
            f"class folders must be named {', '.join(CLASS_NAMES)}"
        )
    return index


def read_folder(root: str, split: str) -> FERArrays:
    """Images under ``<split dir>/<ClassName>/``, any size or mode, as 48x48 grayscale."""
    split_dir = folder_split_dir(root, split)
    files: list[tuple[int, str]] = []
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        label = class_index(entry.name, split_dir)
        for name in sorted(os.listdir(entry.path)):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                files.append((label, os.path.join(entry.path, name)))
    files.sort(key=lambda item: (item[0], item[1]))
    labels = np.array([label for label, _ in files], dtype=np.int64)
    images = np.zeros((len(files), IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    # PIL decodes with the GIL released, so threads overlap the PNG/JPEG work.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        for i, image in enumerate(pool.map(read_image, [path for _, path in files])):
            images[i] = image
    return FERArrays(images=images, labels=labels, source=split_dir)


def read_image(path: str) -> np.ndarray:
    """One image file as uint8 48 x 48 grayscale."""
    try:
        with Image.open(path) as image:
            gray = image.convert("L")
            if gray.size != (IMAGE_SIDE, IMAGE_SIDE):
                gray = gray.resize((IMAGE_SIDE, IMAGE_SIDE), Image.BILINEAR)
            return np.asarray(gray, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise FERDataError(f"cannot read FER image {path}: {e}") from e


# --------------------------------------------------------------- summaries
def class_counts(arrays: FERArrays) -> dict[str, int]:
    """Samples per class, by class name, in canonical order."""
    counts = np.bincount(arrays.labels, minlength=NUM_CLASSES)
    return {name: int(count) for name, count in zip(CLASS_NAMES, counts, strict=True)}


def summarize(root: str, fmt: str, splits: Iterable[str]) -> dict:
    """``{split: {"size": n, "classes": {name: count}, "source": path}}`` for ``harness data summary``."""
    loaded = load_fer_splits(root, list(dict.fromkeys(splits)), fmt)
    return {
        split: {"size": len(arrays), "classes": class_counts(arrays), "source": arrays.source}
        for split, arrays in loaded.items()
    }


# ---------------------------------------------------------------- weighting
def _inverse_frequencies(labels: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return labels, inverse


def sample_weights(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-sample weight 1 / (count of its class), float64, for a WeightedRandomSampler.

    Every class is then drawn equally often in expectation (TRAIN.CLASS_WEIGHTING sampler).
    """
    labels, inverse = _inverse_frequencies(labels)
    return torch.from_numpy(inverse[labels])


def class_weights(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-class loss weight proportional to 1 / count, float32, mean 1 over the classes present.

    Classes absent from ``labels`` get weight 0 (TRAIN.CLASS_WEIGHTING loss).
    """
    _, inverse = _inverse_frequencies(labels)
    present = inverse > 0
    if present.any():
        inverse = inverse / inverse[present].mean()
    return torch.from_numpy(inverse.astype(np.float32))


# ----------------------------------------------------------------- dataset
class FERDataset(Dataset):
    """FER samples as ``{"input": uint8 1 x S x S, "target": int64 scalar, "index": int}``.

    Key ``(epoch, index)``: a training view whose augmentation is a pure function of
    (seed, epoch, index) (``keyed_uniforms``), so resumed runs and any NUM_WORKERS see
    identical data. Key ``index`` (an int), or any key when ``train`` is False: the
    plain image, resized to ``aug.image_size``. The DataLoader fetches a whole batch
    through ``__getitems__``, which augments it with one warp call; one key at a time
    gives the same views. The single channel is never repeated 3x here; the model
    takes 1 channel.
    """

    def __init__(self, arrays: FERArrays, train: bool, aug: FERAugment, seed: int):
        if seed < 0:
            raise ValueError(f"FERDataset seed must be >= 0 (it seeds the augmentation hash), got {seed}")
        self.arrays = arrays
        self.train = train
        self.aug = aug
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def labels(self) -> np.ndarray:
        return self.arrays.labels

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> FERBatch:
        epochs = np.array([int(k[0]) if isinstance(k, tuple) else -1 for k in keys], dtype=np.int64)
        indices = np.array([int(k[1]) if isinstance(k, tuple) else int(k) for k in keys], dtype=np.int64)
        bad = (indices < 0) | (indices >= len(self))
        if bad.any():
            raise IndexError(
                f"FER index {int(indices[bad][0])} out of range for {len(self)} samples "
                f"({self.arrays.source})"
            )
        size = self.aug.image_size
        out = np.empty((len(keys), size, size), dtype=np.uint8)
        augmented = (epochs >= 0) & self.train
        for epoch in np.unique(epochs[augmented]):  # one epoch per batch in practice
            rows = np.flatnonzero(augmented & (epochs == epoch))
            picked = indices[rows]
            out[rows] = augment_batch(
                self.arrays.images[picked],
                self.aug,
                keyed_uniforms(self.seed, int(epoch), picked),
                lambda sub, e=int(epoch), p=picked: keyed_noise(self.seed, e, p[sub], size),
            )
        for row in np.flatnonzero(~augmented):
            out[row] = resize(self.arrays.images[indices[row]], size)
        return FERBatch(
            torch.from_numpy(out).unsqueeze(1),
            torch.from_numpy(self.arrays.labels[indices].astype(np.int64)),
            indices,
        )

    @staticmethod
    def collate_fn(batch: Sequence[dict]) -> dict:
        """The DataLoader's collate: a fetched :class:`FERBatch` is already one batch."""
        return batch.collated() if isinstance(batch, FERBatch) else default_collate(batch)


class FERBatch(Sequence):
    """The items of one fetched batch, stored stacked: item ``i`` on demand (what
    ``default_collate`` iterates), or the whole collated batch at no per-item cost."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, indices: np.ndarray):
        self.inputs, self.targets, self.indices = inputs, targets, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:  # type: ignore[override]
        return {"input": self.inputs[i], "target": self.targets[i], "index": int(self.indices[i])}

    def collated(self) -> dict:
        return {"input": self.inputs, "target": self.targets, "index": torch.from_numpy(self.indices)}
