"""Small reference networks shared by the paper modules."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dnnkit.core.validation import check_int, check_interval

__all__ = ["mlp", "lenet5", "small_cnn", "mobilenet_v1", "MOBILENET_V1_BLOCKS"]


def mlp(in_features: int, hidden: Sequence[int], out_features: int, *,
        activation: type[nn.Module] = nn.ReLU, bias: bool = True) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` (inputs are flattened first)."""
    check_int(in_features, "in_features", 1, where="mlp")
    check_int(out_features, "out_features", 1, where="mlp")
    layers: list[nn.Module] = [nn.Flatten()]
    prev = in_features
    for h in hidden:
        check_int(h, "hidden", 1, where="mlp")
        layers += [nn.Linear(prev, h, bias=bias), activation()]
        prev = h
    layers.append(nn.Linear(prev, out_features, bias=bias))
    return nn.Sequential(*layers)


def lenet5(in_channels: int = 1, num_classes: int = 10, *, input_size: int = 28) -> nn.Sequential:
    """LeNet-5 (ReLU, max-pooling); works for inputs of at least 12x12."""
    check_int(input_size, "input_size", 12, where="lenet5")
    pad = 2 if input_size < 32 else 0
    s = (input_size + 2 * pad - 4) // 2
    s = (s - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * s * s, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def small_cnn(in_channels: int = 1, num_classes: int = 10, *, width: int = 16,
              input_size: int = 8, pool: str = "max") -> nn.Sequential:
    """Two 3x3 conv blocks with pooling and a linear head; ``pool`` is 'max' or 'avg'."""
    check_int(input_size, "input_size", 4, where="small_cnn")
    pool_cls = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
    s = input_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), pool_cls(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), pool_cls(2), nn.Flatten(),
        nn.Linear(2 * width * s * s, num_classes),
    )


#: MobileNetV1 depthwise-separable blocks (Howard et al. 2017, Table 1): (out_channels, stride).
MOBILENET_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def _ch(c: int, alpha: float) -> int:
    return max(1, int(round(c * alpha)))


def mobilenet_v1(num_classes: int = 1000, *, width_mult: float = 1.0, in_channels: int = 3,
                 blocks: Sequence[tuple[int, int]] = MOBILENET_V1_BLOCKS,
                 batch_norm: bool = True, groups_per_depthwise: int | None = None) -> nn.Sequential:
    """MobileNetV1 with width multiplier ``width_mult`` (alpha).

    Layer names follow ``conv0``, ``dw{i}``, ``pw{i}`` so that per-layer tools (systolic-array
    models, timing side channels) can refer to them. ``groups_per_depthwise=None`` gives the
    standard depthwise layers (groups = channels).
    """
    check_interval(width_mult, "width_mult", 0.0, 4.0, closed="right", where="mobilenet_v1")
    layers: list[tuple[str, nn.Module]] = []

    def block(name: str, conv: nn.Conv2d) -> None:
        layers.append((name, conv))
        if batch_norm:
            layers.append((name + "_bn", nn.BatchNorm2d(conv.out_channels)))
        layers.append((name + "_relu", nn.ReLU()))

    c = _ch(32, width_mult)
    block("conv0", nn.Conv2d(in_channels, c, 3, stride=2, padding=1, bias=not batch_norm))
    for i, (out, stride) in enumerate(blocks, 1):
        o = _ch(out, width_mult)
        g = c if groups_per_depthwise is None else max(1, c // groups_per_depthwise)
        block(f"dw{i}", nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=g,
                                  bias=not batch_norm))
        block(f"pw{i}", nn.Conv2d(c, o, 1, bias=not batch_norm))
        c = o
    layers.append(("pool", nn.AdaptiveAvgPool2d(1)))
    layers.append(("flatten", nn.Flatten()))
    layers.append(("fc", nn.Linear(c, num_classes)))
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(layers))
