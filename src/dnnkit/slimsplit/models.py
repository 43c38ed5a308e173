"""The CPU-scale split network of the reproduction (digits, 8x8): member and decoder factories.

Member (device): Conv(1->8, 3x3) + BN + ReLU + Conv(8->c, 3x3, stride 2) -> ``(c, 4, 4)``.
Decoder (server): Conv(c->32, 3x3) + ReLU + Linear(512->64) + ReLU + Linear(64->10).
A stand-in for the paper's EfficientNet-B2-stem members and EfficientDet-D2 tail at 384 px.
"""

from __future__ import annotations

import torch
from torch import nn

from dnnkit.core.validation import check_int
from dnnkit.slimsplit.ensemble import SlimmableEnsembleEncoder
from dnnkit.slimsplit.split import SplitModel

__all__ = ["digits_member", "digits_decoder", "digits_split_model"]


def digits_member(channels: int = 1, hidden: int = 8) -> nn.Module:
    """One ensemble member for 1x8x8 inputs: output ``(channels, 4, 4)``."""
    return nn.Sequential(nn.Conv2d(1, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(),
                         nn.Conv2d(hidden, channels, 3, stride=2, padding=1))


def digits_decoder(channels: int = 1, n_classes: int = 10) -> nn.Module:
    """The server tail for a ``(channels, 4, 4)`` bottleneck."""
    return nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, n_classes))


def digits_split_model(n_members: int = 4, channels: int = 1, *,
                       bits_options: tuple[int, ...] = (1, 2, 3, 4),
                       seed: int | None = 0) -> SplitModel:
    """A freshly initialised :class:`SplitModel` for digits (weights drawn from ``seed``)."""
    n_members = check_int(n_members, "n_members", 1, 64, where="slimsplit.digits_split_model")
    channels = check_int(channels, "channels", 1, 64, where="slimsplit.digits_split_model")
    devnull = torch.random.fork_rng(enabled=seed is not None)
    with devnull:
        if seed is not None:
            torch.manual_seed(seed)
        enc = SlimmableEnsembleEncoder(lambda: digits_member(channels), n_members,
                                       example_input=torch.zeros(1, 1, 8, 8))
        return SplitModel(enc, digits_decoder(channels), bits_options=bits_options)
