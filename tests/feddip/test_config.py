import math

import numpy as np
import pytest

from dnnkit.feddip.config import FedDIPConfig, lambda_schedule, round_plan, sparsity_schedule


def test_sparsity_schedule_closed_form():
    T, s0, sp = 200, 0.5, 0.95
    t = np.arange(T)
    expected = sp + (s0 - sp) * (1 - t / T) ** 3
    got = np.array([sparsity_schedule(int(i), T, s0, sp) for i in t])
    np.testing.assert_allclose(got, expected, atol=1e-15)
    assert np.all(np.diff(got) >= 0)
    assert got[-1] < sp  # code semantics never quite reach s_p


def test_sparsity_schedule_with_end_reaches_target():
    vals = [sparsity_schedule(t, 100, 0.5, 0.9, end=80) for t in range(100)]
    assert vals[0] == 0.5 and all(v == 0.9 for v in vals[80:]) and vals[79] < 0.9


def test_lambda_schedule_matches_code_step_function():
    T, Q, lmax, linit = 103, 20, 1e-3, 5e-4
    L = T // Q
    for t in range(T):
        i = min(t // L, Q - 1)
        exp = 0.0 if i == 0 else linit + (lmax - linit) * (i - 1) / (Q - 1)
        assert math.isclose(lambda_schedule(t, T, lmax, linit, Q), exp, rel_tol=0, abs_tol=1e-18)
    last = lambda_schedule(T - 1, T, lmax, linit, Q)
    assert math.isclose(last, linit + (lmax - linit) * 18 / 19)  # never reaches lambda_max


def test_round_plan_switches():
    cfg = FedDIPConfig(rounds=40, clients_per_round=2, lambda_segments=4, reconfig_interval=5)
    assert round_plan(cfg, 0)["reprune"] and not round_plan(cfg, 1)["reprune"]
    assert round_plan(cfg, 39)["lambda"] > 0
    off = cfg.replace(prune=False, regularize=False)
    p = round_plan(off, 39)
    assert p["lambda"] == 0 and p["sparsity"] == 0 and not p["reprune"]
    const = cfg.replace(lambda_constant=True)
    assert round_plan(const, 0)["lambda"] == const.lambda_max


@pytest.mark.parametrize("kw, match", [
    ({"target_sparsity": 1.0}, "target_sparsity"),
    ({"target_sparsity": -0.1}, "target_sparsity"),
    ({"init_sparsity": 1.2}, "init_sparsity"),
    ({"init_sparsity": 0.95, "target_sparsity": 0.9}, "init_sparsity.*target_sparsity"),
    ({"rounds": 10, "lambda_segments": 20}, "lambda_segments"),
    ({"reconfig_interval": 0}, "reconfig_interval"),
    ({"prune_until": 0}, "prune_until"),
    ({"rounds": 30, "prune_until": 31}, "prune_until"),
    ({"clients_per_round": 0}, "clients_per_round"),
    ({"upload": "sparse"}, "upload"),
    ({"reprune_from": "dens"}, "Did you mean 'dense'"),
])
def test_bad_config_is_refused(kw, match):
    base = {"rounds": 100, "clients_per_round": 2}
    with pytest.raises(ValueError, match=match):
        FedDIPConfig(**{**base, **kw})


def test_bad_config_types():
    with pytest.raises(TypeError, match="rounds"):
        FedDIPConfig(rounds=10.5, clients_per_round=2)
    with pytest.raises(TypeError, match="prune"):
        FedDIPConfig(rounds=100, clients_per_round=2, prune="yes")


def test_too_few_rounds_ok_without_incremental_lambda():
    FedDIPConfig(rounds=5, clients_per_round=1, regularize=False)
    FedDIPConfig(rounds=5, clients_per_round=1, lambda_constant=True)
