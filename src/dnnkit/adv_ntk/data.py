"""Readers for the paper's datasets (CIFAR-10, SVHN) from local files; nothing is downloaded.

The paper (Section 6) trains on 12,000 random training images with pixels ``ToTensor() - 0.5``,
i.e. in [-0.5, 0.5], and attacks with ε = 8/255 in that range.

- CIFAR-10: the *binary version* (``cifar-10-batches-bin``: ``data_batch_1.bin`` ...
  ``data_batch_5.bin``, ``test_batch.bin``), read by :func:`dnnkit.core.data.read_cifar10_binary`
  (never the pickled python version).
- SVHN: torchvision's format (``train_32x32.mat``, ``test_32x32.mat``: ``X`` of shape
  (32, 32, 3, N) uint8, ``y`` of shape (N, 1) with label 10 meaning digit 0), read with
  ``scipy.io.loadmat`` (MATLAB v5 arrays, no code execution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnnkit.core.data import read_cifar10_binary
from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import check_choice, check_int

__all__ = ["load_paper_data"]


def _cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 binary batches {missing} not found under {str(root)!r} "
                                "(download the 'binary version' from the CIFAR-10 page yourself).")
    return read_cifar10_binary([root / n for n in names])


def _svhn(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    path = root / f"{split}_32x32.mat"
    if not path.is_file():
        raise FileNotFoundError(f"SVHN file {str(path)!r} not found (torchvision's "
                                f"'{split}_32x32.mat' format is expected).")
    mat = loadmat(path)
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{str(path)!r} lacks the 'X' / 'y' arrays of the SVHN format.")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise ValueError(f"{str(path)!r}: X must be (32, 32, 3, N) with N = len(y); got "
                         f"{x.shape} and {y.shape[0]} labels.")
    y = np.where(y == 10, 0, y)
    if y.min() < 0 or y.max() > 9:
        raise ValueError(f"{str(path)!r}: labels must be in 1..10 (10 = digit 0).")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def load_paper_data(name: str, root: str | Path, *, split: str = "train", n: int | None = 12000,
                    seed: int = 0, dtype: torch.dtype = torch.float64
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 or SVHN from local files, as the paper uses them.

    Parameters
    ----------
    name : {"cifar10", "svhn"}
    root : path
        Folder with the files described in the module docstring.
    split : {"train", "test"}
    n : int or None
        Size of a random subset (paper: 12,000 training images); ``None`` = all.
    seed : int
        Seed of the subset.
    dtype : torch.dtype
        Image dtype (float64 by default, as the kernels use).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Images ``(n, 3, 32, 32)`` in [-0.5, 0.5] (``x / 255 - 0.5``) and labels ``(n,)`` int64.

    Raises
    ------
    FileNotFoundError
        Files missing (nothing is downloaded).
    ValueError
        Unknown name/split, malformed files, or ``n`` larger than the split.
    """
    where = "load_paper_data"
    check_choice(name, "name", ("cifar10", "svhn"), where=where)
    check_choice(split, "split", ("train", "test"), where=where)
    root = Path(root)
    x, y = _cifar10(root, split) if name == "cifar10" else _svhn(root, split)
    if n is not None:
        check_int(n, "n", 1, len(y), where=where)
        idx = np.sort(make_rng(seed).permutation(len(y))[:n])
        x, y = x[idx], y[idx]
    images = torch.from_numpy(np.ascontiguousarray(x)).to(dtype) / 255.0 - 0.5
    return images, torch.from_numpy(y)
