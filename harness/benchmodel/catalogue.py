"""The models bench-model knows: FER classifiers, HRNet W32/W48, and the tiny test models.

Each entry builds an ``nn.Module`` from a run config (the same builders training
uses) and says which input sizes it is measured at by default. Weights are random
(PyTorch's default init, see :func:`prepare_for_benchmark`): speed does not depend
on them, and the ONNX/OpenVINO output checks then compare outputs of order one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str  # fer | pose
    build: Callable[[], nn.Module]
    in_channels: int
    sizes: tuple[tuple[int, int], ...]  # (height, width) measured by default


def _fer(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from efficientnet.model import build_fer_model
        from harness.config import load_config

        return build_fer_model(load_config(None, ["TASK", "fer", "MODEL.NAME", name]))

    return build


def _pose(config: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from harness.config import load_config
        from hrnet.model import build_model

        return build_model(load_config(CONFIGS / "pose" / config, ["MODEL.PRETRAINED", ""]))

    return build


def _catalogue() -> dict[str, ModelEntry]:
    from efficientnet.backbones import BACKBONES

    entries: dict[str, ModelEntry] = {}
    for name in sorted(BACKBONES) + ["tiny_cnn"]:
        entries[name] = ModelEntry(name, "fer", _fer(name), 1, ((48, 48),))
    for width in (32, 48):
        # One entry per width; the size picks the config (sigma and heatmap size differ only).
        entries[f"hrnet_w{width}"] = ModelEntry(
            f"hrnet_w{width}", "pose", _pose(f"w{width}_256x192.yaml"), 3, ((256, 192), (384, 288))
        )
    entries["hrnet_tiny"] = ModelEntry("hrnet_tiny", "pose", _pose("tiny_synthetic.yaml"), 3, ((128, 96),))
    return entries


# Named groups for --models.
GROUPS = {
    "fer": (
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
        "efficientnet_b3",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "shufflenet_v2_x1_0",
        "squeezenet1_1",
        "mnasnet0_5",
        "resnet18",
        "resnet50",
    ),
    "fer-small": (
        "efficientnet_b0",
        "mobilenet_v3_small",
        "shufflenet_v2_x1_0",
        "squeezenet1_1",
        "mnasnet0_5",
        "resnet18",
    ),
    "hrnet": ("hrnet_w32", "hrnet_w48"),
    "tiny": ("tiny_cnn", "hrnet_tiny"),
}


def resolve_models(spec: str) -> list[ModelEntry]:
    """``spec``: comma-separated model names and group names (fer, fer-small, hrnet, tiny)."""
    catalogue = _catalogue()
    names: list[str] = []
    for token in [t.strip() for t in spec.split(",") if t.strip()]:
        for name in GROUPS.get(token, (token,)):
            if name not in catalogue:
                raise ValueError(
                    f"--models: unknown model {name!r}; choose from {', '.join(catalogue)} "
                    f"or a group ({', '.join(GROUPS)})"
                )
            if name not in names:
                names.append(name)
    return [catalogue[n] for n in names]


def entry_from_config(cfg: object) -> ModelEntry:
    """The model of a run config (a sweep job benchmarks its own run's model)."""
    from harness.tasks import get_task

    task = get_task(cfg.TASK)(cfg)  # type: ignore[attr-defined]
    if cfg.TASK == "fer":  # type: ignore[attr-defined]
        side = cfg.DATASET.IMAGE_SIZE  # type: ignore[attr-defined]
        return ModelEntry(
            cfg.MODEL.NAME,
            "fer",
            task.build_model,
            cfg.MODEL.IN_CHANNELS,  # type: ignore
            ((side, side),),
        )
    width, height = cfg.MODEL.IMAGE_SIZE  # type: ignore[attr-defined]
    return ModelEntry(cfg.MODEL.NAME, "pose", task.build_model, 3, ((height, width),))


def pose_config_for(entry: ModelEntry, size: tuple[int, int]) -> ModelEntry:
    """HRNet at 384x288 uses its own config (the architecture is the same)."""
    if entry.family != "pose" or entry.name == "hrnet_tiny" or size != (384, 288):
        return entry
    width = entry.name.rsplit("w", 1)[-1]
    return ModelEntry(entry.name, "pose", _pose(f"w{width}_384x288.yaml"), 3, entry.sizes)


def prepare_for_benchmark(model: nn.Module) -> nn.Module:
    """Eval mode, with every conv and linear layer at PyTorch's default init: the
    zero heads of the FER backbones and HRNet's std-0.001 init give outputs so small
    that an output check against PyTorch would pass anything. Timing is unchanged."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                module.reset_parameters()
    return model.eval()
