"""FER data-path speed: training augmentation (img/s per core) and reading a full-size csv.

    python benchmarks/bench_fer_transforms.py [--images 4000] [--csv-rows 35887] [--image-size 48]

The csv is synthetic (the generator's faces, tiled to the row count of the real
fer2013.csv) and written to a temporary directory that is removed afterwards.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from efficientnet.data import FERArrays, FERDataset, load_fer_split
from efficientnet.synth import synthetic_fer_arrays, write_fer_csv
from efficientnet.transforms import FERAugment


def bench_augment(images: np.ndarray, labels: np.ndarray, image_size: int, erasing: float) -> float:
    """Single-threaded FERDataset.__getitem__ rate for training keys, in images per second."""
    dataset = FERDataset(FERArrays(images, labels, "synthetic"), train=True,
                         aug=FERAugment(random_erasing=erasing, image_size=image_size), seed=0)
    for i in range(200):  # warm caches and PIL's code paths
        dataset[(0, i % len(dataset))]
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[(1, i)]
    return len(dataset) / (time.perf_counter() - start)


def bench_csv(images: np.ndarray, labels: np.ndarray, rows: int) -> tuple[float, float, int]:
    """(seconds to read the Training split, csv size in MB, rows read) for a ``rows``-row csv."""
    reps = -(-rows // len(images))
    tiled_images = np.tile(images, (reps, 1, 1))[:rows]
    tiled_labels = np.tile(labels, reps)[:rows]
    # The real file's proportions: 80% Training, 10% PublicTest, 10% PrivateTest.
    usages = np.array(["Training"] * int(rows * 0.8) + ["PublicTest"] * int(rows * 0.1))
    usages = np.concatenate([usages, np.full(rows - len(usages), "PrivateTest")])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fer2013.csv")
        write_fer_csv(path, tiled_images, tiled_labels, usages)
        size_mb = os.path.getsize(path) / 1e6
        start = time.perf_counter()
        arrays = load_fer_split(path, "train")
        seconds = time.perf_counter() - start
    return seconds, size_mb, len(arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="distinct synthetic images to augment")
    parser.add_argument("--csv-rows", type=int, default=35887,
                        help="rows of the csv to read (the real fer2013.csv has 35,887); 0 skips")
    parser.add_argument("--image-size", type=int, default=48, help="augmentation output size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels, _ = synthetic_fer_arrays(args.images, seed=0)
    for erasing in (0.0, 0.5):
        rate = bench_augment(images, labels, args.image_size, erasing)
        print(f"augment {args.image_size}px, random_erasing={erasing}: {rate:,.0f} img/s on one core")
    if args.csv_rows:
        seconds, size_mb, n_train = bench_csv(images, labels, args.csv_rows)
        print(f"read csv: {args.csv_rows:,} rows ({size_mb:.0f} MB), Training split of {n_train:,} "
              f"images in {seconds:.2f} s")


if __name__ == "__main__":
    main()
