"""P3, FER input pipeline: augmented samples/s of one loader worker, ours vs torchvision PIL.

    .venv/bin/python -m benchmarks.bench_fer_transforms [--images 2048] [--batch 32] [--repeats 7]

What one DataLoader worker does per batch, in this process with one thread (workers
run with one): fetch ``batch`` training keys and collate them.
- A (ours): ``FERDataset.__getitems__`` (one batched warp) + ``FERDataset.collate_fn``.
- B (baseline): the conventional torchvision pipeline on the same uint8 images,
  ``Image.fromarray`` -> ``Compose([RandomCrop(48, padding=4), RandomHorizontalFlip(),
  RandomAffine(10, scale=(0.9, 1.1))])`` -> ``PILToTensor`` per sample + ``default_collate``.
- Also reported: B2, a single-warp PIL pipeline equivalent to ours (one ``Image.transform``
  per sample with our coefficients), the old per-sample design.
Goal: A/B >= 3. ``--profile`` prints a cProfile of the A side.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision import transforms

from benchmarks.protocol import alternate, emit, rate
from efficientnet.data import FERArrays, FERDataset
from efficientnet.synth import synthetic_fer_arrays
from efficientnet.transforms import FERAugment, affine_inverse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="distinct synthetic images per round")
    parser.add_argument("--batch", type=int, default=32, help="loader batch size")
    parser.add_argument("--repeats", type=int, default=7, help="alternating timed rounds")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of our side")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels, _ = synthetic_fer_arrays(args.images, seed=0)
    aug = FERAugment()  # crop padding 4, flip, rotation 10 deg, scale 0.9-1.1: the defaults
    dataset = FERDataset(FERArrays(images, labels, "synthetic"), train=True, aug=aug, seed=0)
    batches = [list(range(i, i + args.batch)) for i in range(0, args.images - args.batch + 1, args.batch)]
    epoch = [0]

    def ours() -> int:
        epoch[0] += 1
        for rows in batches:
            dataset.collate_fn(dataset.__getitems__([(epoch[0], i) for i in rows]))
        return len(batches) * args.batch

    compose = transforms.Compose(
        [
            transforms.RandomCrop(aug.image_size, padding=aug.crop_padding),
            transforms.RandomHorizontalFlip(),
            transforms.RandomAffine(aug.rotation_deg, scale=aug.scale),
            transforms.PILToTensor(),
        ]
    )

    def torchvision_pil() -> int:
        for rows in batches:
            default_collate(
                [
                    {
                        "input": compose(Image.fromarray(images[i])),
                        "target": torch.tensor(int(labels[i])),
                        "index": i,
                    }
                    for i in rows
                ]
            )
        return len(batches) * args.batch

    rng = np.random.default_rng(0)

    def single_warp_pil() -> int:
        for rows in batches:
            items = []
            for i in rows:
                coefficients = affine_inverse(
                    images[i].shape,
                    aug.image_size,
                    rng.uniform(-10, 10),
                    rng.uniform(0.9, 1.1),
                    tuple(rng.integers(-4, 5, size=2)),
                    bool(rng.random() < 0.5),
                )
                size = (aug.image_size, aug.image_size)
                view = Image.fromarray(images[i]).transform(
                    size, Image.AFFINE, coefficients, resample=Image.BILINEAR, fillcolor=0
                )
                items.append(
                    {
                        "input": torch.from_numpy(np.array(view)).unsqueeze(0),
                        "target": torch.tensor(int(labels[i])),
                        "index": i,
                    }
                )
            default_collate(items)
        return len(batches) * args.batch

    main_result = alternate(lambda: rate(ours), lambda: rate(torchvision_pil), repeats=args.repeats)
    single_warp = alternate(
        lambda: rate(ours), lambda: rate(single_warp_pil), repeats=max(3, args.repeats // 2)
    )
    emit(
        "p3_fer_pipeline",
        {
            "metric": "augmented samples/s of one loader worker (1 thread), ours / torchvision PIL Compose",
            "goal": ">= 3",
            "met": main_result["ratio_median"] >= 3,
            "batch": args.batch,
            "image_px": aug.image_size,
            **main_result,
            "vs_single_warp_pil": {
                k: single_warp[k] for k in ("ratio_median", "ratio_min", "ratio_max", "baseline_median")
            },
        },
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(ours)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
