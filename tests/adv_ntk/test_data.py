"""Paper dataset readers on small files the test writes (CIFAR-10 binary, SVHN .mat)."""

import numpy as np
import pytest
import torch

from dnnkit.adv_ntk.data import load_paper_data


def _write_cifar(root, n_per_batch=4):
    rng = np.random.default_rng(0)
    d = root / "cifar-10-batches-bin"
    d.mkdir()
    recs = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, n_per_batch).astype(np.uint8)
        pix = rng.integers(0, 256, (n_per_batch, 3072)).astype(np.uint8)
        np.concatenate([labels[:, None], pix], 1).tofile(d / name)
        recs[name] = (labels, pix)
    return recs


def test_cifar10_binary(tmp_path):
    recs = _write_cifar(tmp_path)
    x, y = load_paper_data("cifar10", tmp_path, split="train", n=None)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float64 and y.shape == (20,)
    labels, pix = recs["data_batch_1.bin"]
    assert torch.equal(y[:4], torch.from_numpy(labels.astype(np.int64)))
    want = torch.from_numpy(pix[0].reshape(3, 32, 32).astype(np.float64)) / 255 - 0.5
    assert torch.allclose(x[0], want)
    assert float(x.min()) >= -0.5 and float(x.max()) <= 0.5
    xs, ys = load_paper_data("cifar10", tmp_path, n=7, seed=1)
    assert ys.shape == (7,) and ys.dtype == torch.int64
    xs2, _ = load_paper_data("cifar10", tmp_path, n=7, seed=1)
    assert xs.shape[0] == 7 and torch.equal(xs, xs2)
    xt, _ = load_paper_data("cifar10", tmp_path / "cifar-10-batches-bin", split="test", n=None)
    assert xt.shape[0] == 4


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (32, 32, 3, 6)).astype(np.uint8)
    y = np.array([[10], [1], [2], [3], [10], [9]], dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    xs, ys = load_paper_data("svhn", tmp_path, n=None, dtype=torch.float32)
    assert xs.shape == (6, 3, 32, 32) and xs.dtype == torch.float32
    assert ys.tolist() == [0, 1, 2, 3, 0, 9]
    want = torch.from_numpy(x[:, :, :, 2].transpose(2, 0, 1).astype(np.float32)) / 255 - 0.5
    assert torch.allclose(xs[2], want)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="binary"):
        load_paper_data("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match="SVHN"):
        load_paper_data("svhn", tmp_path, split="test")
    with pytest.raises(ValueError, match="'name'"):
        load_paper_data("mnist", tmp_path)
    with pytest.raises(ValueError, match="'split'"):
        load_paper_data("svhn", tmp_path, split="extra")
    _write_cifar(tmp_path)
    with pytest.raises(ValueError, match="'n'"):
        load_paper_data("cifar10", tmp_path, n=12000)
