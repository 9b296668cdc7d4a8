"""``harness predict``: annotated pictures of a checkpoint's predictions on image files.

- FER: each image (any size, made grey and resized to DATASET.IMAGE_SIZE) with the
  predicted expression and its probability; the true expression too when the image's
  folder is named after a class (the FER folder layout, e.g. ``test/Happy/x.png``).
- pose: the whole image is taken as the person box (no detector runs here), cropped as
  in validation, and the predicted skeleton is drawn over the original image with each
  joint's confidence (heatmap maximum).

Writes ``<out>/<image stem>.png`` per image and ``<out>/grid.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def image_files(paths: list[str]) -> list[Path]:
    """Files as given, and the images inside given directories (recursively, sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"--images: no such file or directory: {p}")
    if not files:
        raise FileNotFoundError(f"--images: no image files in {', '.join(paths)}")
    return files


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from harness.evaluate import eval_config, eval_opts, load_model_for_eval
    from harness.tasks import get_task
    from harness.vis import grid, predict_pictures

    args.strategy = args.gpus = args.output_dir = args.run_name = None
    cfg = eval_config(args.config, eval_opts(args))
    torch.set_grad_enabled(False)
    task = get_task(cfg.TASK)(cfg)
    model, _ = load_model_for_eval(cfg, task)
    model.eval()
    files = image_files(args.images)
    pictures = predict_pictures(cfg, task, model, files)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path, picture in zip(files, pictures):
        picture.save(out / f"{path.stem}.png")
    grid(pictures).save(out / "grid.png")
    print(f"predict: {len(pictures)} pictures -> {out}")
    return 0


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="annotated pictures of a checkpoint's predictions on images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="experiment YAML of the checkpoint's model")
    p.add_argument("--images", nargs="+", required=True, help="image files or directories")
    p.add_argument("--out", required=True, help="directory for the pictures")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. TEST.MODEL_FILE PATH")
    p.set_defaults(func=cmd_predict)
