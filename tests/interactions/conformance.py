"""interactions' bad-input table for tests/test_conformance.py (issue 13)."""

from __future__ import annotations

import torch
from torch import nn

from dnnkit.core.validation import Example
from dnnkit.interactions import (
    and_or_interactions,
    explain_models,
    extract_interactions,
    extract_shared_interactions,
    harsanyi_and,
    harsanyi_or,
    masked_outputs,
    reconstruct,
)
from dnnkit.interactions.experiment import Config


def examples() -> list[Example]:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 2)).eval()
    x = torch.rand(4, generator=g)
    players = [[0], [1], [2, 3]]
    v = torch.randn(8, generator=g, dtype=torch.float64)
    return [
        Example(masked_outputs, args=(net, x),
                kwargs={"players": players, "baseline": 0.0, "target": 1,
                        "output": "log_odds", "subtract_empty": True, "batch_size": 8}),
        Example(harsanyi_and, args=(v,)),
        Example(harsanyi_or, args=(v,)),
        Example(and_or_interactions, args=(v, 0.1, torch.zeros(8, dtype=torch.float64)),
                kwargs={"merge": True}),
        Example(reconstruct, args=(v, v)),
        Example(extract_shared_interactions, args=([v],), kwargs={"alpha": 0.1, "steps": 5}),
        Example(extract_interactions, args=(v,), kwargs={"tau_ratio": 0.02, "solver": "adam",
                                                         "steps": 5, "lr": 0.05}),
        Example(extract_shared_interactions, args=([v, v.flip(0)],),
                kwargs={"alpha": 0.1, "tau_ratio": 0.02, "specific_bound": None,
                        "solver": "adam", "steps": 5, "lr": 0.05}),
        Example(explain_models, args=([net, net], x, players),
                kwargs={"baseline": 0.0, "target": 0, "output": "logit", "alpha": 0.1,
                        "tau_ratio": 0.02, "specific_bound": None, "solver": "adam",
                        "steps": 5, "lr": 0.05, "batch_size": 8}),
        Example(Config, kwargs={"n_players": 8, "patch": 2, "epochs": 2}),
        # the examples
        Example(Config, kwargs={"n_players": 64}, raises=ValueError, param="n_players"),
        Example(masked_outputs, args=("model", x), kwargs={"players": players},
                raises=TypeError, param="model"),
        Example(masked_outputs, args=(net, x), kwargs={"players": players, "target": "a"},
                raises=TypeError, param="target"),
        Example(masked_outputs, args=(net, x), kwargs={"players": players, "target": 5},
                raises=ValueError, param="target"),
    ]
