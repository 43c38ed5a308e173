"""shortcut's bad-input table for tests/test_conformance.py (issue 13)."""

from __future__ import annotations

import math

import torch
from torch import nn

from dnnkit.core.validation import Example
from dnnkit.shortcut import (
    augmented_training_set,
    cue_preference,
    kc_proxy,
    make_wcst_ml,
    sphere_flatness,
)
from dnnkit.shortcut.sources import DSpritesSource


def _model_fn() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16 * 16 * 3, 3))


def examples() -> list[Example]:
    src = DSpritesSource(size=16)
    splits = make_wcst_ml(src, ["color", "shape"], n_train=12, n_val=3, n_test=6, seed=0)
    x = torch.rand(4, 2)
    y = torch.tensor([0, 1, 2, 0])
    lin = nn.Linear(2, 3)
    nan_x = x.clone()
    nan_x[1, 1] = math.nan
    return [
        Example(make_wcst_ml, args=(src, ["color", "shape"]),
                kwargs={"n_levels": 3, "n_train": 12, "n_val": 3, "n_test": 6,
                        "binning": "balanced", "offdiag_sampling": "uniform_levels",
                        "fixed": None, "seed": 0}),
        Example(augmented_training_set, args=(splits, "shape"), kwargs={"n": 3, "seed": 0}),
        Example(cue_preference, args=(_model_fn, splits),
                kwargs={"epochs": 1, "lr": 1e-3, "batch_size": 8, "seeds": (0,),
                        "optimizer": "adam", "train": None, "progress": False}),
        Example(kc_proxy, args=(splits,), kwargs={"compressor": "zlib", "n_bases": 2,
                                                  "seed": 0}),
        Example(sphere_flatness, args=(lin, (x, y), [0.1, 0.2]),
                kwargs={"n_dirs": 2, "loss_fn": None, "seed": 0, "batch_size": 4}),
        # the examples
        Example(sphere_flatness, args=(lin, (nan_x, y), [0.1]), raises=ValueError, param="data"),
        Example(sphere_flatness, args=(lin, (x, y[:2]), [0.1]), raises=ValueError, param="data"),
        Example(sphere_flatness, args=("model", (x, y), [0.1]), raises=TypeError, param="model"),
        Example(make_wcst_ml, args=(src, "shape"), raises=TypeError, param="cues"),
        Example(make_wcst_ml, args=(src, ["color", "shape"]), kwargs={"n_train": 2**40},
                raises=ValueError, param="n_train"),
    ]
