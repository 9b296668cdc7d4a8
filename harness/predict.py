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


def _true_class(path: Path) -> int | None:
    from efficientnet.data import CLASS_NAMES

    names = {n.lower(): i for i, n in enumerate(CLASS_NAMES)}
    return names.get(path.parent.name.lower())


def predict_fer(cfg: Any, task: Any, model: Any, files: list[Path]) -> list[Any]:
    import numpy as np
    import torch
    from PIL import Image

    from efficientnet.data import CLASS_NAMES
    from harness.vis import fer_picture

    side = cfg.DATASET.IMAGE_SIZE
    pictures = []
    for path in files:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L").resize((side, side), Image.BILINEAR), dtype=np.uint8)
        batch = task.prepare_batch({"input": torch.from_numpy(grey)[None, None]}, torch.device("cpu"))
        with torch.no_grad():
            probs = model(batch["input"]).float().softmax(dim=1)[0].numpy()
        pictures.append(fer_picture(grey, int(probs.argmax()), probs, _true_class(path), CLASS_NAMES))
    return pictures


def predict_pose(cfg: Any, task: Any, model: Any, files: list[Path]) -> list[Any]:
    import numpy as np
    import torch
    from PIL import Image

    from harness.vis import pose_picture
    from hrnet.inference import get_final_preds
    from hrnet.transforms import COCO_SKELETON, box_to_center_scale, get_affine_transform, warp_image

    width, height = cfg.MODEL.IMAGE_SIZE
    pictures = []
    for path in files:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        center, scale = box_to_center_scale([0, 0, rgb.width, rgb.height], width / height)
        crop = warp_image(rgb, get_affine_transform(center, scale, 0, (width, height)), (width, height))
        pixels = torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()
        batch = task.prepare_batch({"input": pixels}, torch.device("cpu"))
        with torch.no_grad():
            heatmaps = task.eval_forward(model, batch)
        coords, maxvals = get_final_preds(heatmaps, center[None], scale[None], cfg.TEST.POST_PROCESS)
        keypoints = np.concatenate([coords[0], maxvals[0]], axis=1)
        pictures.append(pose_picture(np.asarray(rgb), keypoints, COCO_SKELETON,
                                     scale=2.0 if max(rgb.size) < 200 else 1.0))
    return pictures


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from harness.evaluate import eval_config, eval_opts, load_model_for_eval
    from harness.tasks import get_task
    from harness.vis import grid

    args.strategy = args.gpus = args.output_dir = args.run_name = None
    cfg = eval_config(args.config, eval_opts(args))
    torch.set_grad_enabled(False)
    task = get_task(cfg.TASK)(cfg)
    model, _ = load_model_for_eval(cfg, task)
    model.eval()
    files = image_files(args.images)
    pictures = (predict_fer if cfg.TASK == "fer" else predict_pose)(cfg, task, model, files)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path, picture in zip(files, pictures):
        picture.save(out / f"{path.stem}.png")
    grid(pictures).save(out / "grid.png")
    print(f"predict: {len(pictures)} pictures -> {out}")
    return 0


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("predict", help="annotated pictures of a checkpoint's predictions on images",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML of the checkpoint's model")
    p.add_argument("--images", nargs="+", required=True, help="image files or directories")
    p.add_argument("--out", required=True, help="directory for the pictures")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, e.g. TEST.MODEL_FILE PATH")
    p.set_defaults(func=cmd_predict)
