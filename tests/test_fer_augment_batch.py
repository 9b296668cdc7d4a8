"""Batched FER augmentation: batch and item paths agree, the warp keeps PIL's pixel
convention, and the keyed draws are pure functions of (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from efficientnet.data import FERArrays, FERDataset
from efficientnet.synth import synthetic_fer_arrays
from efficientnet.transforms import FERAugment, affine_inverse, keyed_uniforms, warp_batch


def _dataset(n: int = 40, **aug) -> FERDataset:
    images, labels, _ = synthetic_fer_arrays(n, seed=0)
    return FERDataset(FERArrays(images, labels, "synthetic"), train=True, aug=FERAugment(**aug), seed=5)


def test_batch_fetch_equals_items_and_any_split_of_the_batch() -> None:
    dataset = _dataset(random_erasing=0.5)
    keys = [(3, i) for i in (7, 0, 31, 12, 5, 39, 20, 2)]
    whole = dataset.collate_fn(dataset.__getitems__(keys))
    halves = [dataset.collate_fn(dataset.__getitems__(part)) for part in (keys[:3], keys[3:])]
    for name in ("input", "target", "index"):
        assert torch.equal(whole[name], torch.cat([h[name] for h in halves]))
    for row, key in enumerate(keys):
        item = dataset[key]
        assert torch.equal(item["input"], whole["input"][row]) and item["index"] == key[1]
    # Mixed keys: plain ints are the unaugmented image.
    mixed = dataset.__getitems__([(3, 7), 7])
    np.testing.assert_array_equal(mixed[1]["input"][0].numpy(), dataset.arrays.images[7])
    assert not torch.equal(mixed[0]["input"], mixed[1]["input"])


def test_loader_uses_the_dataset_collate_and_matches_default_collate() -> None:
    dataset = _dataset(random_erasing=0.3)
    keys = [(1, i) for i in range(32)]
    own = list(DataLoader(dataset, batch_size=16, sampler=keys, collate_fn=dataset.collate_fn))
    default = list(DataLoader(dataset, batch_size=16, sampler=keys))
    for a, b in zip(own, default, strict=True):
        assert a["input"].shape == (16, 1, 48, 48) and a["input"].dtype == torch.uint8
        for name in ("input", "target", "index"):
            assert torch.equal(a[name], b[name])


def test_warp_matches_pil_affine_within_one_level() -> None:
    images, _, _ = synthetic_fer_arrays(14, seed=1)
    images = images[:6]
    rng = np.random.default_rng(0)
    coefficients = np.array(
        [
            affine_inverse(
                (48, 48),
                48,
                rng.uniform(-20, 20),
                rng.uniform(0.8, 1.2),
                (float(rng.integers(-4, 5)), float(rng.integers(-4, 5))),
                bool(i % 2),
            )
            for i in range(6)
        ]
    )
    ours = warp_batch(images, coefficients, 48).astype(int)
    for image, coef, out in zip(images, coefficients, ours, strict=True):
        pil = np.asarray(
            Image.fromarray(image).transform(
                (48, 48), Image.AFFINE, tuple(coef), resample=Image.BILINEAR, fillcolor=0
            )
        ).astype(int)
        # Away from the border (where PIL and grid_sample treat the edge differently).
        diff = np.abs(out[6:-6, 6:-6] - pil[6:-6, 6:-6])
        assert np.mean(diff <= 1) > 0.97, np.mean(diff <= 1)


def test_keyed_uniforms_are_pure_and_spread() -> None:
    a = keyed_uniforms(3, 2, [5, 9, 11])
    assert np.array_equal(a, keyed_uniforms(3, 2, [5, 9, 11]))
    assert np.array_equal(a[1], keyed_uniforms(3, 2, [9])[0])
    assert not np.array_equal(a[0], keyed_uniforms(3, 3, [5])[0])
    assert not np.array_equal(a[0], keyed_uniforms(4, 2, [5])[0])
    many = keyed_uniforms(0, 0, np.arange(2000))
    assert many.min() >= 0.0 and many.max() < 1.0
    assert abs(many.mean() - 0.5) < 0.01 and abs(many.std() - 12**-0.5) < 0.01
