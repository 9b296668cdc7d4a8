"""PoseHighResolutionNet (Sun et al. 2019) with the official parameter names.

The layout (stem, ``layer1``, ``transition1..3``, ``stage2..4``,
``final_layer``) and every parameter name and shape follow the official
implementation, so that official checkpoints such as
``pose_hrnet_w32_256x192.pth`` load with ``strict=True``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from yacs.config import CfgNode as CN

from harness.config import ConfigError
from hrnet.blocks import BLOCKS, BN_MOMENTUM, HighResolutionModule, make_layer

logger = logging.getLogger(__name__)

__all__ = [
    "BLOCKS",
    "MODELS",
    "PoseHighResolutionNet",
    "build_model",
    "init_weights",
    "load_official_checkpoint",
    "load_pretrained",
]


class PoseHighResolutionNet(nn.Module):
    """HRNet pose estimator: NUM_JOINTS heatmaps at 1/4 of the input resolution."""

    def __init__(self, cfg: CN):
        super().__init__()
        extra = cfg.MODEL.EXTRA
        stem = extra.get("STEM_INPLANES", 64)
        stage1 = extra.get("STAGE1", {"BLOCK": "BOTTLENECK", "NUM_BLOCKS": [4], "NUM_CHANNELS": [64]})

        # Two stride-2 3x3 convs bring the input to 1/4 resolution.
        self.conv1 = nn.Conv2d(3, stem, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem, stem, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        block1 = BLOCKS[stage1["BLOCK"]]
        self.layer1 = make_layer(block1, stem, stage1["NUM_CHANNELS"][0], stage1["NUM_BLOCKS"][0])
        channels = [stage1["NUM_CHANNELS"][0] * block1.expansion]

        self.stage_cfgs = [extra[name] for name in ("STAGE2", "STAGE3", "STAGE4")]
        self.transition1, self.stage2, channels = self._transition_and_stage(channels, self.stage_cfgs[0])
        self.transition2, self.stage3, channels = self._transition_and_stage(channels, self.stage_cfgs[1])
        self.transition3, self.stage4, channels = self._transition_and_stage(
            channels, self.stage_cfgs[2], multi_scale_output=False
        )

        kernel = extra.FINAL_CONV_KERNEL
        self.final_layer = nn.Conv2d(
            channels[0], cfg.MODEL.NUM_JOINTS, kernel_size=kernel, stride=1, padding=1 if kernel == 3 else 0
        )
        self.pretrained_layers = list(extra.PRETRAINED_LAYERS)

    def _transition_and_stage(
        self,
        pre_channels: list[int],
        stage_cfg: Mapping,
        multi_scale_output: bool = True,
    ) -> tuple[nn.ModuleList, nn.Sequential, list[int]]:
        block = BLOCKS[stage_cfg["BLOCK"]]
        cur_channels = [c * block.expansion for c in stage_cfg["NUM_CHANNELS"]]
        transition = self._make_transition(pre_channels, cur_channels)
        modules = []
        in_channels = cur_channels
        for i in range(stage_cfg["NUM_MODULES"]):
            # Only the last module of the last stage stops fusing into every branch.
            multi_scale = multi_scale_output or i < stage_cfg["NUM_MODULES"] - 1
            module = HighResolutionModule(
                stage_cfg["NUM_BRANCHES"],
                block,
                stage_cfg["NUM_BLOCKS"],
                in_channels,
                stage_cfg["NUM_CHANNELS"],
                stage_cfg["FUSE_METHOD"],
                multi_scale,
            )
            modules.append(module)
            in_channels = module.get_num_inchannels()
        return transition, nn.Sequential(*modules), in_channels

    @staticmethod
    def _make_transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        """Adapt existing branches whose width changes; derive new lower-resolution
        branches from the lowest existing one with strided 3x3 convs."""
        layers: list[nn.Module | None] = []
        for i, out_channels in enumerate(cur):
            if i < len(pre):
                layers.append(
                    None
                    if out_channels == pre[i]
                    else nn.Sequential(
                        nn.Conv2d(pre[i], out_channels, 3, 1, 1, bias=False),
                        nn.BatchNorm2d(out_channels),
                        nn.ReLU(inplace=True),
                    )
                )
                continue
            convs = []
            for j in range(i + 1 - len(pre)):
                last = j == i - len(pre)
                convs.append(
                    nn.Sequential(
                        nn.Conv2d(pre[-1], out_channels if last else pre[-1], 3, 2, 1, bias=False),
                        nn.BatchNorm2d(out_channels if last else pre[-1]),
                        nn.ReLU(inplace=True),
                    )
                )
            layers.append(nn.Sequential(*convs))
        return nn.ModuleList(layers)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, features: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(transition):
            # New branches start from the lowest-resolution output of the previous stage.
            source = features[i] if i < len(features) else features[-1]
            out.append(source if layer is None else layer(source))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]
        features = self.stage2(self._apply_transition(self.transition1, features))
        features = self.stage3(self._apply_transition(self.transition2, features))
        features = self.stage4(self._apply_transition(self.transition3, features))
        return self.final_layer(features[0])


# MODEL.NAME -> constructor taking the config.
MODELS: dict[str, Callable[[CN], nn.Module]] = {
    "pose_hrnet": PoseHighResolutionNet,
}


def init_weights(model: nn.Module) -> None:
    """The published initialisation: convs N(0, 0.001) with zero bias, BN weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _read_state_dict(path: str, key: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise ConfigError(
            f"config key '{key}': file not found: {path} (no download is attempted; set {key} '' to skip it)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise ConfigError(f"config key '{key}': cannot read checkpoint {path}: {e}") from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"config key '{key}': {path} holds no state_dict (a mapping of tensors)")
    # nn.DataParallel checkpoints prefix every name with "module.".
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_pretrained(
    model: nn.Module, path: str, layers: Sequence[str], key: str = "MODEL.PRETRAINED"
) -> list[str]:
    """Load the entries of ``path`` whose top-level module is in ``layers`` ('*' = all).

    Unlike the official loader, a shape mismatch is an error rather than a silent
    skip. Returns the loaded names.
    """
    state = _read_state_dict(path, key)
    load_all = "*" in layers
    own = model.state_dict()
    selected = {}
    for name, tensor in state.items():
        if not (load_all or name.split(".")[0] in layers) or name not in own:
            continue
        if own[name].shape != tensor.shape:
            raise ConfigError(
                f"config key '{key}': {path}: '{name}' has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(own[name].shape)}"
            )
        selected[name] = tensor
    if not selected:
        raise ConfigError(
            f"config key '{key}': {path} has no entry for MODEL.EXTRA.PRETRAINED_LAYERS {list(layers)}"
        )
    model.load_state_dict(selected, strict=False)
    logger.info("loaded %d tensors from %s", len(selected), path)
    return sorted(selected)


def load_official_checkpoint(model: nn.Module, path: str, key: str = "TEST.MODEL_FILE") -> None:
    """Load a full checkpoint strictly: a bare state_dict or {"state_dict": ...},
    with or without DataParallel's ``module.`` prefixes."""
    state = _read_state_dict(path, key)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ConfigError(f"config key '{key}': {path} does not match the model: {e}") from e


def build_model(cfg: CN) -> nn.Module:
    """The model named by MODEL.NAME, initialised (and loaded) as the config says."""
    name = cfg.MODEL.NAME
    if name not in MODELS:
        raise ConfigError(f"config key 'MODEL.NAME' is {name!r}; choose one of {', '.join(sorted(MODELS))}")
    model = MODELS[name](cfg)
    if cfg.MODEL.INIT_WEIGHTS:
        init_weights(model)
        if cfg.MODEL.PRETRAINED:
            load_pretrained(model, cfg.MODEL.PRETRAINED, cfg.MODEL.EXTRA.PRETRAINED_LAYERS)
    if cfg.TEST.get("MODEL_FILE"):
        load_official_checkpoint(model, cfg.TEST.MODEL_FILE)
    return model
