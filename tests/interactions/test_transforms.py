"""Exact transforms: brute force on tiny games, axioms, identities, batching."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnkit.interactions import harsanyi_and, harsanyi_or
from dnnkit.interactions.metrics import efficiency_gap, matching_gap
from dnnkit.interactions.subsets import (
    index_to_subset,
    n_from_length,
    subset_sizes,
    subset_to_index,
)
from dnnkit.interactions.transforms import and_or_interactions, merge_singletons, reconstruct


def brute_and(v):
    """I_and(S) = sum_{T <= S} (-1)^{|S|-|T|} v(T), straight from the definition."""
    k = len(v)
    out = torch.zeros_like(v)
    for s in range(k):
        for t in range(k):
            if t & s == t:
                out[s] += (-1) ** (s.bit_count() - t.bit_count()) * v[t]
    return out


def brute_or(v):
    k = len(v)
    full = k - 1
    out = torch.zeros_like(v)
    for s in range(1, k):
        for t in range(k):
            if t & s == t:
                out[s] -= (-1) ** (s.bit_count() - t.bit_count()) * v[full ^ t]
    out[0] = v[0]
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_fast_transforms_equal_brute_force(n):
    v = torch.randn(1 << n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    assert torch.allclose(harsanyi_and(v), brute_and(v), atol=1e-12)
    assert torch.allclose(harsanyi_or(v), brute_or(v), atol=1e-12)


def test_known_games():
    # AND game: v(T) = 1 iff both players present -> a single AND interaction on {0, 1}
    v = torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert harsanyi_and(v).tolist() == [0.0, 0.0, 0.0, 1.0]
    # OR game: v(T) = 1 iff any player present -> a single OR interaction on {0, 1}
    v = torch.tensor([0.0, 1.0, 1.0, 1.0])
    assert harsanyi_or(v).tolist() == [0.0, 0.0, 0.0, 1.0]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), seed=st.integers(0, 10_000))
def test_axioms_efficiency_and_universal_matching(n, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(1 << n, dtype=torch.float64, generator=g) * 5
    gamma = torch.randn(1 << n, dtype=torch.float64, generator=g)
    eps = 0.1 * torch.randn(1 << n, dtype=torch.float64, generator=g)
    ia = harsanyi_and(v)
    assert float(efficiency_gap(v, ia)) < 1e-6
    assert float(matching_gap(v, ia)) < 1e-6
    io = harsanyi_or(v)
    assert float(matching_gap(v, torch.zeros_like(io), io)) < 1e-6
    for merge in (True, False):
        a, o = and_or_interactions(v, gamma, eps, merge=merge)
        assert float(matching_gap(v, a, o, eps)) < 1e-6
        assert float(efficiency_gap(v, a, o, eps)) < 1e-6


def test_identities_of_the_plain_split():
    v = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a, o = and_or_interactions(v, merge=False)
    assert torch.allclose(a, 0.5 * harsanyi_and(v), atol=1e-12)
    assert torch.allclose(o[1:], 0.5 * harsanyi_or(v)[1:], atol=1e-12)
    am, om = and_or_interactions(v)
    singles = [0] + [1 << i for i in range(6)]
    assert torch.all(om[singles] == 0)
    assert torch.allclose(am[singles], a[singles] + o[singles])
    assert torch.allclose(reconstruct(am, om), reconstruct(a, o), atol=1e-12)
    a2, o2 = merge_singletons(a, o)
    assert torch.equal(a2, am) and torch.equal(o2, om)


def test_batched_equals_per_sample_and_keeps_dtype():
    v = torch.randn(3, 2, 32, generator=torch.Generator().manual_seed(2))
    out = harsanyi_and(v)
    assert out.dtype == torch.float32 and out.shape == v.shape
    for i, j in itertools.product(range(3), range(2)):
        assert torch.allclose(out[i, j], harsanyi_and(v[i, j]), atol=1e-5)
    assert torch.allclose(harsanyi_or(v)[1, 1], harsanyi_or(v[1, 1]))
    assert v.shape == (3, 2, 32)  # input untouched


def test_dense_matrix_definition_matches():
    """The official code's dense reward->interaction matrices, re-derived by definition."""
    n = 4
    k = 1 << n
    size = subset_sizes(n)
    mat = torch.zeros(k, k, dtype=torch.float64)
    for s in range(k):
        for t in range(k):
            if t & s == t:
                mat[s, t] = (-1.0) ** int(size[s] - size[t])
    v = torch.randn(k, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(mat @ v, harsanyi_and(v), atol=1e-12)


def test_subset_helpers():
    assert subset_to_index([0, 3]) == 9
    assert sorted(index_to_subset(9)) == [0, 3]
    assert subset_sizes(3).tolist() == [0, 1, 1, 2, 1, 2, 2, 3]
    for m in range(16):
        assert subset_to_index(index_to_subset(m)) == m
    with pytest.raises(ValueError, match="listed twice"):
        subset_to_index([1, 1])
    with pytest.raises(ValueError, match="players"):
        subset_to_index([4], n=4)


@pytest.mark.parametrize("length", [0, 1, 3, 6, 1000])
def test_length_not_power_of_two_is_refused(length):
    with pytest.raises(ValueError, match="2\\*\\*n"):
        harsanyi_and(torch.zeros(length))


def test_too_many_players_refused_with_a_hint():
    with pytest.raises(ValueError, match="group players"):
        n_from_length(1 << 21, where="test")
    with pytest.raises(ValueError, match="at most 20"):
        subset_sizes(25)


def test_bad_tensors():
    with pytest.raises(ValueError, match="finite"):
        harsanyi_and(torch.tensor([0.0, float("nan")]))
    with pytest.raises(TypeError, match="floating"):
        harsanyi_and(torch.tensor([0, 1]))
    with pytest.raises(TypeError):
        harsanyi_or([0.0, 1.0])
    with pytest.raises(ValueError, match="broadcastable"):
        and_or_interactions(torch.zeros(8), gamma=torch.zeros(4))


def test_bench_dense_matrix_is_the_moebius_map():
    from dnnkit.interactions.bench import dense_moebius_matrix

    v = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(dense_moebius_matrix(6) @ v, harsanyi_and(v), atol=1e-12)


def test_transforms_are_differentiable():
    v = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.autograd.gradcheck(lambda x: harsanyi_or(harsanyi_and(x)),
                                    (v.clone().requires_grad_(),))
    g = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert torch.autograd.gradcheck(lambda x: torch.cat(and_or_interactions(v, x)),
                                    (g.clone().requires_grad_(),))
