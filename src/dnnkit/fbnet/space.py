"""FBNet's layer-wise search space: slots of a macro-architecture and the candidate blocks.

Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture
Search", CVPR 2019 (arXiv:1812.03443), Table 1 (macro-architecture) and Table 2 (candidates).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from dnnkit.core.hooks import eval_mode, registered_hooks
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Real,
    Sequence_,
    Str,
    check_int,
    check_interval,
    param_error,
    suggest,
    validate_params,
)
from dnnkit.fbnet.shift import ShiftConvBlock

__all__ = ["LayerSlot", "BlockFactory", "FBNetBlock", "fbnet_candidates", "fbnet_macro",
           "count_macs", "FBNET_C_ARCH", "CANDIDATE_NAMES"]

BlockFactory = Callable[[int, int, int], nn.Module]
"""``(c_in, c_out, stride) -> nn.Module`` mapping ``[N, c_in, H, W]`` to
``[N, c_out, ceil(H/stride), ceil(W/stride)]``."""

CANDIDATE_NAMES = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6",
                   "skip")
SHIFT_NAMES = ("shift_e1", "shift_e3")


@validate_params({"c_in": Int(1, 1 << 16), "c_out": Int(1, 1 << 16), "stride": Int(1, 64),
                  "input_hw": Sequence_(Int(1, 1 << 14), min_len=2, max_len=2)})
@dataclass(frozen=True)
class LayerSlot:
    """One searchable layer: input channels, output channels, stride, input spatial size."""

    c_in: int
    c_out: int
    stride: int
    input_hw: tuple[int, int]

    def __post_init__(self) -> None:
        where = "LayerSlot"
        check_int(self.c_in, "c_in", 1, 1 << 16, where=where)
        check_int(self.c_out, "c_out", 1, 1 << 16, where=where)
        check_int(self.stride, "stride", 1, 64, where=where)
        hw = self.input_hw
        if not (isinstance(hw, (tuple, list)) and len(hw) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1 << 14
                        for v in hw)):
            raise ValueError(param_error("input_hw", where, "a pair of positive ints", hw))
        object.__setattr__(self, "input_hw", (int(hw[0]), int(hw[1])))

    @property
    def output_hw(self) -> tuple[int, int]:
        """``ceil(H / stride), ceil(W / stride)`` (odd kernels with ``k // 2`` padding)."""
        h, w = self.input_hw
        return (-(-h // self.stride), -(-w // self.stride))

    @validate_params({"batch": Int(1, 1 << 20)}, where="fbnet.LayerSlot.output_shape")
    def output_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self.c_out, *self.output_hw)


class _ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class FBNetBlock(nn.Module):
    """FBNet candidate block (FBNet Table 2 / Fig. 3, MobileNetV2-style inverted residual).

    1x1 group conv ``c_in -> e*c_in`` -> BN -> ReLU -> [channel shuffle if ``groups == 2``] ->
    ``k x k`` depthwise conv (stride) -> BN -> ReLU -> 1x1 group conv ``-> c_out`` -> BN; residual
    add iff ``stride == 1`` and ``c_in == c_out``. Convs have no bias; ``e = 1`` keeps the first
    1x1 conv (as FBNet and timm do).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, kernel_size: int = 3,
                 expansion: int = 1, groups: int = 1):
        super().__init__()
        where = "fbnet.FBNetBlock"
        mid = c_in * expansion
        for name, val in (("c_in", c_in), ("c_out", c_out)):
            if val % groups:
                raise ValueError(param_error(name, where, f"divisible by groups={groups}", val))
        layers: list[nn.Module] = [nn.Conv2d(c_in, mid, 1, groups=groups, bias=False),
                                   nn.BatchNorm2d(mid), nn.ReLU(inplace=True)]
        if groups > 1:
            layers.append(_ChannelShuffle(groups))
        layers += [nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=mid,
                             bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                   nn.Conv2d(mid, c_out, 1, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _fbnet_block(c_in: int, c_out: int, stride: int, *, kernel_size: int, expansion: int,
                 groups: int) -> nn.Module:
    return FBNetBlock(c_in, c_out, stride, kernel_size, expansion, groups)


def _skip(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity, or a 1x1 conv + BN projection where the slot changes stride or channels."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


def _shift_block(c_in: int, c_out: int, stride: int, *, expansion: int) -> nn.Module:
    return ShiftConvBlock(c_in, c_out, stride, float(expansion), kernel_size=3)


@validate_params({"include_shift": Instance(bool), "only": Optional_(Sequence_(Str()))})
def fbnet_candidates(include_shift: bool = False,
                     only: Sequence[str] | None = None) -> dict[str, BlockFactory]:
    """The candidate blocks of FBNet's Table 2 (``k{3,5}_e{1,3,6}``, ``k{3,5}_e1_g2``, ``skip``).

    Parameters
    ----------
    include_shift : bool
        Add ``shift_e1`` and ``shift_e3`` (CSC blocks, :class:`ShiftConvBlock`).
    only : sequence of str, optional
        Keep these names, in this order (a reduced search space).

    Returns
    -------
    dict of str to BlockFactory
        ``factory(c_in, c_out, stride) -> nn.Module``; ``skip`` becomes a 1x1 projection at a
        slot that changes shape.

    Raises
    ------
    KeyError
        An unknown name in ``only`` (with close matches).
    """
    out: dict[str, BlockFactory] = {}
    for name in CANDIDATE_NAMES:
        if name == "skip":
            out[name] = _skip
            continue
        parts = name.split("_")
        k, e = int(parts[0][1:]), int(parts[1][1:])
        g = int(parts[2][1:]) if len(parts) == 3 else 1
        out[name] = functools.partial(_fbnet_block, kernel_size=k, expansion=e, groups=g)
    if include_shift or (only is not None and any(n in SHIFT_NAMES for n in only)):
        for name in SHIFT_NAMES:
            out[name] = functools.partial(_shift_block, expansion=int(name[-1]))
    if only is None:
        if not include_shift:
            for name in SHIFT_NAMES:
                out.pop(name, None)
        return out
    if isinstance(only, str) or not isinstance(only, Sequence) or not only:
        raise ValueError(param_error("only", "fbnet.fbnet_candidates",
                                     "a non-empty sequence of candidate names", only))
    picked = {}
    for name in only:
        if name not in out:
            raise KeyError(f"Unknown candidate {name!r} in 'only' of fbnet.fbnet_candidates; known:"
                           f" {list(out)}.{suggest(str(name), out)}")
        picked[name] = out[name]
    return picked


def _ch(c: int, width_mult: float) -> int:
    """Round ``c * width_mult`` to a multiple of 8 (at least 8), never down by more than 10 %."""
    v = max(8, int(c * width_mult + 4) // 8 * 8)
    return v + 8 if v < 0.9 * c * width_mult else v


# FBNet Table 1: (channels, repeats, stride) of the searchable stages
FBNET_STAGES = ((16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2),
                (352, 1, 1))

# FBNet-C's 22 choices (stage by stage, as in timm's / mobile-vision's FBNet-C model definition)
FBNET_C_ARCH = ("k3_e1",
                "k3_e6", "k3_e1", "k3_e1", "skip",
                "k5_e6", "k5_e3", "k5_e6", "k3_e6",
                "k5_e6", "k5_e3", "k5_e6", "k5_e6",
                "k5_e6", "k5_e6", "k5_e6", "k5_e3",
                "k5_e6", "k5_e6", "k5_e6", "k5_e6",
                "k3_e6")


@validate_params({"input_size": Int(8, 4096), "num_classes": Int(1, 1 << 20),
                  "width_mult": Real(0.0, 16.0, closed="right"), "in_channels": Int(1, 1 << 12),
                  "head_channels": Int(1, 1 << 16)})
def fbnet_macro(input_size: int = 224, num_classes: int = 1000, width_mult: float = 1.0, *,
                in_channels: int = 3, head_channels: int = 1984
                ) -> tuple[nn.Module, list[LayerSlot], nn.Module]:
    """FBNet's ImageNet macro-architecture (FBNet Table 1): stem, 22 slots, head.

    Stem: 3x3 conv (stride 2) -> BN -> ReLU to 16 channels. Head: 1x1 conv to ``head_channels``
    (1504 for FBNet-A, 1984 for B and C) -> BN -> ReLU -> global average pool -> FC.

    Returns
    -------
    stem : nn.Module
    slots : list of LayerSlot
    head : nn.Module
    """
    where = "fbnet.fbnet_macro"
    check_int(input_size, "input_size", 8, 4096, where=where)
    check_int(num_classes, "num_classes", 1, 1 << 20, where=where)
    check_interval(width_mult, "width_mult", 0.0, 16.0, closed="right", where=where)
    check_int(in_channels, "in_channels", 1, 1 << 12, where=where)
    check_int(head_channels, "head_channels", 1, 1 << 16, where=where)
    c0 = _ch(16, width_mult)
    stem = nn.Sequential(nn.Conv2d(in_channels, c0, 3, 2, 1, bias=False), nn.BatchNorm2d(c0),
                         nn.ReLU(inplace=True))
    hw = -(-input_size // 2)
    slots: list[LayerSlot] = []
    c = c0
    for f, n, s in FBNET_STAGES:
        co = _ch(f, width_mult)
        for i in range(n):
            stride = s if i == 0 else 1
            slots.append(LayerSlot(c, co, stride, (hw, hw)))
            hw = -(-hw // stride)
            c = co
    head = nn.Sequential(nn.Conv2d(c, head_channels, 1, bias=False),
                         nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(head_channels,
                                                                          num_classes))
    return stem, slots, head


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of ``module`` on one input of ``input_shape`` (batch included).

    Counts ``nn.Conv2d`` (``out.numel() * c_in/groups * kh * kw``) and ``nn.Linear``
    (``out.numel() * in_features``); BN, ReLU, shifts, pooling and additions count 0. Runs the
    module once in eval mode under ``no_grad``; hooks and modes are restored.
    """
    total = [0]

    def conv_hook(m, _inp, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def lin_hook(m, _inp, out):
        total[0] += out.numel() * m.in_features

    p = next(iter(module.parameters()), None)
    x = torch.zeros(*input_shape, device=p.device if p is not None else "cpu",
                    dtype=p.dtype if p is not None else torch.float32)
    with registered_hooks() as hs, eval_mode(module), torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                hs.append(m.register_forward_hook(conv_hook))
            elif isinstance(m, nn.Linear):
                hs.append(m.register_forward_hook(lin_hook))
        module(x)
    return int(total[0])


def check_candidates(candidates: Mapping[str, BlockFactory], where: str) -> None:
    if not isinstance(candidates, Mapping) or not candidates:
        raise TypeError(param_error("candidates", where, "a non-empty mapping of name -> factory",
                                    type(candidates).__name__))
    for k, f in candidates.items():
        if not isinstance(k, str) or not callable(f):
            raise TypeError(param_error("candidates", where, "a mapping of str -> callable",
                                        f"{k!r}: {type(f).__name__}"))


def check_slots(slots: Sequence[LayerSlot], where: str) -> list[LayerSlot]:
    if isinstance(slots, LayerSlot) or not isinstance(slots, Sequence) or not slots:
        raise TypeError(param_error("slots", where, "a non-empty sequence of LayerSlot",
                                    type(slots).__name__))
    for s in slots:
        if not isinstance(s, LayerSlot):
            raise TypeError(param_error("slots", where, "a sequence of LayerSlot",
                                        type(s).__name__))
    return list(slots)


def build_checked(factory: BlockFactory, name: str, slot: LayerSlot, index: int) -> nn.Module:
    """Build a candidate for a slot and check its output shape on a probe input."""
    block = factory(slot.c_in, slot.c_out, slot.stride)
    if not isinstance(block, nn.Module):
        raise TypeError(f"Candidate {name!r} at slot {index} returned {type(block).__name__}, "
                        "not an nn.Module.")
    x = torch.zeros(2, slot.c_in, *slot.input_hw)
    with eval_mode(block), torch.no_grad():
        y = block(x)
    want = slot.output_shape(2)
    if tuple(y.shape) != want:
        raise ValueError(f"Candidate {name!r} does not fit slot {index} ({slot}): output shape "
                         f"{tuple(y.shape)[1:]} instead of {want[1:]}.")
    return block
