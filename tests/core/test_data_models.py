import gzip
import struct

import numpy as np
import pytest
import torch

from dnnkit.core.data import (
    DSPRITES_GRID,
    load_digits_split,
    read_cifar10_binary,
    read_idx,
    render_dsprites,
    sample_dsprites,
)
from dnnkit.core.models import lenet5, mlp, mobilenet_v1, small_cnn


def test_digits_split_is_deterministic_stratified_and_disjoint():
    a, b = load_digits_split(seed=1), load_digits_split(seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape[1:] == (1, 8, 8) and 0 <= a.x_train.min() and a.x_train.max() <= 1
    assert len(a.x_train) + len(a.x_test) == 1797
    counts = torch.bincount(a.y_test, minlength=10).float() / len(a.y_test)
    assert counts.min() > 0.08 and counts.max() < 0.12
    rows_tr = {tuple(r) for r in a.x_train.flatten(1).tolist()}
    overlap = sum(tuple(r) in rows_tr for r in a.x_test.flatten(1).tolist())
    assert overlap < 5  # digits has a handful of duplicate images, no shared indices
    c = load_digits_split(seed=2)
    assert not torch.equal(a.y_test, c.y_test)


def test_dsprites_factors_and_rendering():
    imgs, f = sample_dsprites(64, seed=0, size=64)
    assert imgs.shape == (64, 1, 64, 64)
    assert set(imgs.unique().tolist()) <= {0.0, 1.0}
    assert set(f) == set(DSPRITES_GRID)
    imgs2, _ = sample_dsprites(64, seed=0, size=64)
    assert torch.equal(imgs, imgs2)
    n = 3
    small = render_dsprites(torch.arange(n), torch.full((n,), 0.5), torch.zeros(n),
                            torch.full((n,), 0.5), torch.full((n,), 0.5))
    big = render_dsprites(torch.arange(n), torch.full((n,), 1.0), torch.zeros(n),
                          torch.full((n,), 0.5), torch.full((n,), 0.5))
    area_s, area_b = small.sum((1, 2, 3)), big.sum((1, 2, 3))
    assert (area_s > 0).all() and (area_b > 2.5 * area_s).all()  # area ~ scale^2
    # square is larger than the ellipse (same bounding box), the three shapes differ
    assert area_b[0] > area_b[1]
    assert not torch.equal(big[1], big[2])
    # position moves the centre of mass
    left = render_dsprites(torch.zeros(1, dtype=torch.long), torch.ones(1), torch.zeros(1),
                           torch.zeros(1), torch.full((1,), 0.5))
    cols = torch.arange(64.0)
    assert (left[0, 0].sum(0) * cols).sum() / left.sum() < 25
    with pytest.raises(ValueError):
        render_dsprites(torch.tensor([3]), torch.ones(1), torch.zeros(1), torch.zeros(1),
                        torch.zeros(1))


def test_idx_reader(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", 2, 3, 4) + arr.tobytes()
    (tmp_path / "a.idx").write_bytes(raw)
    with gzip.open(tmp_path / "a.idx.gz", "wb") as fh:
        fh.write(raw)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), arr)
    assert np.array_equal(read_idx(tmp_path / "a.idx.gz"), arr)
    (tmp_path / "t.idx").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="promises"):
        read_idx(tmp_path / "t.idx")
    (tmp_path / "m.idx").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "m.idx")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "none.idx")


def test_cifar_binary_reader(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([3, 7], dtype=np.uint8)
    pix = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    (tmp_path / "b.bin").write_bytes(np.concatenate([labels[:, None], pix], 1).tobytes())
    x, y = read_cifar10_binary(tmp_path / "b.bin")
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 7]
    assert np.array_equal(x[1].reshape(-1), pix[1])
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="3073"):
        read_cifar10_binary(tmp_path / "bad.bin")


def test_reference_models_shapes():
    assert mlp(64, [32, 16], 10)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert lenet5(1, 10, input_size=28)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert lenet5(3, 10, input_size=32)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert small_cnn(1, 10, input_size=8)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    net = mobilenet_v1(1000)
    # MobileNetV1 1.0-224 has 4.2 M parameters (Howard et al. 2017, Table 8)
    n = sum(p.numel() for p in net.parameters())
    assert 4.2e6 < n < 4.27e6
    assert net.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    half = mobilenet_v1(10, width_mult=0.5, in_channels=1)
    assert half.eval()(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    assert half.dw1.groups == half.dw1.in_channels
    g = mobilenet_v1(10, width_mult=0.25, groups_per_depthwise=2, batch_norm=False)
    assert g.dw1.groups == g.dw1.in_channels // 2
