"""FER models: torchvision EfficientNets with a grayscale stem, and a tiny CNN for tests."""
from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torchvision.models as tvm
from torch import nn
from yacs.config import CfgNode as CN

from harness.config import ConfigError

EFFICIENTNETS: dict[str, Callable[..., nn.Module]] = {
    **{f"efficientnet_b{i}": getattr(tvm, f"efficientnet_b{i}") for i in range(8)},
    "efficientnet_v2_s": tvm.efficientnet_v2_s,
    "efficientnet_v2_m": tvm.efficientnet_v2_m,
}


class TinyCNN(nn.Module):
    """A few-thousand-parameter CNN for fast CPU tests of the engine: BN-free, with
    dropout before the classifier (MODEL.DROPOUT) so RNG handling is exercised."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]

        # Flattening a 6x6 map keeps where a feature is (brow vs mouth), which global pooling loses.
        self.features = nn.Sequential(*block(in_channels, width), *block(width, 2 * width),
                                      *block(2 * width, 2 * width), nn.AdaptiveAvgPool2d(6), nn.Flatten(),
                                      nn.Dropout(dropout))
        self.classifier = nn.Linear(2 * width * 36, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _grayscale_stem(model: nn.Module, in_channels: int) -> None:
    """Swap the RGB stem conv for one taking ``in_channels``: the loader then ships
    one channel instead of three copies."""
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride,
                                     stem.padding, bias=stem.bias is not None)


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
    if m.NAME not in EFFICIENTNETS:
        raise ConfigError(f"MODEL.NAME {m.NAME!r} is not a FER model; choose one of "
                          f"{', '.join(sorted(EFFICIENTNETS) + ['tiny_cnn'])}")
    model = EFFICIENTNETS[m.NAME](weights=None, num_classes=m.NUM_CLASSES, dropout=m.DROPOUT,
                                  stochastic_depth_prob=m.STOCHASTIC_DEPTH)
    # A zero head starts at loss ln(7): torchvision's uniform init starts near 4 and stalls
    # short from-scratch runs for epochs.
    nn.init.zeros_(model.classifier[-1].weight)
    nn.init.zeros_(model.classifier[-1].bias)
    if m.IN_CHANNELS != 3:
        _grayscale_stem(model, m.IN_CHANNELS)
    if m.PRETRAINED:
        load_pretrained(model, m.PRETRAINED, m.IN_CHANNELS)
    return model
