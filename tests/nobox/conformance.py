"""Bad-input table of dnnkit.nobox for the project-wide conformance suite."""

from __future__ import annotations

import torch

try:
    from dnnkit.core.validation import Example
except ImportError:                       # until core.validation ships Example
    from dataclasses import dataclass, field
    from typing import Any

    @dataclass
    class Example:                        # type: ignore[no-redef]
        fn: Any
        args: tuple = ()
        kwargs: dict = field(default_factory=dict)
        raises: type | None = None
        param: str | None = None

from dnnkit.nobox import (
    AttackConfig,
    NoBoxSurrogate,
    SurrogateConfig,
    craft_nobox,
    evaluate_transfer,
    iterative_fgsm,
    nobox_attack,
    preset,
    train_surrogate,
)
from dnnkit.nobox.data import load_image_folder


def _tiny():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 4, 4, generator=g)
    y = torch.tensor([0, 0, 1, 1])
    cfg = SurrogateConfig(n_decoders=2, iters=1, width=4, n_stages=1, downsample=False,
                          n_res_blocks=0, stem_kernel=3)
    return x, y, cfg


def examples() -> list[Example]:
    x, y, cfg = _tiny()
    sur = train_surrogate(x, y, cfg, seed=0)
    acfg = AttackConfig(eps=0.1, stage1_eps=0.2, stage1_iters=1, ila_iters=1, step=0.05)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    return [
        # valid calls
        Example(SurrogateConfig, kwargs={"mode": "naive", "iters": 1}),
        Example(AttackConfig, kwargs={"eps": 0.1, "stage1_eps": 0.3}),
        Example(NoBoxSurrogate, args=(1, cfg)),
        Example(train_surrogate, args=(x, y, cfg), kwargs={"seed": 0}),
        Example(craft_nobox, args=(sur, x, y, acfg)),
        Example(iterative_fgsm, args=(lambda z: z.sum(), x),
                kwargs={"eps": 0.1, "alpha": 0.05, "steps": 1}),
        Example(nobox_attack, args=(x, y),
                kwargs={"group_size": 4, "surrogate_cfg": cfg, "attack_cfg": acfg}),
        Example(evaluate_transfer, args=({"v": lambda z: y}, x, x, y)),
        Example(preset, args=("digits8",)),
        Example(sur.encode, args=(x,)),
        Example(sur.decode, args=(sur.encode(x),)),
        Example(sur.forward, args=(x,)),
        Example(sur.forward, args=(x.repeat(1, 3, 1, 1),), raises=ValueError, param="x"),
        Example(sur.decode, args=(x,), raises=ValueError, param="h"),
        # hand-written bad cases (the list)
        Example(train_surrogate, args=(x[0], y, cfg), raises=ValueError, param="images"),
        Example(train_surrogate, args=(x * 2, y, cfg), raises=ValueError, param="images"),
        Example(train_surrogate, args=(nan, y, cfg), raises=ValueError, param="images"),
        Example(train_surrogate, args=(x, torch.tensor([0, 1, 2, 2]), cfg), raises=ValueError,
                param="labels"),
        Example(train_surrogate, args=(x, torch.tensor([0, 1, 1, 1]), cfg), raises=ValueError,
                param="labels"),
        Example(train_surrogate, args=(x[1:3], y[1:3], cfg), raises=ValueError,
                param="labels"),
        Example(train_surrogate, args=(x, y, SurrogateConfig(n_decoders=5, iters=1)),
                raises=ValueError, param="n_decoders"),
        Example(train_surrogate, args=(x, y, SurrogateConfig(mode="jigsaw", jigsaw_grid=3,
                                                              iters=1, n_stages=0)),
                raises=ValueError, param="jigsaw_grid"),
        Example(AttackConfig, kwargs={"eps": 0.0}, raises=ValueError, param="eps"),
        Example(AttackConfig, kwargs={"eps": 0.2, "stage1_eps": 0.1}, raises=ValueError,
                param="stage1_eps"),
        Example(AttackConfig, kwargs={"step": 0.0}, raises=ValueError, param="step"),
        Example(AttackConfig, kwargs={"ila_iters": -1}, raises=ValueError, param="ila_iters"),
        Example(AttackConfig, kwargs={"stage1_iters": 2**40}, raises=ValueError,
                param="stage1_iters"),
        Example(SurrogateConfig, kwargs={"mode": "rotaton"}, raises=ValueError, param="mode"),
        Example(nobox_attack, args=(x, y), kwargs={"group_size": 3}, raises=ValueError,
                param="group_size"),
        Example(evaluate_transfer, args=({"v": 1}, x, x, y), raises=TypeError, param="victims"),
        Example(load_image_folder, args=("/nonexistent/dnnkit/nobox",), raises=ValueError,
                param="root"),
    ]
