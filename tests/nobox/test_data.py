"""The ImageNet-style folder loader on tiny image files made here."""

import numpy as np
import pytest
import torch
from PIL import Image

from dnnkit.nobox.data import load_image_folder


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(4):
        d = tmp_path / f"n0{c}"
        d.mkdir()
        for i in range(3):
            arr = rng.integers(0, 256, (20 + 4 * i, 30, 3), dtype=np.uint8)
            arr[:, :, 0] = 40 * c                       # class-specific red channel
            Image.fromarray(arr).save(d / f"img{i}.png")
        (d / "notes.txt").write_text("not an image")
    (tmp_path / "stray.png").write_bytes(b"")           # files at the root are ignored
    return tmp_path


def test_loader_shapes_range_and_protocol(folder):
    x, y, names = load_image_folder(folder, n_classes=4, per_class=2, size=16, resize=18, seed=0)
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert names == ["n00", "n01", "n02", "n03"]
    assert sorted(y.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(y[2 * k] == y[2 * k + 1] for k in range(4))   # classes kept together, in order
    for k in range(8):                                        # red channel identifies the class
        assert torch.allclose(x[k, 0], torch.full((16, 16), 40 * int(y[k]) / 255), atol=1e-6)
    x2, y2, _ = load_image_folder(folder, n_classes=4, per_class=2, size=16, resize=18, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    orders = {tuple(load_image_folder(folder, n_classes=4, per_class=1, size=16, resize=18,
                                      seed=s)[1].tolist()) for s in range(6)}
    assert len(orders) > 1                                     # class order is seed-dependent


def test_loader_bad_input(folder):
    with pytest.raises(ValueError, match="'n_classes'"):
        load_image_folder(folder, n_classes=5, per_class=1, size=16, resize=18)
    with pytest.raises(ValueError, match="'per_class'"):
        load_image_folder(folder, n_classes=2, per_class=4, size=16, resize=18)
    with pytest.raises(ValueError, match="'size'"):
        load_image_folder(folder, n_classes=2, per_class=1, size=32, resize=18)
    with pytest.raises(ValueError, match="'root'"):
        load_image_folder(folder / "missing", n_classes=2)
