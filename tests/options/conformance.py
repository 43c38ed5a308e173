"""options' bad-input table for tests/test_conformance.py (issue 13)."""

from __future__ import annotations

import os
import tempfile

import torch

from dnnkit.core.validation import Example
from dnnkit.options import (
    Box,
    InverseCalibrator,
    SurrogatePricer,
    calibrate,
    generate_dataset,
    price_european,
)
from dnnkit.options.data import Quotes

_TMP = tempfile.mkdtemp(prefix="dnnkit-conformance-")


def _bs(p, c):
    return price_european("bs", p, c)


def examples() -> list[Example]:
    box = Box(("sigma", "m", "tau", "r", "q"), [0.1, 0.8, 0.1, 0.0, 0.0],
              [0.5, 1.2, 1.0, 0.05, 0.02])
    ds = generate_dataset("bs", 64, box=box, seed=0)
    net = SurrogatePricer(box, depth=1, width=8)
    path = os.path.join(_TMP, "pricer.safetensors")
    net.save(path)
    c = torch.tensor([[1.0, 0.5, 0.02, 0.0], [1.1, 0.5, 0.02, 0.0], [0.9, 1.0, 0.02, 0.0]],
                     dtype=torch.float64)
    sig = torch.tensor([[0.2]], dtype=torch.float64)
    quotes = Quotes(c, price_european("bs", sig, c))
    pbox = Box(("sigma",), [0.1], [0.5])
    inv = InverseCalibrator(c, pbox, depth=1, width=8)
    params = pbox.sample(4, seed=0)
    X = box.sample(3, seed=0)
    return [
        Example(Box, args=(("a", "b"), [0.0, 0.0], [1.0, 1.0])),
        Example(box.sample, args=(4,), kwargs={"method": "lhs", "seed": 0}),
        Example(box.to_unit, args=(X,)),
        Example(box.contains, args=(X,), kwargs={"tol": 0.1}),
        Example(box.violations, args=(X,)),
        Example(SurrogatePricer, args=(box,), kwargs={"depth": 1, "width": 4, "activation": "elu",
                                                      "baseline": "none",
                                                      "dtype": torch.float64}),
        Example(SurrogatePricer.from_module, args=(torch.nn.Linear(5, 1), box),
                kwargs={"baseline": "none"}),
        Example(net.forward, args=(X,)),
        Example(net.check_features, args=(X,), kwargs={"strict": False, "where": "here"}),
        Example(net.price, args=(sig, c), kwargs={"strict": False}),
        Example(net.fit, args=(ds, ds),
                kwargs={"loss": "mse", "optimizer": "adam", "lr": 1e-3, "batch_size": 32,
                        "epochs": 1, "time_budget_s": 5.0, "early_stopping": 2,
                        "lr_final": 0.5, "weight_decay": 0.0, "seed": 0, "on_epoch": None}),
        Example(net.save, args=(os.path.join(_TMP, "again.safetensors"),)),
        Example(SurrogatePricer.load, args=(path,), kwargs={"device": "cpu", "module": None}),
        Example(calibrate, args=(_bs, quotes, pbox),
                kwargs={"method": "lm", "n_starts": 1, "max_iter": 5, "tol": 1e-8, "seed": 0}),
        Example(InverseCalibrator, args=(c, pbox), kwargs={"depth": 1, "width": 4}),
        Example(inv.surfaces, args=("bs", params)),
        Example(inv.fit, args=("bs", 8), kwargs={"epochs": 1, "time_budget_s": 5.0, "lr": 1e-3,
                                                 "batch_size": 4, "seed": 0}),
        Example(inv.forward, args=(torch.rand(2, 3, dtype=torch.float64),)),
        Example(inv.calibrate, args=(quotes,)),
        Example(inv.predict, args=(torch.rand(3, dtype=torch.float64),)),
        Example(generate_dataset, args=("bs", 8),
                kwargs={"box": box, "sampler": "uniform", "chunk": 4, "seed": 0,
                        "option": "call"}),
        Example(price_european, args=("bs", sig, c), kwargs={"option": "put",
                                                             "method": "closed"}),
        # the examples
        Example(Box, args=("ab", [0.0, 0.0], [1.0, 1.0]), raises=TypeError, param="names"),
        Example(net.forward, args=(X[:, :2],), raises=ValueError, param="X"),
        Example(net.price, args=("sig", c), raises=TypeError, param="params"),
        Example(generate_dataset, args=("bs", 2**40), raises=ValueError, param="n"),
        Example(box.sample, args=(10**8,), raises=ValueError, param="n"),
        Example(SurrogatePricer, args=(box,), kwargs={"width": 1_000_000}, raises=ValueError,
                param="width"),
        Example(box.contains, args=(X[:, :2],), raises=ValueError, param="x"),
        Example(calibrate, args=("bs", quotes, pbox), raises=TypeError, param="price_fn"),
        Example(inv.forward, args=(torch.rand(2, 5, dtype=torch.float64),), raises=ValueError,
                param="prices"),
    ]
