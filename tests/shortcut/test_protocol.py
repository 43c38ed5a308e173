"""WCST-ML protocol: levels, diagonal / off-diagonal construction, exact chance references."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from dnnkit.shortcut import augmented_training_set, make_wcst_ml
from dnnkit.shortcut.experiment import color_reader, reader_scores
from dnnkit.shortcut.protocol import bin_levels, chance_levels, level_of
from dnnkit.shortcut.sources import DSpritesSource, FactorDataset

CUES = ("color", "shape", "scale", "orientation")
SRC = DSpritesSource(size=16)


@pytest.fixture(scope="module")
def splits():
    return make_wcst_ml(SRC, CUES, n_train=90, n_val=30, n_test=156, seed=0)


def _levels(s, data):
    return np.stack([level_of(data.factors[:, c.factor_index], c) for c in s.cues], 1)


def test_levels_balanced_and_official():
    s = make_wcst_ml(SRC, ["color", "shape", "scale", "orientation", "pos_x"], n_train=5,
                     n_val=0, n_test=240, seed=0)
    lv = {c.name: c.levels for c in s.cues}
    assert lv["color"] == ((0,), (1,), (2,))  # red, green, blue; white never a level
    assert lv["scale"] == ((0, 1), (2, 3), (4, 5))
    assert [len(x) for x in lv["orientation"]] == [14, 13, 13]
    assert [len(x) for x in lv["pos_x"]] == [11, 11, 10]
    ones = np.ones
    assert bin_levels(ones(6), 3, kind="ordinal", binning="official") == ((0, 1), (2,), (3, 4))
    off40 = bin_levels(ones(40), 3, kind="ordinal", binning="official")
    assert off40 == (tuple(range(13)), tuple(range(13, 26)), tuple(range(26, 39)))
    off32 = bin_levels(ones(32), 3, kind="ordinal", binning="official")
    assert off32 == (tuple(range(10)), tuple(range(10, 20)), tuple(range(20, 31)))
    # categorical: most frequent values, ties in index order
    assert bin_levels(np.array([5, 9, 9, 1]), 2, kind="categorical") == ((1,), (2,))
    # ordinal with uneven counts: contiguous bins of about equal mass
    b = bin_levels(np.array([50, 1, 1, 1, 1, 46]), 2, kind="ordinal")
    assert b == ((0,), (1, 2, 3, 4, 5))


def test_diagonal_sets_are_diagonal_and_balanced(splits):
    for data in (splits.train, splits.diag_val):
        lv = _levels(splits, data)
        assert (lv == data.y.numpy()[:, None]).all()
        assert np.bincount(data.y.numpy()).tolist() == [len(data) // 3] * 3
    assert splits.train.x.shape == (90, 3, 16, 16)
    assert 0.0 <= float(splits.train.x.min()) and float(splits.train.x.max()) <= 1.0


def test_offdiag_sets(splits):
    K, L = 4, 3
    combos = [c for c in itertools.product(range(L), repeat=K) if len(set(c)) > 1]
    for i, cue in enumerate(CUES):
        d = splits.offdiag[cue]
        lv = _levels(splits, d)
        assert (lv >= 0).all()  # uniform_levels: every cue inside its levels
        assert not (lv == lv[:, :1]).all(1).any()  # never diagonal
        assert (lv[:, i] == d.y.numpy()).all()  # labelled by the cue
        counts = {tuple(r): 0 for r in combos}
        for r in lv:
            counts[tuple(r)] += 1
        assert set(counts.values()) == {2}  # 156 = 2 x 78 combinations, each equally often


def test_colour_reader_scores_one_and_exact_chance(splits):
    """Oracle: a hand-written colour reader scores 1.0 on O_color and exactly
    (L^(K-1) - L)/(L^K - L) on the others when the test size is a multiple of L^K - L."""
    rs = reader_scores(splits)
    assert rs["color"] == 1.0
    other = chance_levels(3, 4)[1]
    assert other == pytest.approx(24 / 78)
    for c in ("shape", "scale", "orientation"):
        assert rs[c] == pytest.approx(other, abs=1e-6)
    # and the reader reads every diagonal training image correctly
    assert (color_reader(splits.train.x) == splits.train.y).all()


def test_factor_reader_brute_force_chance():
    """A reader that uses cue c' perfectly (from the factor table) scores 1 on O_c' and the
    analytic chance on every other O_c, for K = 3 and K = 2."""
    for cues in (("color", "shape", "scale"), ("shape", "scale")):
        s = make_wcst_ml(SRC, cues, n_train=6, n_val=0, n_test=24 * 6, seed=1)
        ref = chance_levels(3, len(cues))[1]
        for reader in s.cues:
            for c, d in s.offdiag.items():
                pred = level_of(d.factors[:, reader.factor_index], reader)
                acc = float((pred == d.y.numpy()).mean())
                assert acc == pytest.approx(1.0 if c == reader.name else ref)


def test_official_offdiag_sampling():
    s = make_wcst_ml(SRC, ["shape", "color"], n_train=6, n_val=0, n_test=400,
                     offdiag_sampling="official", seed=0)
    d = s.offdiag["shape"]
    lv = _levels(s, d)
    assert (lv[:, 0] == d.y.numpy()).all()
    assert not ((lv >= 0).all(1) & (lv[:, 0] == lv[:, 1])).any()
    assert (d.factors[:, 0] == 3).any()  # white objects appear, as in the authors' code


def test_seeded_and_deterministic():
    a = make_wcst_ml(SRC, ["color", "shape"], n_train=30, n_val=0, n_test=12, seed=5)
    b = make_wcst_ml(SRC, ["color", "shape"], n_train=30, n_val=0, n_test=12, seed=5)
    c = make_wcst_ml(SRC, ["color", "shape"], n_train=30, n_val=0, n_test=12, seed=6)
    assert np.array_equal(a.train.ids, b.train.ids) and torch.equal(a.train.x, b.train.x)
    assert not np.array_equal(a.train.ids, c.train.ids)


def test_augmented_training_set_forces_the_cue(splits):
    aug = augmented_training_set(splits, "shape", n=60, seed=0)
    assert len(aug) == len(splits.train) + 60
    spec = splits.cue("shape")
    assert (level_of(aug.factors[:, spec.factor_index], spec) == aug.y.numpy()).all()
    lv = _levels(splits, aug)
    n_off = int((~(lv == lv[:, :1]).all(1)).sum())
    assert n_off == 60
    assert not np.isin(aug.ids, splits.offdiag["shape"].ids).any()
    with pytest.raises(KeyError, match="Did you mean 'shape'"):
        augmented_training_set(splits, "shap")


def test_dedupe_and_capacity():
    src = DSpritesSource(size=16, dedupe=True)
    s = make_wcst_ml(src, ["shape", "orientation"], n_train=30, n_val=0, n_test=12, seed=0,
                     fixed={"pos_x": [0], "pos_y": [0], "scale": [0], "color": [0]})
    assert len(np.unique(s.train.ids)) == 30
    assert (s.train.factors[:, 3] != 39).all()
    with pytest.raises(ValueError, match="distinct"):
        # one shape x 13 orientations per diagonal level (39 folded onto 0): 14 images wanted
        make_wcst_ml(src, ["shape", "orientation"], n_train=42, n_val=0, n_test=12, seed=0,
                     fixed={"pos_x": [0], "pos_y": [0], "scale": [0], "color": [0]})


def _toy_dataset(n_rep: int = 3) -> FactorDataset:
    rows = np.array([r for r in itertools.product(range(3), range(4), range(2))
                     for _ in range(n_rep)])
    imgs = np.zeros((len(rows), 1, 4, 4), np.uint8)
    imgs[:, 0, 0, 0] = rows[:, 0] * 100
    imgs[:, 0, 1, 1] = rows[:, 1] * 80
    return FactorDataset(imgs, rows, ("a", "b", "c"), kinds={"b": "ordinal"})


def test_factor_dataset_source():
    ds = _toy_dataset()
    s = make_wcst_ml(ds, ["a", "b"], n_train=12, n_val=0, n_test=12, seed=0)
    assert s.n_levels == 3 and s.cue("b").levels == ((0, 1), (2,), (3,))
    x = s.train.x
    assert x.shape == (12, 1, 4, 4) and float(x.max()) <= 1.0
    # images are the dataset's rows
    assert torch.allclose(x[:, 0, 0, 0], torch.as_tensor(s.train.factors[:, 0] * 100 / 255,
                                                         dtype=torch.float32))
    assert ds.lookup(np.array([[2, 3, 1], [0, 0, 0]])).tolist()[0] >= 0
    with pytest.raises(ValueError, match="only"):
        make_wcst_ml(ds, ["a", "b"], n_train=300, n_val=0, n_test=12, seed=0)


def test_bad_inputs():
    with pytest.raises(KeyError, match="Did you mean 'shape'"):
        make_wcst_ml(SRC, ["shap", "color"])
    with pytest.raises(ValueError, match="at least 2"):
        make_wcst_ml(SRC, ["color"])
    with pytest.raises(ValueError, match="at most 3"):
        make_wcst_ml(SRC, ["color", "shape"], n_levels=4)
    with pytest.raises(ValueError, match="binning"):
        make_wcst_ml(SRC, ["color", "shape"], binning="greedy")
    with pytest.raises(ValueError, match="offdiag_sampling"):
        make_wcst_ml(SRC, ["color", "shape"], offdiag_sampling="all")
    with pytest.raises(ValueError, match="cannot also be fixed"):
        make_wcst_ml(SRC, ["color", "shape"], fixed={"shape": [0]})
    with pytest.raises(TypeError, match="DSpritesSource or FactorDataset"):
        make_wcst_ml(np.zeros(3), ["color", "shape"])
    rows = np.array([[0, 0], [0, 1], [0, 2]])
    single = FactorDataset(np.zeros((3, 1, 4, 4), np.float32), rows, ("a", "b"))
    with pytest.raises(ValueError, match="at least 2 levels"):
        make_wcst_ml(single, ["a", "b"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FactorDataset(np.full((3, 1, 4, 4), 1.5, np.float32), rows, ("a", "b"))
    with pytest.raises(ValueError, match="rows"):
        FactorDataset(np.zeros((2, 1, 4, 4), np.float32), rows, ("a", "b"))


def test_orientation_on_symmetric_shapes_warns():
    with pytest.warns(UserWarning, match="unidentifiable"):
        make_wcst_ml(SRC, ["color", "orientation"], n_train=6, n_val=0, n_test=6,
                     fixed={"shape": [0, 1]}, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_wcst_ml(SRC, ["color", "orientation"], n_train=6, n_val=0, n_test=6, seed=0)
