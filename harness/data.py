"""Samplers and loaders.

Training samplers yield ``(epoch, index)`` keys: the dataset derives every
augmentation random number from (seed, epoch, index), so the data a run sees
does not depend on worker count, worker reuse or a resume in mid-epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


class TrainSampler(DistributedSampler):
    """DistributedSampler (also at world size 1) that can skip the samples of the
    steps already done in this epoch and can draw class-balanced indices.

    The order depends only on (seed, epoch): with ``weights`` it is a weighted
    draw with replacement, otherwise a permutation, then strided per rank.
    """

    def __init__(
        self,
        dataset_len: int,
        num_replicas: int,
        rank: int,
        seed: int,
        weights: torch.Tensor | None = None,
        shuffle: bool = True,
    ):
        self.dataset_len = dataset_len
        self.weights = weights
        super().__init__(
            range(dataset_len),
            num_replicas=num_replicas,
            rank=rank,  # type: ignore[arg-type]
            shuffle=shuffle,
            seed=seed,
            drop_last=True,
        )
        self.skip = 0

    def set_position(self, epoch: int, skip_samples: int) -> None:
        """Start ``epoch`` after ``skip_samples`` samples of this rank (for resume)."""
        self.set_epoch(epoch)
        self.skip = skip_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        if self.weights is not None:
            indices = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g).tolist()
        elif self.shuffle:
            indices = torch.randperm(self.dataset_len, generator=g).tolist()[: self.total_size]
        else:
            indices = list(range(self.total_size))
        mine = indices[self.rank : self.total_size : self.num_replicas][self.skip :]
        self.skip = 0  # only the first pass after a resume skips
        epoch = self.epoch
        return iter([(epoch, i) for i in mine])

    def __len__(self) -> int:
        return self.num_samples - self.skip


class TrainSubset(Dataset):
    """A fixed, seeded subset of a training set (``DATASET.SUBSET``): every epoch is the
    same ``len(indices)`` samples, in a new order. Keys map onto the underlying dataset,
    ``(epoch, i) -> (epoch, indices[i])``, so each sample keeps its own augmentation."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def _key(self, key: int | tuple[int, int]) -> int | tuple[int, int]:
        if isinstance(key, (tuple, list)):
            return (key[0], self.indices[key[1]])
        return self.indices[key]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        return self.dataset[self._key(key)]

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list:
        mapped = [self._key(k) for k in keys]
        batched = getattr(self.dataset, "__getitems__", None)
        return batched(mapped) if batched else [self.dataset[k] for k in mapped]


def subset_indices(dataset_len: int, size: int, seed: int) -> list[int]:
    """``size`` distinct indices of ``range(dataset_len)`` drawn by ``seed`` (sorted);
    all of them when ``size`` is 0. A size beyond the dataset is an error naming the key."""
    if size < 0:
        raise ValueError(f"DATASET.SUBSET must be >= 0 (0 = the whole training set), got {size}")
    if size == 0:
        return list(range(dataset_len))
    if size > dataset_len:
        raise ValueError(f"DATASET.SUBSET is {size} but the training set has only {dataset_len} samples")
    g = torch.Generator()
    g.manual_seed(seed)
    return sorted(torch.randperm(dataset_len, generator=g)[:size].tolist())


class InferenceSampler(Sampler[int]):
    """Contiguous, non-overlapping shards: every sample is evaluated exactly once
    (DistributedSampler would pad with duplicates)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0):
        per = math.ceil(size / num_replicas)
        self.indices = range(min(rank * per, size), min((rank + 1) * per, size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loader(
    dataset: Dataset,
    sampler: Sampler,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    prefetch_factor: int,
    persistent_workers: bool,
    drop_last: bool,
) -> DataLoader:
    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": prefetch_factor, "persistent_workers": persistent_workers}
    # A private generator: creating a loader iterator must not draw from the global RNG,
    # or a run resumed mid-epoch would see different dropout than an uninterrupted one.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        drop_last=drop_last,
        generator=torch.Generator(),
        # A dataset that fetches whole batches (__getitems__) may collate them itself.
        collate_fn=getattr(dataset, "collate_fn", None),
        **kwargs,
    )
