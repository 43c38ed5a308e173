"""adv_ntk's bad-input table for tests/test_conformance.py (issue 13)."""

from __future__ import annotations

import torch

from dnnkit.adv_ntk import (
    AdvNTK,
    KernelSpec,
    fit_adv_ntk,
    ntk_kernel,
    pgd_attack,
    robust_accuracy,
)
from dnnkit.core.validation import Example


def examples() -> list[Example]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 4, generator=g, dtype=torch.float64) - 0.5
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    spec = KernelSpec(depth=2)
    model = AdvNTK(x, y, spec)
    net = torch.nn.Linear(4, 3)
    xf = x.float()
    return [
        Example(KernelSpec, kwargs={"arch": "mlp", "depth": 2, "w_std": 1.5, "b_std": 0.1,
                                    "activation": "relu"}),
        Example(ntk_kernel, args=(x, x[:2], spec), kwargs={"get": "ntk", "batch_size": 4}),
        Example(AdvNTK, args=(x, y, spec),
                kwargs={"varpi": 0.0, "per_class": False, "num_classes": 3, "diag_reg": 0.0,
                        "dtype": torch.float64, "trainable": True, "method": "auto"}),
        Example(model.forward, args=(x[:2],)),
        Example(fit_adv_ntk, args=(x, y, spec),
                kwargs={"x_val": x, "y_val": y, "val_size": 3, "steps": 1, "batch_size": 3,
                        "lr": 0.1, "weight_decay": 0.0, "grad_norm": True, "eps": 0.01,
                        "pgd_steps": 1, "pgd_alpha": 0.01, "clip": (-0.5, 0.5),
                        "per_class": False, "num_classes": 3, "diag_reg": 0.0,
                        "dtype": torch.float64, "seed": 0, "on_step": None}),
        Example(pgd_attack, args=(net, xf, y),
                kwargs={"eps": 0.1, "steps": 2, "alpha": 0.05, "norm": "linf",
                        "random_start": True, "loss": "ce", "clip": (-1.0, 1.0),
                        "generator": 0}),
        Example(robust_accuracy, args=(net, xf, y), kwargs={"batch_size": 4, "eps": 0.1,
                                                            "steps": 1}),
        # the examples
        Example(robust_accuracy, args=(net, xf[:0], y[:0]), kwargs={"eps": 0.1},
                raises=ValueError, param="x"),
        Example(pgd_attack, args=(net, xf, y + 3), kwargs={"eps": 0.1}, raises=ValueError,
                param="y"),
        Example(robust_accuracy, args=("net", xf, y), kwargs={"eps": 0.1}, raises=TypeError,
                param="model"),
        Example(model.forward, args=(x[:, :2],), raises=ValueError, param="x"),
        Example(ntk_kernel, args=(x,), kwargs={"spec": "mlp"}, raises=TypeError, param="spec"),
    ]
