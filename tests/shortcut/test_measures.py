"""Measurements: sphere test (analytic quadratic), KC proxy (stdlib oracle), cue preference."""

from __future__ import annotations

import bz2
import lzma
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from dnnkit.shortcut import cue_preference, kc_proxy, make_wcst_ml, sphere_flatness
from dnnkit.shortcut.measures import PreferenceResult, basin_rerun, offdiag_accuracy
from dnnkit.shortcut.sources import DSpritesSource

SRC = DSpritesSource(size=16)


class Quadratic(nn.Module):
    """L(theta) = 0.5 theta^T H theta, minimum at theta = 0 (returned as the 'output')."""

    def __init__(self, h: torch.Tensor) -> None:
        super().__init__()
        self.h = h
        self.theta = nn.Parameter(torch.zeros(h.shape[0], dtype=h.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.theta @ self.h @ self.theta + 0 * x.sum()


class ColourReader(nn.Module):
    """A 'model' that reads the colour cue: per-channel sums as logits."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.sum((2, 3))


def _first(out, y):
    return out


def test_sphere_test_matches_quadratic_expectation():
    """Oracle: E[delta] = r^2 tr(H) / (2 d) for uniformly random directions of norm r."""
    d = 30
    g = torch.Generator().manual_seed(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    h = a @ a.T / d + torch.eye(d, dtype=torch.float64)
    model = Quadratic(h)
    data = (torch.zeros(4, 1), torch.zeros(4))
    radii = [0.5, 1.0, 2.0]
    out = sphere_flatness(model, data, radii, n_dirs=4000, loss_fn=_first, seed=0)
    expect = np.array(radii) ** 2 * float(torch.trace(h)) / (2 * d)
    sem = out.std(1) / np.sqrt(out.shape[1])
    assert np.all(np.abs(out.mean(1) - expect) < 4 * sem + 1e-12)
    # isotropic H = c I: every direction gives exactly c r^2 / 2
    iso = Quadratic(3.0 * torch.eye(d, dtype=torch.float64))
    out = sphere_flatness(iso, data, radii, n_dirs=5, loss_fn=_first, seed=1)
    assert np.allclose(out, 1.5 * np.array(radii)[:, None] ** 2, rtol=1e-10)


def test_sphere_test_leaves_the_model_as_found():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(20, 3, 2, 2), torch.randint(3, (20,))
    sphere_flatness(model, (x, y), [1.0], n_dirs=3, seed=0)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("radii", [[0.0], [-1.0, 2.0], [], [float("nan")]])
def test_sphere_test_rejects_bad_radii(radii):
    model = nn.Linear(2, 3)
    with pytest.raises(ValueError, match="radii"):
        sphere_flatness(model, (torch.zeros(2, 2), torch.zeros(2, dtype=torch.long)), radii)


def test_sphere_test_rejects_bad_dirs_and_data():
    model = nn.Linear(2, 3)
    data = (torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="n_dirs"):
        sphere_flatness(model, data, [1.0], n_dirs=0)
    with pytest.raises(TypeError, match="data"):
        sphere_flatness(model, torch.zeros(2, 2), [1.0])


@pytest.fixture(scope="module")
def splits():
    return make_wcst_ml(SRC, ["color", "shape", "scale", "orientation"], n_train=60, n_val=12,
                        n_test=78, seed=0)


def test_kc_proxy_matches_stdlib_on_one_base(splits):
    """Oracle: recompute the proxy for one base setting with the stdlib compressors."""
    comps = {"zlib": lambda b: zlib.compress(b, 9), "bz2": lambda b: bz2.compress(b, 9),
             "lzma": lambda b: lzma.compress(b, preset=9)}
    src = splits.source
    for name, comp in comps.items():
        got = kc_proxy(splits, compressor=name, n_bases=1, seed=3)
        ids = src.draw([None] * 6, 4, np.random.default_rng(3), None)
        base = src.factors_of(ids)[0]
        for cue in splits.cues:
            rows = np.repeat(base[None], 3, 0)
            rows[:, cue.factor_index] = cue.representatives
            u8 = (src.take(src.lookup(rows)) * 255).round().to(torch.uint8).numpy()
            want = len(comp(u8.tobytes())) - len(comp(u8[0].tobytes()))
            assert got[cue.name] == want


def test_kc_proxy_colour_is_simplest(splits):
    for comp in ("lzma", "zlib", "bz2"):
        kc = kc_proxy(splits, compressor=comp, n_bases=12, seed=0)
        assert min(kc, key=kc.get) == "color"


def test_kc_proxy_rejects_unknown_compressor(splits):
    with pytest.raises(ValueError, match="Did you mean 'lzma'"):
        kc_proxy(splits, compressor="lzmaa")
    with pytest.raises(ValueError, match="n_bases"):
        kc_proxy(splits, n_bases=0)


def test_colour_reader_model_offdiag_accuracy(splits):
    acc = offdiag_accuracy(ColourReader(), splits)
    assert acc["color"] == 1.0
    for c in ("shape", "scale", "orientation"):
        assert acc[c] == pytest.approx(splits.chance[c][1], abs=1e-6)


def _linear():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))


def test_cue_preference_shapes_and_global_rng_untouched(splits):
    state = torch.random.get_rng_state()
    res = cue_preference(_linear, splits, epochs=2, seeds=(0, 1), batch_size=32)
    assert torch.equal(state, torch.random.get_rng_state())
    assert res.acc["color"].shape == (2, 2) and res.val_acc.shape == (2, 2)
    assert all(0.0 <= float(a.min()) and float(a.max()) <= 1.0 for a in res.acc.values())
    again = cue_preference(_linear, splits, epochs=2, seeds=(0, 1), batch_size=32)
    assert np.array_equal(res.acc["shape"], again.acc["shape"])  # seeded
    assert sorted(res.ranking()) == sorted(splits.cue_names)


def test_cue_preference_rejects_wrong_output_width(splits):
    with pytest.raises(ValueError, match="L = 3 levels"):
        cue_preference(lambda: nn.Sequential(nn.Flatten(), nn.Linear(768, 5)), splits, epochs=1,
                       seeds=(0,))
    with pytest.raises(TypeError, match="model_fn"):
        cue_preference(lambda: 3, splits, epochs=1, seeds=(0,))
    with pytest.raises(ValueError, match="epochs"):
        cue_preference(_linear, splits, epochs=0)


def test_preference_result_summaries():
    acc = {"a": np.array([[0.2, 0.9], [0.3, 0.4]]), "b": np.array([[0.1, 0.3], [0.2, 0.8]])}
    res = PreferenceResult(("a", "b"), (0, 1), acc, np.zeros((2, 2)), np.zeros((2, 2)),
                           {"a": (0.5, 0.0), "b": (0.5, 0.0)})
    assert res.orders() == [["a", "b"], ["b", "a"]]
    assert res.adoption() == {"a": 0.5, "b": 0.5}
    assert res.ranking() == ["a", "b"]  # mean final 0.65 vs 0.55
    assert res.ranking(by="area") == ["a", "b"]


def test_basin_rerun_leaves_model_and_counts(splits):
    model = ColourReader()
    before = model.scale.detach().clone()
    out = basin_rerun(model, splits, [0.1, 5.0], n_dirs=2, epochs=1, seed=0)
    assert torch.equal(model.scale.detach(), before)
    assert set(out) == {0.1, 5.0}
    for fr in out.values():
        assert sum(fr.values()) == pytest.approx(1.0)
    # a tiny perturbation of the colour reader keeps it a colour solution
    assert out[0.1]["color"] == 1.0
    with pytest.raises(ValueError, match="radii"):
        basin_rerun(model, splits, [0.0])
