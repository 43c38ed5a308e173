import gzip
import struct

import numpy as np
import pytest
import torch

from dnnkit.feddip.data import (
    load_cifar10,
    load_fashion_mnist,
    partition_dirichlet,
    partition_iid,
    split_clients,
)


def test_iid_partition_covers_everything_once():
    parts = partition_iid(103, 10, seed=1)
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(103))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_dirichlet_partition_is_skewed_disjoint_and_complete():
    y = np.repeat(np.arange(10), 60)
    parts = partition_dirichlet(y, 8, alpha=0.3, seed=0, min_size=10)
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(len(y)))
    assert min(map(len, parts)) >= 10
    # label skew: some client's majority class holds well over 1/10 of its data
    top = max(np.bincount(y[p], minlength=10).max() / len(p) for p in parts)
    assert top > 0.3
    assert all(np.array_equal(a, b) for a, b in
               zip(parts, partition_dirichlet(y, 8, alpha=0.3, seed=0, min_size=10)))


def test_partition_bad_inputs():
    with pytest.raises(ValueError, match="'n' parameter"):
        partition_iid(3, 5)
    with pytest.raises(ValueError, match="num_clients"):
        partition_iid(3, 0)
    with pytest.raises(ValueError, match="alpha"):
        partition_dirichlet(np.zeros(100), 2, alpha=0.0)
    with pytest.raises(ValueError, match="labels"):
        partition_dirichlet(np.zeros(15), 2, min_size=10)
    with pytest.raises(ValueError, match="empty client"):
        split_clients(torch.zeros(3, 2), torch.zeros(3), [np.array([0, 1]), np.array([], int)])


def _idx(path, arr, code):
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + b"".join(
        struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.tobytes())


def test_fashion_mnist_loader_reads_idx_files(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 3, 9, 1, 2], dtype=np.uint8)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", imgs, 0x08)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, 0x08)
    x, y = load_fashion_mnist(tmp_path)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[1, 0], torch.from_numpy(imgs[1] / 255.0).float())
    assert y.tolist() == [0, 3, 9, 1, 2]
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_fashion_mnist(tmp_path, train=False)


def test_cifar10_loader_reads_binary_batches(tmp_path):
    rng = np.random.default_rng(0)
    rec = np.concatenate([np.array([[7], [2]], dtype=np.uint8),
                          rng.integers(0, 256, (2, 3072), dtype=np.uint8)], axis=1)
    rec.tofile(tmp_path / "test_batch.bin")
    x, y = load_cifar10(tmp_path, train=False)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [7, 2]
    assert float(x.max()) <= 1.0
    with pytest.raises(FileNotFoundError):
        load_cifar10(tmp_path, train=True)
