"""Tiny shared fixtures for the nobox tests (cheap on one core)."""

import torch

from dnnkit.nobox import AttackConfig, SurrogateConfig


def tiny_data(n_per_class: int = 4, size: int = 8, channels: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n_per_class, channels, size, size, generator=g)
    y = torch.tensor([3] * n_per_class + [7] * n_per_class)
    return x, y


def tiny_cfg(mode: str = "prototypical", **kw) -> SurrogateConfig:
    base = dict(mode=mode, n_decoders=4, iters=10, width=4, n_stages=1, downsample=False,
                n_res_blocks=0, stem_kernel=3)
    base.update(kw)
    return SurrogateConfig(**base)


def tiny_attack(**kw) -> AttackConfig:
    base = dict(eps=0.1, stage1_eps=0.3, stage1_iters=8, ila_iters=8, step=0.02)
    base.update(kw)
    return AttackConfig(**base)
