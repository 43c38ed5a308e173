"""Readers for the paper's datasets (local files only; the reproduction defaults to digits).

CIFAR-10 and CIFAR-100 in their *binary* versions (``cifar-10-batches-bin``,
``cifar-100-binary``) — never the Python pickles. CIFAR-10 uses
:func:`dnnkit.core.data.read_cifar10_binary`; CIFAR-100 records are 1 coarse label byte, 1 fine
label byte and 3072 pixel bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnnkit.core.data import Split, read_cifar10_binary
from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import check_choice, check_int

__all__ = ["read_cifar100_binary", "load_cifar_split"]


def read_cifar100_binary(paths: str | Path | list[str | Path], *, label: str = "fine"
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-100 binary files (``train.bin``, ``test.bin``).

    Returns images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 (``label="fine"``: 100
    classes, ``"coarse"``: 20 super-classes).
    """
    check_choice(label, "label", ("fine", "coarse"), where="adapt.read_cifar100_binary")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    images, labels = [], []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"CIFAR-100 file {str(p)!r} does not exist.")
        raw = np.fromfile(p, dtype=np.uint8)
        if raw.size == 0 or raw.size % 3074:
            raise ValueError(f"{str(p)!r} is not a CIFAR-100 binary file: {raw.size} bytes is "
                             "not a multiple of 3074.")
        rec = raw.reshape(-1, 3074)
        if rec[:, 0].max() > 19 or rec[:, 1].max() > 99:
            raise ValueError(f"{str(p)!r} has labels out of range: not a CIFAR-100 binary file.")
        labels.append(rec[:, 1 if label == "fine" else 0].astype(np.int64))
        images.append(rec[:, 2:].reshape(-1, 3, 32, 32))
    return np.concatenate(images), np.concatenate(labels)


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
