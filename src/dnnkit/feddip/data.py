"""Client partitions (IID, Dirichlet non-IID) and loaders for the paper's datasets.

The paper uses Fashion-MNIST (LeNet-5), CIFAR-10 (AlexNet) and CIFAR-100 (ResNet-18); the
loaders below read the standard files a user downloaded (IDX for Fashion-MNIST, the *binary*
CIFAR-10 batches), never pickles and never the network. The reproduction uses scikit-learn's
digits (shipped with scikit-learn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnnkit.core.data import read_cifar10_binary, read_idx
from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import check_int, check_interval, param_error

__all__ = [
    "load_cifar10",
    "load_fashion_mnist",
    "partition_dirichlet",
    "partition_iid",
    "split_clients",
]


def partition_iid(n: int, num_clients: int, *, seed: int = 0) -> list[np.ndarray]:
    """Shuffle ``range(n)`` and cut it into ``num_clients`` near-equal parts (code ``iid``).

    Examples
    --------
    >>> [len(p) for p in partition_iid(10, 3)]
    [4, 3, 3]
    """
    check_int(num_clients, "num_clients", 1, where="partition_iid")
    check_int(n, "n", num_clients, where="partition_iid")
    idx = make_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(idx, num_clients)]


def partition_dirichlet(labels: np.ndarray | torch.Tensor, num_clients: int, *,
                        alpha: float = 0.5, seed: int = 0, min_size: int = 10,
                        max_tries: int = 1000) -> list[np.ndarray]:
    """Label-skewed partition: for every class, client shares ~ Dirichlet(alpha).

    Redraws until every client holds at least ``min_size`` samples (the usual rule of the
    FedDIP / FedML partitioners). Smaller ``alpha`` = more skew.

    Raises
    ------
    ValueError
        If no draw gives every client ``min_size`` samples within ``max_tries``.
    """
    where = "partition_dirichlet"
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    check_int(num_clients, "num_clients", 1, where=where)
    check_interval(alpha, "alpha", 0.0, None, closed="neither", where=where)
    check_int(min_size, "min_size", 0, where=where)
    if len(y) < num_clients * max(1, min_size):
        raise ValueError(param_error("labels", where,
                                     f"at least num_clients * min_size = "
                                     f"{num_clients * max(1, min_size)} samples", len(y)))
    rng = make_rng(seed)
    classes = np.unique(y)
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = np.flatnonzero(y == c)
            rng.shuffle(idx)
            share = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(share) * len(idx)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        if min(len(p) for p in parts) >= max(1, min_size):
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"{where}: no Dirichlet(alpha={alpha}) draw gave every one of "
                     f"{num_clients} clients at least {min_size} samples in {max_tries} tries; "
                     "raise alpha or lower min_size.")


def split_clients(x: torch.Tensor, y: torch.Tensor, parts: list[np.ndarray]
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(x[p], y[p]) for p in parts]`` with a check that no part is empty."""
    out = []
    for i, p in enumerate(parts):
        if len(p) == 0:
            raise ValueError(f"split_clients: client {i} would get no data (empty client).")
        ti = torch.as_tensor(p, dtype=torch.long)
        out.append((x[ti], y[ti]))
    return out


def load_fashion_mnist(root: str | Path, *, train: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST from its IDX files (``train-images-idx3-ubyte[.gz]`` etc. in ``root``).

    Returns images ``(N, 1, 28, 28)`` float32 in [0, 1] and labels ``(N,)`` int64.
    """
    root = Path(root)
    prefix = "train" if train else "t10k"

    def find(stem: str) -> Path:
        for cand in (root / stem, root / f"{stem}.gz"):
            if cand.is_file():
                return cand
        raise FileNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found in {str(root)!r}.")

    x = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"Fashion-MNIST files in {str(root)!r} disagree: images {x.shape}, "
                         f"labels {y.shape}.")
    return (torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1),
            torch.from_numpy(y.astype(np.int64)))


def load_cifar10(root: str | Path, *, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from the *binary* batches (``data_batch_1..5.bin`` / ``test_batch.bin``).

    Returns images ``(N, 3, 32, 32)`` float32 in [0, 1] and labels ``(N,)`` int64.
    """
    root = Path(root)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    files = [root / n for n in names if (root / n).is_file()]
    if not files:
        raise FileNotFoundError(f"No CIFAR-10 binary batches {names} in {str(root)!r}.")
    x, y = read_cifar10_binary(files)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y)
