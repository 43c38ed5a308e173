"""Single and joint extraction: invariants, degenerate samples, batching, bad input, explain."""

import logging

import pytest
import torch
from torch import nn

from dnnkit.interactions import explain_models, extract_interactions, extract_shared_interactions
from dnnkit.interactions.extraction import result_at
from dnnkit.interactions.metrics import (
    efficiency_gap,
    matching_gap,
    order_profile,
    sparsity,
    strength_curve,
    topk_overlap,
)


def _vals(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _check_invariants(r, tau_ratio=0.02):
    tol = 1e-9 if r.values.dtype == torch.float64 else 1e-5
    assert float(matching_gap(r.values, r.i_and, r.i_or, r.eps).max()) < tol
    assert float(efficiency_gap(r.values, r.i_and, r.i_or, r.eps).max()) < tol
    gain = (r.values[..., -1] - r.values[..., 0]).abs()
    assert torch.allclose(r.tau, tau_ratio * gain)
    assert float((r.eps.abs() - r.tau[..., None]).max()) <= 0.0
    singles = [0] + [1 << i for i in range(r.n)]
    assert torch.all(r.i_or[..., singles] == 0)


def test_single_extraction_is_faithful_sparser_and_bounded():
    v = _vals(3, 64)
    res = extract_interactions(v, steps=800)
    _check_invariants(res)
    dense = torch.cat([torch.stack([r for r in _plain(v)]).squeeze(0)], -1)
    assert float(res.objective.sum()) < float(dense.abs().sum())
    assert res.i_and.shape == (3, 64) and res.objective.shape == (3,)


def _plain(v):
    from dnnkit.interactions.transforms import and_or_interactions
    a, o = and_or_interactions(v, merge=False)
    return [torch.cat([a, o], -1)]


def test_batch_equals_per_sample():
    v = _vals(2, 32, seed=1)
    both = extract_interactions(v, steps=300)
    one = extract_interactions(v[1], steps=300)
    assert torch.allclose(both.i_and[1], one.i_and, atol=1e-9)
    assert torch.allclose(result_at(both, 1).gamma, one.gamma, atol=1e-9)


def test_lp_solution_is_exact_and_refuses_large_n():
    v = _vals(32, seed=2)
    res = extract_interactions(v, solver="lp")
    _check_invariants(res)
    with pytest.raises(ValueError, match="'adam' for n > 10"):
        extract_interactions(_vals(2048), solver="lp")


def test_tau_zero_gives_an_exact_split_without_noise():
    res = extract_interactions(_vals(16, seed=3), tau_ratio=0.0, steps=200)
    assert float(res.eps.abs().max()) == 0.0
    _check_invariants(res, tau_ratio=0.0)


def test_degenerate_sample_is_handled_and_logged(caplog):
    v = _vals(16, seed=4)
    v[-1] = v[0]  # v(N) == v(empty)
    with caplog.at_level(logging.WARNING, logger="dnnkit"):
        res = extract_interactions(torch.stack([v, torch.zeros(16, dtype=torch.float64)]),
                                   steps=200)
    assert "v(N) == v(empty)" in caplog.text
    assert float(res.tau.abs().max()) == 0.0 and float(res.eps.abs().max()) == 0.0
    assert bool(torch.isfinite(res.i_and).all())
    assert float(matching_gap(res.values, res.i_and, res.i_or).max()) < 1e-9
    # a constant game has no interactions at all
    assert float(res.i_and[1].abs().max()) == 0.0 and float(res.i_or[1].abs().max()) == 0.0


def test_joint_extraction_invariants_and_three_models():
    vs = [_vals(2, 32, seed=s) for s in (5, 6, 7)]
    res = extract_shared_interactions(vs, steps=500)
    assert len(res) == 3
    for r, v in zip(res, vs):
        assert torch.equal(r.values, v)
        _check_invariants(r)
    # every model's split differs from another's by at most B_i + B_j
    gains = [(v[:, -1] - v[:, 0]).abs() for v in vs]
    for i in range(3):
        for j in range(3):
            diff = (res[i].gamma - res[j].gamma).abs().amax(-1)
            assert bool((diff <= 0.5 * (gains[i] + gains[j]) + 1e-9).all())
    assert torch.equal(res[0].objective, res[2].objective)


def test_zero_bound_and_alpha_one():
    v1, v2 = _vals(16, seed=8), _vals(16, seed=9)
    res = extract_shared_interactions([v1, v2], specific_bound=0.0, steps=300)
    assert torch.allclose(res[0].gamma, res[1].gamma)  # only the shared part remains
    res = extract_shared_interactions([v1, v2], alpha=1.0, specific_bound=[0.1, 0.2], steps=300)
    _check_invariants(res[0])


def test_joint_increases_overlap_on_related_games():
    g = torch.Generator().manual_seed(10)
    base = torch.randn(20, 64, dtype=torch.float64, generator=g)
    v1 = base + 0.3 * torch.randn(20, 64, dtype=torch.float64, generator=g)
    v2 = base + 0.3 * torch.randn(20, 64, dtype=torch.float64, generator=g)
    t1, t2 = extract_interactions(v1, steps=800), extract_interactions(v2, steps=800)
    j1, j2 = extract_shared_interactions([v1, v2], steps=800)
    assert topk_overlap(j1.i_and, j2.i_and, 6) > topk_overlap(t1.i_and, t2.i_and, 6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=1.5), "alpha"),
    (dict(alpha=-0.1), "alpha"),
    (dict(tau_ratio=-0.01), "tau_ratio"),
    (dict(specific_bound=-1.0), "specific_bound"),
    (dict(specific_bound=[1.0, 2.0, 3.0]), "specific_bound"),
    (dict(solver="sgd"), "solver"),
    (dict(steps=0), "steps"),
])
def test_joint_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract_shared_interactions([_vals(8), _vals(8, seed=1)], **kwargs)


def test_joint_mismatched_models_and_counts():
    with pytest.raises(ValueError, match="same samples"):
        extract_shared_interactions([_vals(3, 8), _vals(2, 8)])
    with pytest.raises(ValueError, match="same samples"):
        extract_shared_interactions([_vals(8), _vals(16)])
    with pytest.raises(ValueError, match="at least 1|length >= 1"):
        extract_shared_interactions([])
    with pytest.raises(TypeError, match="list of tensors|list or tuple"):
        extract_shared_interactions(_vals(2, 8))
    with pytest.raises(ValueError, match="tau_ratio"):
        extract_interactions(_vals(8), tau_ratio=2.0)


def test_result_views():
    res = extract_interactions(torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64),
                               tau_ratio=0.0, steps=300)
    sal = res.salient()
    assert sal[0][0] == "and" and sal[0][1] == frozenset({0, 1})
    assert sal[0][2] == pytest.approx(1.0, abs=1e-3)
    d = res.to_dict()
    assert set(d) == {(), (0,), (1,), (0, 1)}
    assert torch.allclose(res.reconstruct(), res.values + res.eps)
    with pytest.raises(ValueError, match="single sample"):
        extract_interactions(_vals(2, 4), steps=10).salient()


def test_metrics():
    a = torch.tensor([[3.0, 0.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    assert topk_overlap(a, a, 2) == 1.0
    # ties broken by the lower index: row 1 top-2 = {0, 1}
    b = torch.tensor([[0.0, 3.0, 2.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    assert topk_overlap(a, b, 2) == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="k"):
        topk_overlap(a, b, 5)
    sp = sparsity(torch.tensor([1.0, 0.01, 0.5, 0.0]))
    assert float(sp) == 0.5
    prof = order_profile(torch.tensor([0.0, 1.0, -2.0, 4.0]))
    assert prof == {0: (0.0, 0.0), 1: (1.0, -2.0), 2: (4.0, 0.0)}
    c = strength_curve(torch.tensor([1.0, -4.0, 2.0]))
    assert c.tolist() == [1.0, 0.5, 0.25]


def _net(hidden, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 3)).eval()


def test_explain_models_end_to_end():
    models = [_net(8, 0), _net(16, 1)]
    x = torch.randn(6, generator=torch.Generator().manual_seed(0))
    res = explain_models(models, x, [[0, 1], [2], [3, 4], [5]], steps=300)
    assert len(res) == 2 and res[0].n == 4
    for r in res:
        _check_invariants(r)
    one = explain_models(models[:1], x, [[0, 1], [2], [3, 4], [5]], steps=300)
    assert len(one) == 1 and torch.equal(one[0].i_and, explain_models(
        models[:1], x, [[0, 1], [2], [3, 4], [5]], steps=300)[0].i_and)
    models[1].train()
    with pytest.raises(ValueError, match="model 1.*training mode"):
        explain_models(models, x, [[0], [1]], target=0)


def test_plots_return_figures():
    import matplotlib.pyplot as plt

    from dnnkit.interactions.plots import plot_overlap_vs_k, plot_strength_curves

    fig = plot_strength_curves({"a": _vals(3, 16), "b": _vals(3, 16, seed=1)}, title="t")
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 3  # two curves + the 5% line
    plt.close(fig)
    fig = plot_overlap_vs_k([1, 2], {"AND": {"x": [0.1, 0.2]}, "OR": {"x": [0.3, 0.4]}})
    assert len(fig.axes) == 2
    plt.close(fig)


@pytest.mark.parametrize("solver", ["adam", "lp"])
def test_joint_extraction_of_one_model_is_the_single_model_extraction(solver):
    """Regression: a sweep over the number of models starts at m = 1 (it used to raise)."""
    v = _vals(2, 8)
    joint = extract_shared_interactions([v], solver=solver, steps=200)
    single = extract_interactions(v, solver=solver, steps=200)
    assert len(joint) == 1
    for f in ("i_and", "i_or", "gamma", "eps"):
        assert torch.equal(getattr(joint[0], f), getattr(single, f)), f


def test_and_or_interactions_accepts_scalar_gamma_and_eps():
    from dnnkit.interactions import and_or_interactions, reconstruct

    v = torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=torch.float64)
    a, o = and_or_interactions(v, 0.25, 0.1)
    a2, o2 = and_or_interactions(v, torch.full_like(v, 0.25), torch.full_like(v, 0.1))
    assert torch.equal(a, a2) and torch.equal(o, o2)
    assert torch.allclose(reconstruct(a, o), v + 0.1, atol=1e-12)
    with pytest.raises(ValueError, match="'gamma'"):
        and_or_interactions(v, float("nan"))
