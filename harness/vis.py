"""Pictures of predictions: FER faces with predicted and true expression, pose crops
with the predicted skeleton and joint confidences, and grids of either.

Validation calls :func:`write_validation_grid` with its first batch (``EVAL.VIS_SAMPLES``
pictures, 0 disables); ``harness predict`` uses the single-picture helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Pixels per side of one FER tile (48 px faces are upscaled for legibility).
FER_TILE = 144
GOOD, BAD = (40, 200, 60), (230, 50, 40)


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def fer_picture(
    image: np.ndarray, pred: int, probs: Sequence[float], true: int | None, class_names: Sequence[str]
) -> Image.Image:
    """One grey face (H, W uint8) upscaled, with the predicted expression, its
    probability and, when known, the true expression (green when they agree)."""
    face = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    face = face.resize((FER_TILE, FER_TILE), Image.NEAREST)
    canvas = Image.new("RGB", (FER_TILE, FER_TILE + 30), (255, 255, 255))
    canvas.paste(face, (0, 0))
    draw = ImageDraw.Draw(canvas)
    colour = (0, 0, 0) if true is None else (GOOD if pred == true else BAD)
    draw.text((3, FER_TILE + 2), f"pred {class_names[pred]} {probs[pred]:.2f}", fill=colour, font=_font())
    if true is not None:
        draw.text((3, FER_TILE + 15), f"true {class_names[true]}", fill=(0, 0, 0), font=_font())
    return canvas


def _confidence_colour(score: float) -> tuple[int, int, int]:
    """Red (0) to green (1)."""
    s = float(np.clip(score, 0.0, 1.0))
    return int(255 * (1 - s)), int(200 * s), 40


def pose_picture(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Sequence[Sequence[int]],
    truth: np.ndarray | None = None,
    threshold: float = 0.2,
    scale: float = 1.0,
) -> Image.Image:
    """The predicted skeleton over an RGB image (H, W, 3 uint8).

    ``keypoints``: (J, 3) x, y, confidence in image pixels; each joint is a dot
    coloured by confidence with its value written beside it, limbs join joints
    above ``threshold``. ``skeleton``: 1-based joint pairs (COCO). ``truth``: (J, 3)
    x, y, visibility drawn as small white rings. ``scale`` enlarges small crops.
    """
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    if scale != 1.0:
        size = (round(picture.width * scale), round(picture.height * scale))
        picture = picture.resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(picture)
    points = np.asarray(keypoints, dtype=np.float64).copy()
    points[:, :2] *= scale
    for a, b in skeleton:
        pa, pb = points[a - 1], points[b - 1]
        if pa[2] > threshold and pb[2] > threshold:
            draw.line([(pa[0], pa[1]), (pb[0], pb[1])], fill=_confidence_colour(min(pa[2], pb[2])), width=2)
    if truth is not None:
        for x, y, v in np.asarray(truth, dtype=np.float64):
            if v > 0:
                x, y = x * scale, y * scale
                draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=(255, 255, 255))
    for x, y, c in points:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=_confidence_colour(c))
        draw.text((x + 4, y - 5), f"{c:.2f}", fill=(255, 255, 0), font=_font())
    return picture


def grid(pictures: Sequence[Image.Image], columns: int = 4) -> Image.Image:
    """Tiles of equal cell size (the largest picture), row-major."""
    if not pictures:
        raise ValueError("grid() needs at least one picture")
    width = max(p.width for p in pictures)
    height = max(p.height for p in pictures)
    columns = max(1, min(columns, len(pictures)))
    rows = -(-len(pictures) // columns)
    sheet = Image.new("RGB", (columns * width, rows * height), (255, 255, 255))
    for i, p in enumerate(pictures):
        sheet.paste(p, ((i % columns) * width, (i // columns) * height))
    return sheet


def batch_pictures(task: str, batch: dict[str, Any], outputs: Any, limit: int) -> list[Image.Image]:
    """Pictures of the first ``limit`` samples of a raw (uint8) validation batch and
    the model's outputs for it (FER logits, or pose heatmaps)."""
    import torch

    n = min(limit, int(batch["input"].shape[0]))
    inputs = batch["input"][:n].detach().cpu()
    if task == "fer":
        from efficientnet.data import CLASS_NAMES

        probs = torch.as_tensor(outputs[:n]).detach().float().softmax(dim=1).cpu().numpy()
        targets = batch["target"][:n].cpu().numpy() if "target" in batch else [None] * n
        return [
            fer_picture(
                inputs[i, 0].numpy(),
                int(probs[i].argmax()),
                probs[i],
                None if targets[i] is None else int(targets[i]),
                CLASS_NAMES,
            )
            for i in range(n)
        ]
    if task == "pose":
        from hrnet.inference import get_max_preds
        from hrnet.transforms import COCO_SKELETON

        heatmaps = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        heatmaps = heatmaps[:n].detach().float().cpu().numpy()
        coords, maxvals = get_max_preds(heatmaps)
        stride = inputs.shape[-1] / heatmaps.shape[-1]
        # The crop maps heatmap pixel x to input pixel x * stride.
        keypoints = np.concatenate([coords * stride, maxvals], axis=2)
        truth = batch["joints"][:n].cpu().numpy() if "joints" in batch else [None] * n
        return [
            pose_picture(
                inputs[i].permute(1, 2, 0).numpy(),
                keypoints[i],
                COCO_SKELETON,
                truth[i],
                scale=2.0 if inputs.shape[-1] < 160 else 1.0,
            )
            for i in range(n)
        ]
    raise ValueError(f"no pictures for TASK {task!r}")


def write_validation_grid(
    cfg: Any, run_dir: Path, logger: Any, batch: dict[str, Any] | None, outputs: Any, epoch: int
) -> Path | None:
    """``<run dir>/vis/val-epoch<NNN>.png`` from the first validation batch, also logged
    to W&B as ``val/examples``. Never fails validation: problems are one warning."""
    limit = cfg.EVAL.VIS_SAMPLES
    if not limit or batch is None or not getattr(logger, "main", True):
        return None
    try:
        sheet = grid(batch_pictures(cfg.TASK, batch, outputs, limit))
        path = Path(run_dir) / "vis" / f"val-epoch{epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)
        run = getattr(getattr(logger, "wandb", None), "run", None)
        if run is not None:
            import wandb

            run.log({"val/examples": wandb.Image(str(path), caption=f"epoch {epoch}"), "epoch": epoch})
        return path
    except Exception as e:  # pictures are a convenience; validation results matter more
        logger.warning("validation pictures not written: %s: %s", type(e).__name__, e)
        return None


# ------------------------------------------------------------------ harness predict
def predict_pictures(cfg: Any, task: Any, model: Any, files: Sequence[Path]) -> list[Image.Image]:
    """Pictures of ``model``'s predictions on image files (``harness predict``)."""
    return (predict_fer if cfg.TASK == "fer" else predict_pose)(cfg, task, model, list(files))


def _true_class(path: Path) -> int | None:
    from efficientnet.data import CLASS_NAMES

    names = {n.lower(): i for i, n in enumerate(CLASS_NAMES)}
    return names.get(path.parent.name.lower())


def predict_fer(cfg: Any, task: Any, model: Any, files: list[Path]) -> list[Image.Image]:
    import torch

    from efficientnet.data import CLASS_NAMES

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


def predict_pose(cfg: Any, task: Any, model: Any, files: list[Path]) -> list[Image.Image]:
    import torch

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
        pictures.append(
            pose_picture(np.asarray(rgb), keypoints, COCO_SKELETON, scale=2.0 if max(rgb.size) < 200 else 1.0)
        )
    return pictures
