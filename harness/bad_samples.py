"""What ``DATA.ON_BAD_SAMPLE skip`` dropped, gathered from a run's datasets for run.json."""

from __future__ import annotations

from typing import Any


def skipped_of(dataset: Any) -> dict[str, int]:
    """A dataset's ``skipped`` counts (by reason), looking through subset wrappers."""
    while dataset is not None:
        counts = getattr(dataset, "skipped", None)
        if counts is not None:
            return dict(counts)
        dataset = getattr(dataset, "dataset", None)
    return {}


def skipped_samples(trainer: Any) -> dict[str, dict[str, int]]:
    """``{"train": {reason: n}, "val": {...}}`` for the splits that dropped anything."""
    out = {}
    for split, loader in (
        ("train", getattr(trainer, "train_loader", None)),
        ("val", getattr(trainer, "val_loader", None)),
    ):
        counts = skipped_of(getattr(loader, "dataset", None))
        if counts:
            out[split] = counts
    return out
