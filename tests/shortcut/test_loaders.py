"""Loaders for the real dSprites .npz and a UTKFace folder, on small files made here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dnnkit.shortcut import make_wcst_ml
from dnnkit.shortcut.loaders import load_dsprites_npz, load_utkface


def _write_npz(path, with_metadata=True):
    # a reduced dSprites grid: 3 shapes x 6 scales x 2 orientations x 2 x 2 positions
    rows = np.array([(0, s, sc, o, x, y) for s, sc, o, x, y in
                     itertools.product(range(3), range(6), (0, 20), (0, 31), (0, 31))])
    imgs = np.zeros((len(rows), 64, 64), np.uint8)
    imgs[np.arange(len(rows)), rows[:, 1], rows[:, 2]] = 1  # encode shape/scale in one pixel
    values = np.stack([np.ones(len(rows)), rows[:, 1] + 1.0, 0.5 + 0.1 * rows[:, 2],
                       rows[:, 3] * 2 * np.pi / 39, rows[:, 4] / 31, rows[:, 5] / 31], 1)
    arrays = {"imgs": imgs, "latents_classes": rows.astype(np.int64), "latents_values": values}
    if with_metadata:
        arrays["metadata"] = np.array({"title": "dsprites"}, dtype=object)
    np.savez_compressed(path, **arrays)
    return rows


def test_dsprites_npz_roundtrip(tmp_path):
    path = tmp_path / "dsprites.npz"
    rows = _write_npz(path)
    ds = load_dsprites_npz(path)
    assert len(ds) == len(rows) and ds.sizes == (1, 3, 6, 40, 32, 32)
    assert ds.kinds["scale"] == "ordinal" and ds.kinds["shape"] == "categorical"
    assert ds.value_names(2)[:2] == ["0.5", "0.6"]
    s = make_wcst_ml(ds, ["shape", "scale"], n_train=18, n_val=0, n_test=12, seed=0)
    assert s.train.x.shape == (18, 1, 64, 64)
    # the images are the file's: the lit pixel sits at (shape, scale)
    lit = s.train.x[:, 0].flatten(1).argmax(1).numpy()
    assert np.array_equal(lit // 64, s.train.factors[:, 1])
    assert np.array_equal(lit % 64, s.train.factors[:, 2])
    with pytest.raises(ValueError, match="'color'.*at least 2 levels"):
        make_wcst_ml(ds, ["color", "shape"])


def test_dsprites_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dsprites_npz(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, imgs=np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="missing arrays"):
        load_dsprites_npz(bad)
    bad2 = tmp_path / "bad2.npz"
    np.savez(bad2, imgs=np.zeros((2, 64, 64), np.uint8), latents_classes=np.zeros((3, 6), int))
    with pytest.raises(ValueError, match="expected"):
        load_dsprites_npz(bad2)


def test_utkface_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    names = []
    for i, (age, g, e) in enumerate(itertools.product((5, 30, 70), (0, 1), (0, 1, 2))):
        name = f"{age}_{g}_{e}_2017011{i:04d}.jpg.chip.jpg"
        arr = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / name)
        names.append(name)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "61_1_20170109142408075.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_utkface(tmp_path, size=16)
    assert len(ds) == 18 and ds.images.shape == (18, 3, 16, 16)
    assert ds.names == ("age", "gender", "ethnicity")
    assert sorted(set(ds.factors[:, 0])) == [5, 30, 70]
    s = make_wcst_ml(ds, ["ethnicity", "gender", "age"], n_train=2, n_val=0, n_test=6, seed=0)
    assert s.n_levels == 2
    assert s.cue("age").levels == ((5, 30), (70,)) or s.cue("age").levels == ((5,), (30, 70))
    assert float(s.train.x.max()) <= 1.0
    assert len(load_utkface(tmp_path, size=8, max_images=5)) == 5


def test_utkface_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_utkface(tmp_path / "nope")
    with pytest.raises(ValueError, match="age_gender_race_date"):
        load_utkface(tmp_path)
