"""Victim zoo: the compact-CNN building blocks, random victims and the hardened MobileNet-V1.

Every block is an ``nn.Module`` with a fixed, documented forward so that
:func:`dnnkit.deeppeep.ground_truth_blocks` can read its type and hyper-parameters from the
module structure. The defence (Jha et al. 2020, section on "Secure MobileNet-V1"; our reading,
see ``docs/deeppeep.md``) is :func:`harden_depthwise`: every depthwise 3x3 convolution becomes a
grouped convolution with a constant group width.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from dnnkit.core.models import mobilenet_v1
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Instance,
    Int,
    Options,
    Real,
    Seed,
    Sequence_,
    param_error,
    validate_params,
)

__all__ = ["ConvBNAct", "DepthwiseSeparable", "InvertedResidual", "Fire", "ShuffleUnit",
           "random_compact_cnn", "secure_mobilenet_v1", "harden_depthwise", "BLOCK_TYPES"]

#: block types a victim can be built from (and stage 1 can answer, plus "unknown")
BLOCK_TYPES = ("standard", "dwsep", "grouped", "inverted_residual", "fire", "shuffle")


class ConvBNAct(nn.Sequential):
    """Conv(k) -> BatchNorm -> ReLU (or ReLU6, or nothing): the "standard" block."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: str = "relu"):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if act == "relu":
            layers.append(nn.ReLU(inplace=True))
        elif act == "relu6":
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class DepthwiseSeparable(nn.Module):
    """MobileNet-V1 block: 3x3 conv with ``groups`` (= channels: depthwise) -> 1x1 pointwise.

    ``groups < cin`` gives the grouped variant used by the defence.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int | None = None):
        super().__init__()
        self.groups = cin if groups is None else groups
        self.dw = ConvBNAct(cin, cin, 3, stride, self.groups)
        self.pw = ConvBNAct(cin, cout, 1)

    def forward(self, x):
        return self.pw(self.dw(x))


class InvertedResidual(nn.Module):
    """MobileNet-V2 bottleneck: [1x1 expand, ReLU6] -> 3x3 depthwise, ReLU6 -> 1x1 project
    (linear), residual add when ``stride == 1 and cin == cout``; no expand conv when t = 1."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expansion: int = 6):
        super().__init__()
        self.expansion = expansion
        hid = cin * expansion
        self.expand = ConvBNAct(cin, hid, 1, act="relu6") if expansion != 1 else None
        self.dw = ConvBNAct(hid, hid, 3, stride, hid, act="relu6")
        self.project = ConvBNAct(hid, cout, 1, act="none")
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        return x + y if self.residual else y


class Fire(nn.Module):
    """SqueezeNet Fire module: 1x1 squeeze -> {1x1 expand, 3x3 expand} -> concatenation."""

    def __init__(self, cin: int, squeeze: int, expand1: int, expand3: int):
        super().__init__()
        self.squeeze = ConvBNAct(cin, squeeze, 1)
        self.expand1 = ConvBNAct(squeeze, expand1, 1)
        self.expand3 = ConvBNAct(squeeze, expand3, 3)

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], 1)


class ShuffleUnit(nn.Module):
    """ShuffleNet-V1 unit (stride 1): grouped 1x1 -> channel shuffle -> 3x3 depthwise ->
    grouped 1x1 (linear) -> residual add, ReLU."""

    def __init__(self, channels: int, groups: int = 4, bottleneck: int = 4):
        super().__init__()
        mid = max(groups, channels // bottleneck // groups * groups)
        self.groups = groups
        self.gconv1 = ConvBNAct(channels, mid, 1, groups=groups)
        self.dw = ConvBNAct(mid, mid, 3, 1, mid, act="none")
        self.gconv2 = ConvBNAct(mid, channels, 1, groups=groups, act="none")
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.gconv1(x)
        b, c, h, w = y.shape
        y = y.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
        y = self.gconv2(self.dw(y))
        return self.relu(x + y)


@validate_params({
    "seed": Seed(), "n_blocks": Int(1, 64), "in_channels": Int(1, 4096),
    "num_classes": Int(1, 100_000), "block_types": Sequence_(Options(*BLOCK_TYPES)),
    "channels": Sequence_(Int(4, 4096)), "expansions": Sequence_(Int(1, 8)),
    "max_stride2": Int(0, 64)}, where="deeppeep.random_compact_cnn")
def random_compact_cnn(seed: int, n_blocks: int = 6, *, in_channels: int = 3,
                       num_classes: int = 10,
                       block_types: Sequence[str] = ("standard", "dwsep", "inverted_residual",
                                                     "fire"),
                       channels: Sequence[int] = (16, 32, 64, 128),
                       expansions: Sequence[int] = (1, 6), max_stride2: int = 2) -> nn.Sequential:
    """A random compact CNN: a 3x3 stem, ``n_blocks`` random blocks, pooling and a linear head.

    Parameters
    ----------
    seed : int
        Seeds the choice of block types, channels, expansions and stride-2 positions (weights
        are PyTorch's default initialisation under the caller's RNG; latency does not depend on
        them).
    n_blocks : int
        Number of blocks after the stem.
    block_types, channels, expansions
        The menus the blocks are drawn from (``block_types`` from :data:`BLOCK_TYPES`).
    max_stride2 : int
        At most this many blocks (after the stem) have stride 2.

    Returns
    -------
    nn.Sequential
        ``stem``, ``b1`` ... ``b{n}``, ``pool``, ``flatten``, ``fc``.
    """
    where = "deeppeep.random_compact_cnn"
    if any(int(c) % 4 for c in channels):
        raise ValueError(param_error("channels", where, "multiples of 4", tuple(channels)))
    g = make_generator(seed)

    def pick(seq):
        return seq[int(torch.randint(len(seq), (1,), generator=g))]

    stride2 = set(torch.randperm(n_blocks, generator=g)[:max_stride2].tolist())
    c = pick(list(channels))
    layers: list[tuple[str, nn.Module]] = [("stem", ConvBNAct(in_channels, c, 3))]
    for i in range(n_blocks):
        kind = pick(list(block_types))
        cout = pick(list(channels))
        s = 2 if i in stride2 else 1
        if kind == "standard":
            blk = ConvBNAct(c, cout, 3, s)
        elif kind == "dwsep":
            blk = DepthwiseSeparable(c, cout, s)
        elif kind == "grouped":
            gw = pick([w for w in (4, 8, 16) if c % w == 0 and w < c] or [1])
            blk = DepthwiseSeparable(c, cout, s, groups=c // gw)
        elif kind == "inverted_residual":
            blk = InvertedResidual(c, cout, s, pick(list(expansions)))
        elif kind == "fire":
            sq = max(4, cout // 4)
            blk = Fire(c, sq, cout // 2, cout // 2)
        else:  # shuffle: channel-preserving, stride 1
            gr = pick([q for q in (2, 4) if c % (4 * q) == 0] or [1])
            blk = ShuffleUnit(c, gr)
            cout = c
        layers.append((f"b{i + 1}", blk))
        c = cout
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
               ("fc", nn.Linear(c, num_classes))]
    return nn.Sequential(OrderedDict(layers))


@validate_params({"model": Instance(nn.Module), "group_width": Int(1, 4096)},
                 where="deeppeep.harden_depthwise")
def harden_depthwise(model: nn.Module, group_width: int = 8) -> nn.Module:
    """The defence as a transform: a copy of ``model`` whose depthwise 3x3 convolutions are
    grouped convolutions with ``group_width`` channels per group (``C // group_width`` groups).

    The user's model is not modified (the copy keeps its device and dtype; the replaced
    convolutions get fresh weights, since the weight shape changes). A layer with
    ``C <= group_width`` channels becomes a single group (a standard convolution).
    """
    out = copy.deepcopy(model)
    for parent in out.modules():
        for name, m in list(parent.named_children()):
            if (isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
                    == m.out_channels and m.kernel_size != (1, 1)):
                c = m.in_channels
                groups = max(1, c // group_width)
                while c % groups:
                    groups -= 1
                new = nn.Conv2d(c, c, m.kernel_size, m.stride, m.padding, m.dilation, groups,
                                m.bias is not None, m.padding_mode,
                                device=m.weight.device, dtype=m.weight.dtype)
                setattr(parent, name, new)
                if isinstance(parent, DepthwiseSeparable):
                    parent.groups = groups
    return out


@validate_params({"width": Real(0.0, 4.0, closed="right"), "group_width": Int(1, 4096),
                  "num_classes": Int(1, 100_000), "in_channels": Int(1, 4096)},
                 where="deeppeep.secure_mobilenet_v1")
def secure_mobilenet_v1(width: float = 1.0, group_width: int = 8, num_classes: int = 10, *,
                        in_channels: int = 3) -> nn.Sequential:
    """MobileNet-V1 (``dnnkit.core.models.mobilenet_v1``) with every depthwise conv replaced by a
    grouped conv of ``group_width`` channels per group (our reading of "Secure MobileNet-V1")."""
    return mobilenet_v1(num_classes, width_mult=width, in_channels=in_channels,
                        groups_per_depthwise=group_width)
