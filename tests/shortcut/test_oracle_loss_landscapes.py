"""Oracle: the sphere test's loss values re-evaluated with the loss-landscapes library.

loss-landscapes (3.0.6) walks the straight line from a model to a second model and evaluates a
loss at ``steps`` points; with the end point theta + r_max u (u = the sphere test's first
direction) its values are L(theta + (i / steps) r_max u), which must equal our
L(theta) + delta(r_i) for r_i = i r_max / steps.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from dnnkit.shortcut import sphere_flatness
from dnnkit.shortcut.measures import random_unit_direction
from tests.conftest import need


def test_sphere_points_match_loss_landscapes_line():
    ll = need("loss_landscapes")
    from loss_landscapes.metrics import Loss

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(64, 3, 8, 8), torch.randint(3, (64,))
    steps, r_max = 5, 6.0
    radii = [r_max * i / steps for i in range(1, steps + 1)]
    ours = sphere_flatness(model, (x, y), radii, n_dirs=1, seed=7)[:, 0]
    with torch.no_grad():
        base = float(nn.functional.cross_entropy(model(x), y))

    u = random_unit_direction(model, seed=7)
    end = copy.deepcopy(model)
    with torch.no_grad():
        for k, p in end.named_parameters():
            p.add_(r_max * u[k])
    theirs = ll.linear_interpolation(model, end, Loss(nn.functional.cross_entropy, x, y),
                                     steps=steps, deepcopy_model=True)
    np.testing.assert_allclose(ours + base, theirs, rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(theirs) != 0)  # the line really moves
