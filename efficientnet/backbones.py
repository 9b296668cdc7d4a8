"""The FER backbone registry: MODEL.NAME -> a torchvision classifier adapted to FER.

Every entry is built with ``weights=None`` (nothing is ever downloaded) and
adapted in two places:

- **head**: the last classifier layer outputs ``MODEL.NUM_CLASSES`` (7) logits;
  a Linear head starts at zero so a from-scratch run starts at loss ln(7).
- **stem**: with ``MODEL.IN_CHANNELS`` 1 the first convolution is rebuilt for one
  input channel, so the loader ships grey pixels once instead of three copies. A
  local ImageNet file given in ``MODEL.PRETRAINED`` is summed over its RGB axis into
  that stem (``efficientnet.model.load_pretrained``), which gives the same output as
  the RGB stem on a grey image replicated three times. ``MODEL.IN_CHANNELS 3``
  keeps the RGB stem unchanged and a forward pre-hook replicates a one-channel
  input three times on the device (state_dict names are unchanged either way).

Names are looked up in a dict (never ``eval``); ``BACKBONES`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Backbone:
    """How to build one torchvision classifier and where its stem and head live."""

    builder_name: str  # the torchvision.models function; imported when the model is built
    stem: str  # dotted path of the first Conv2d
    head: str  # dotted path of the last classifier layer (Linear, or SqueezeNet's 1x1 Conv2d)
    # Constructor keyword -> config key under MODEL, for the regularisers the model accepts.
    options: dict[str, str] = field(default_factory=dict)

    @property
    def builder(self) -> Callable[..., nn.Module]:
        # torchvision is imported when a torchvision model is built: the tiny CNN's runs and
        # their ranks never pay for it.
        import torchvision.models

        return getattr(torchvision.models, self.builder_name)


_DROPOUT = {"dropout": "DROPOUT"}
_EFFNET_OPTIONS = {"dropout": "DROPOUT", "stochastic_depth_prob": "STOCHASTIC_DEPTH"}

BACKBONES: dict[str, Backbone] = {
    **{
        f"efficientnet_b{i}": Backbone(f"efficientnet_b{i}", "features.0.0", "classifier.1", _EFFNET_OPTIONS)
        for i in range(8)
    },
    "efficientnet_v2_s": Backbone("efficientnet_v2_s", "features.0.0", "classifier.1", _EFFNET_OPTIONS),
    "efficientnet_v2_m": Backbone("efficientnet_v2_m", "features.0.0", "classifier.1", _EFFNET_OPTIONS),
    "mobilenet_v2": Backbone("mobilenet_v2", "features.0.0", "classifier.1", _DROPOUT),
    "mobilenet_v3_small": Backbone("mobilenet_v3_small", "features.0.0", "classifier.3", _DROPOUT),
    "mobilenet_v3_large": Backbone("mobilenet_v3_large", "features.0.0", "classifier.3", _DROPOUT),
    "shufflenet_v2_x1_0": Backbone("shufflenet_v2_x1_0", "conv1.0", "fc"),
    "squeezenet1_1": Backbone("squeezenet1_1", "features.0", "classifier.1", _DROPOUT),
    "mnasnet0_5": Backbone("mnasnet0_5", "layers.0", "classifier.1", _DROPOUT),
    "resnet18": Backbone("resnet18", "conv1", "fc"),
    "resnet50": Backbone("resnet50", "conv1", "fc"),
}


def _parent_and_name(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    *parents, leaf = path.split(".")
    module = model
    for part in parents:
        module = module.get_submodule(part)
    return module, leaf


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, leaf = _parent_and_name(model, path)
    if leaf.isdigit():
        parent[int(leaf)] = module
    else:
        setattr(parent, leaf, module)


def grey_stem(model: nn.Module, path: str, in_channels: int) -> None:
    """Rebuild the stem conv at ``path`` for ``in_channels`` inputs (same geometry)."""
    stem = _get(model, path)
    if not isinstance(stem, nn.Conv2d):
        raise TypeError(f"stem {path} is a {type(stem).__name__}, expected Conv2d")
    _set(
        model,
        path,
        nn.Conv2d(
            in_channels,
            stem.out_channels,
            stem.kernel_size,
            stem.stride,
            stem.padding,
            dilation=stem.dilation,
            groups=stem.groups,
            bias=stem.bias is not None,
        ),
    )


def build_backbone(name: str, num_classes: int, in_channels: int, settings: dict[str, Any]) -> nn.Module:
    """The registered classifier ``name`` with a ``num_classes`` head and an
    ``in_channels`` stem. ``settings``: MODEL keys (DROPOUT, STOCHASTIC_DEPTH)."""
    entry = BACKBONES[name]
    kwargs = {arg: settings[key] for arg, key in entry.options.items() if key in settings}
    model = entry.builder(weights=None, num_classes=num_classes, **kwargs)
    head = _get(model, entry.head)
    if isinstance(head, nn.Linear):
        # torchvision's uniform init starts near loss 4 and stalls short from-scratch runs.
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    # SqueezeNet's head is a 1x1 conv followed by ReLU: a zero init would leave it without gradient.
    if in_channels != 3:
        grey_stem(model, entry.stem, in_channels)
    else:
        model.register_forward_pre_hook(replicate_grey)
    return model


def replicate_grey(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook of an RGB-stem model: a (N, 1, H, W) batch becomes three equal channels."""
    x = args[0]
    if x.dim() == 4 and x.shape[1] == 1:
        return (x.expand(-1, 3, -1, -1), *args[1:])
    return None
