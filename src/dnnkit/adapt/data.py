"""Readers for the paper's datasets (local files only; the reproduction defaults to digits).

CIFAR-10 and CIFAR-100 in their *binary* versions (``cifar-10-batches-bin``,
``cifar-100-binary``) — never the Python pickles. CIFAR-10 uses
:func:`dnnkit.core.data.read_cifar10_binary`, CIFAR-100
:func:`dnnkit.core.data.read_cifar100_binary` (re-exported here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnnkit.core.data import Split, read_cifar10_binary, read_cifar100_binary
from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import check_choice, check_int

__all__ = ["read_cifar100_binary", "load_cifar_split"]


def load_cifar_split(root: str | Path, dataset: str = "cifar10", *, n_train: int = 50_000,
                     n_test: int = 10_000, seed: int = 0) -> Split:
    """CIFAR-10/100 binary files under ``root`` as a :class:`~dnnkit.core.data.Split`.

    Looks for ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`` or
    ``cifar-100-binary/{train,test}.bin`` under ``root`` (or directly in it). Pixels are scaled to
    [0, 1]; ``n_train`` / ``n_test`` random images are kept (seeded).
    """
    where = "adapt.load_cifar_split"
    check_choice(dataset, "dataset", ("cifar10", "cifar100"), where=where)
    check_int(n_train, "n_train", 1, 50_000, where=where)
    check_int(n_test, "n_test", 1, 10_000, where=where)
    root = Path(root)
    if dataset == "cifar10":
        base = root / "cifar-10-batches-bin"
        base = base if base.is_dir() else root
        xtr, ytr = read_cifar10_binary(sorted(base.glob("data_batch_*.bin"))
                                       or [base / "data_batch_1.bin"])
        xte, yte = read_cifar10_binary(base / "test_batch.bin")
    else:
        base = root / "cifar-100-binary"
        base = base if base.is_dir() else root
        xtr, ytr = read_cifar100_binary(base / "train.bin")
        xte, yte = read_cifar100_binary(base / "test.bin")
    rng = make_rng(seed)
    tr = np.sort(rng.permutation(len(xtr))[:n_train])
    te = np.sort(rng.permutation(len(xte))[:n_test])

    def f(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32) / 255.0)

    return Split(f(xtr[tr]), torch.from_numpy(ytr[tr]), f(xte[te]), torch.from_numpy(yte[te]))
