"""Built-in networks, sized for 2 CPU cores: a small CNN classifier, a small U-Net, and the U-Net guided by clicks."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GuidedUNet", "SmallCNN", "SmallUNet", "build_builtin"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":  # independent of the batch size (segmentation batches are small)
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    return nn.BatchNorm2d(channels)


def _block(c_in: int, c_out: int, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        _norm(norm, c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        _norm(norm, c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four conv blocks with pooling, average pooling to ``pool`` x ``pool`` (2 keeps where in the
    image a finding is - left or right, centre or edge; 1 is global pooling), a linear head (logits).
    """

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 16, pool: int = 2) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(4)]
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [_block(c, w), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c * pool * pool, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallUNet(nn.Module):
    """A U-Net of ``depth`` levels returning per-pixel class logits at the input size."""

    def __init__(
        self, in_channels: int, num_classes: int, base_channels: int = 16, depth: int = 3, norm: str = "batch"
    ) -> None:
        super().__init__()
        widths = [base_channels * 2 ** min(i, 3) for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.down.append(_block(c, w, norm))
            c = w
        self.bottom = _block(c, widths[-1], norm)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.up.append(nn.ConvTranspose2d(w_in, w_skip, 2, stride=2))
            self.merge.append(_block(2 * w_skip, w_skip, norm))
        self.out = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pad_h, pad_w = (-size[0]) % 2 ** len(self.down), (-size[1]) % 2 ** len(self.down)
        if pad_h or pad_w:
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.out(x)[..., : size[0], : size[1]]


class GuidedUNet(nn.Module):
    """One U-Net, two heads: ``in_channels`` + 2 inputs (the image, then a positive and a negative click map)
    and ``num_classes`` + 1 outputs (the class logits, then the clicked object's logit).

    ``forward(x)`` with the image alone appends empty click maps and returns the class logits only, so
    evaluation, prediction and flips see a plain segmentation network; ``forward(x, guidance)`` returns
    all the logits (what a training step needs in one pass); :meth:`propose` the object's.
    """

    def __init__(
        self, in_channels: int, num_classes: int, base_channels: int = 16, depth: int = 3, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.unet = SmallUNet(in_channels + 2, num_classes + 1, base_channels, depth, norm)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor | None = None) -> torch.Tensor:
        if guidance is None:
            empty = _layout_of(x, x.new_zeros((x.shape[0], 2, *x.shape[2:])))
            return self.unet(torch.cat([x, empty], dim=1))[:, : self.num_classes]
        return self.unet(torch.cat([x, _layout_of(x, guidance.to(x.dtype))], dim=1))

    def propose(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """(B, H, W) logits of the object the clicks (``guidance``: (B, 2, H, W)) point at."""
        return self.forward(x, guidance)[:, self.num_classes]


def _layout_of(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``other`` in the memory layout of ``x``: a concatenation of the two keeps channels-last (2x faster on CPUs)."""
    if x.is_contiguous(memory_format=torch.channels_last):
        return other.contiguous(memory_format=torch.channels_last)
    return other.contiguous()


def build_builtin(spec) -> nn.Module:
    """The built-in network a (resolved) spec names."""
    if spec.architecture == "unet":
        unet = GuidedUNet if spec.guidance else SmallUNet
        return unet(spec.in_channels, spec.num_classes, spec.base_channels, spec.depth or 3, spec.norm or "batch")
    if spec.architecture == "cnn":
        return SmallCNN(spec.in_channels, spec.num_classes, spec.base_channels, pool=1 if spec.fit == "stretch" else 2)
    raise ValueError(f"unknown built-in architecture {spec.architecture!r} (built in: 'cnn', 'unet')")
