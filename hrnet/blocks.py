"""HRNet building blocks: residual blocks and the multi-resolution module.

Module and parameter names follow the official PoseHighResolutionNet exactly
(``branches``, ``fuse_layers``, ``downsample`` ...), because official
checkpoints are loaded by name with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# The official code sets this momentum on most BatchNorms and leaves the
# PyTorch default (also 0.1) on the rest; the value is the same either way.
BN_MOMENTUM = 0.1


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def projection(in_planes: int, out_planes: int, stride: int = 1) -> nn.Sequential:
    """1x1 conv + BN shortcut used when a block changes width or stride."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes, momentum=BN_MOMENTUM),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


# Block name in MODEL.EXTRA.STAGEn.BLOCK -> class.
BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "BASIC": BasicBlock,
    "BOTTLENECK": Bottleneck,
}


def make_layer(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, num_blocks: int, stride: int = 1
) -> nn.Sequential:
    """``num_blocks`` blocks; the first one projects when width or stride change."""
    out_planes = planes * block.expansion
    downsample = projection(inplanes, out_planes, stride) if stride != 1 or inplanes != out_planes else None
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out_planes, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches at halving resolutions, then every branch fuses all others.

    Branch ``i`` works at 1/2**i of branch 0's resolution. With
    ``multi_scale_output=False`` only the highest-resolution output is fused
    (the last module of the last stage).
    """

    def __init__(
        self,
        num_branches: int,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: Sequence[int],
        num_inchannels: Sequence[int],
        num_channels: Sequence[int],
        fuse_method: str = "SUM",
        multi_scale_output: bool = True,
    ):
        super().__init__()
        for name, values in (
            ("NUM_BLOCKS", num_blocks),
            ("NUM_CHANNELS", num_channels),
            ("input channels", num_inchannels),
        ):
            if len(values) != num_branches:
                raise ValueError(f"NUM_BRANCHES ({num_branches}) != len({name}) ({len(values)})")
        self.num_branches = num_branches
        self.fuse_method = fuse_method
        self.multi_scale_output = multi_scale_output
        self.branches = nn.ModuleList(
            make_layer(block, num_inchannels[i], num_channels[i], num_blocks[i]) for i in range(num_branches)
        )
        self.num_inchannels = [c * block.expansion for c in num_channels]
        self.fuse_layers = self._make_fuse_layers() if num_branches > 1 else None
        self.relu = nn.ReLU(True)

    def _make_fuse_layers(self) -> nn.ModuleList:
        channels = self.num_inchannels
        rows = []
        for i in range(self.num_branches if self.multi_scale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(self.num_branches):
                if j > i:
                    # Lower resolution -> 1x1 conv to branch i's width, nearest upsample.
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                            nn.BatchNorm2d(channels[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    row.append(self._downsampler(channels[j], channels[i], i - j))
            rows.append(nn.ModuleList(row))
        return nn.ModuleList(rows)

    @staticmethod
    def _downsampler(in_channels: int, out_channels: int, steps: int) -> nn.Sequential:
        # Strided 3x3 convs keep the width until the last one, which has no ReLU
        # because the sum of all branches is activated afterwards.
        convs = []
        for k in range(steps):
            last = k == steps - 1
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, out_channels if last else in_channels, 3, 2, 1, bias=False),
                nn.BatchNorm2d(out_channels if last else in_channels),
            ]
            if not last:
                layers.append(nn.ReLU(True))
            convs.append(nn.Sequential(*layers))
        return nn.Sequential(*convs)

    def get_num_inchannels(self) -> list[int]:
        return list(self.num_inchannels)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(t) for branch, t in zip(self.branches, x, strict=True)]
        if self.fuse_layers is None:
            return x
        fused = []
        for i, row in enumerate(self.fuse_layers):
            y = x[0] if i == 0 else row[0](x[0])
            for j in range(1, self.num_branches):
                y = y + (x[j] if i == j else row[j](x[j]))
            fused.append(self.relu(y))
        return fused
