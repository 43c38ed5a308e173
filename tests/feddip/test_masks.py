import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from dnnkit.feddip.masks import (
    apply_mask,
    check_mask,
    erk_mask,
    global_magnitude_mask,
    mask_sparsity,
    payload_bytes,
    prunable_parameters,
)


def _net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 20), nn.ReLU(), nn.Linear(20, 5))


def test_prunable_parameters_conv_linear_only():
    assert prunable_parameters(_net()) == ["0.weight", "4.weight", "6.weight"]


def test_nothing_to_prune_is_an_error():
    with pytest.raises(ValueError, match="nothing to prune"):
        prunable_parameters(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()))


@pytest.mark.oracle
@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.9, 0.95, 0.99])
def test_global_mask_matches_torch_global_unstructured(s):
    net = _net()
    names = prunable_parameters(net)
    ours = global_magnitude_mask(net.state_dict(), names, s)
    mods = [net[0], net[4], net[6]]
    prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured,
                              amount=s)
    for n, m in zip(names, mods):
        assert torch.equal(ours[n], m.weight_mask.bool()), n
    n_total = sum(ours[n].numel() for n in names)
    assert mask_sparsity(ours) == pytest.approx(round(s * n_total) / n_total, abs=1e-12)


def test_global_mask_ties_are_deterministic():
    state = {"a": torch.zeros(4), "b": torch.zeros(4)}
    m = global_magnitude_mask(state, ["a", "b"], 0.5)
    assert m["a"].tolist() == [False] * 4 and m["b"].tolist() == [True] * 4


@pytest.mark.parametrize("seed", range(4))
def test_global_mask_is_the_first_k_of_a_stable_sort_with_many_ties(seed):
    # magnitudes from a handful of values: the selection must prune exactly the first k
    # entries of a stable ascending sort (names order, then flattened index)
    g = torch.Generator().manual_seed(seed)
    state = {"a": torch.randint(-3, 4, (7, 5), generator=g).float(),
             "b": torch.randint(-3, 4, (11,), generator=g).float() * 0.5}
    flat = torch.cat([state["a"].reshape(-1), state["b"].reshape(-1)]).abs()
    for s in (0.1, 0.37, 0.5, 0.8, 0.98):
        k = round(s * flat.numel())
        ref = torch.ones(flat.numel(), dtype=torch.bool)
        ref[torch.sort(flat, stable=True).indices[:k]] = False
        m = global_magnitude_mask(state, ["a", "b"], s)
        assert torch.equal(torch.cat([m["a"].reshape(-1), m["b"].reshape(-1)]), ref), s


def test_global_mask_follows_device_and_refuses_nan():
    state = {"w": torch.tensor([1.0, float("nan")])}
    with pytest.raises(ValueError, match="NaN"):
        global_magnitude_mask(state, ["w"], 0.5)
    with pytest.raises(ValueError, match="sparsity"):
        global_magnitude_mask({"w": torch.ones(2)}, ["w"], 1.0)
    with pytest.raises(KeyError, match="not in the state dict"):
        global_magnitude_mask({"w": torch.ones(2)}, ["v"], 0.5)


def test_erk_mask_density_and_layer_shape_rule():
    shapes = {"conv": (64, 32, 3, 3), "fc1": (512, 1024), "head": (10, 512), "tiny": (3, 4)}
    m = erk_mask(shapes, 0.2, seed=0)
    n = sum(math.prod(s) for s in shapes.values())
    kept = sum(int(v.sum()) for v in m.values())
    assert abs(kept / n - 0.2) < 0.01
    dens = {k: float(v.float().mean()) for k, v in m.items()}
    assert dens["tiny"] == 1.0  # would exceed 1: kept dense
    assert dens["head"] > dens["fc1"]  # ERK: (sum dims / prod dims) larger for the small layer
    assert torch.equal(erk_mask(shapes, 0.2, seed=0)["fc1"], m["fc1"])
    assert not torch.equal(erk_mask(shapes, 0.2, seed=1)["fc1"], m["fc1"])


def test_check_and_apply_mask():
    net = _net()
    state = net.state_dict()
    mask = {"4.weight": (torch.rand(20, 144) > 0.5).float()}
    apply_mask(net, mask)
    assert bool((net[4].weight[mask["4.weight"] == 0] == 0).all())
    with pytest.raises(KeyError, match="do not match"):
        check_mask({"nope": torch.ones(2, dtype=torch.bool)}, state)
    with pytest.raises(ValueError, match="shape"):
        check_mask({"4.weight": torch.ones(3, dtype=torch.bool)}, state)
    with pytest.raises(ValueError, match="bool or hold only 0 and 1"):
        check_mask({"4.weight": torch.full((20, 144), 0.5)}, state)


def test_payload_bytes():
    state = {"w": torch.ones(100), "b": torch.ones(10)}
    assert payload_bytes(state) == 440
    mask = {"w": torch.arange(100) < 10}
    assert payload_bytes(state, mask) == 4 * 10 + 13 + 40
