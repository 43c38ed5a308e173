"""The reproducible training context shared by netllm's trainers (offline RL, text answers,
viewport prediction)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def seeded_training(model: nn.Module, gen: torch.Generator,
                    device: torch.device | None = None) -> Iterator[Callable[[], None]]:
    """Put ``model`` in train mode with torch's global RNG forked; yield ``reseed()``.

    Dropout inside backbones and peft draws from torch's *global* RNG. Calling ``reseed()``
    before each step seeds it from ``gen`` (one draw), so runs are reproducible and resumable,
    and the fork leaves the caller's RNG as it was. The model's mode is restored on exit, also
    when a step raises.
    """
    was = model.training
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.train()
        try:
            yield lambda: torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        finally:
            model.train(was)
