"""FER models: the torchvision classifiers of ``efficientnet.backbones`` and a tiny CNN for tests."""

from __future__ import annotations

import os

import torch
from torch import nn
from yacs.config import CfgNode as CN

from efficientnet.backbones import BACKBONES, build_backbone
from harness.config import ConfigError

FER_MODELS = tuple(sorted(BACKBONES)) + ("tiny_cnn",)


class TinyCNN(nn.Module):
    """A few-thousand-parameter CNN for fast CPU tests of the engine: BN-free, with
    dropout before the classifier (MODEL.DROPOUT) so RNG handling is exercised."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]

        # Flattening a 6x6 map keeps where a feature is (brow vs mouth), which global pooling loses.
        self.features = nn.Sequential(
            *block(in_channels, width),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(6),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(2 * width * 36, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_pretrained(model: nn.Module, path: str, in_channels: int) -> list[str]:
    """Load a local torchvision weights file; the RGB stem is summed to one channel
    and a head of another class count is left at its init. Returns skipped keys."""
    if not os.path.isfile(path):
        raise ConfigError(f"MODEL.PRETRAINED: weights file not found: {path} (runs never download weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"MODEL.PRETRAINED: cannot read {path}: {e}") from e
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    skipped = []
    for key, value in list(state.items()):
        if key in own and value.dim() == 4 and value.shape[1] == 3 and own[key].shape[1] == in_channels == 1:
            state[key] = value.sum(dim=1, keepdim=True)
        if key not in own or own[key].shape != state[key].shape:
            skipped.append(key)
            state.pop(key)
    model.load_state_dict(state, strict=False)
    return skipped


def build_fer_model(cfg: CN) -> nn.Module:
    m = cfg.MODEL
    if m.NAME == "tiny_cnn":
        return TinyCNN(m.IN_CHANNELS, m.NUM_CLASSES, m.DROPOUT)
    if m.NAME not in BACKBONES:
        raise ConfigError(f"MODEL.NAME {m.NAME!r} is not a FER model; choose one of {', '.join(FER_MODELS)}")
    model = build_backbone(
        m.NAME, m.NUM_CLASSES, m.IN_CHANNELS, {"DROPOUT": m.DROPOUT, "STOCHASTIC_DEPTH": m.STOCHASTIC_DEPTH}
    )
    if m.PRETRAINED:
        load_pretrained(model, m.PRETRAINED, m.IN_CHANNELS)
    return model
