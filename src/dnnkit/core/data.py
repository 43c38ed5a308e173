"""Datasets the library makes or ships, and readers for real dataset files users may have.

- :func:`load_digits_split`: scikit-learn's 8x8 digits (ships with scikit-learn), deterministic
  stratified splits, images scaled to [0, 1].
- :func:`render_dsprites` / :func:`sample_dsprites`: a procedural dSprites generator with the
  original factor grid (shape square/ellipse/heart, 6 scales, 40 orientations, 32x32 positions),
  vectorised in torch; optionally coloured (:data:`DSPRITES_COLORS`, the red/green/blue/white
  extension of Scimeca et al. 2022) and restricted to chosen factor levels.
- :func:`read_idx` (MNIST IDX files) and :func:`read_cifar10_binary` (CIFAR-10 *binary* batches):
  plain byte readers, never pickles.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dnnkit.core.seeding import make_generator, make_rng
from dnnkit.core.validation import check_int, check_interval, check_tensor, param_error, suggest

__all__ = [
    "DSPRITES_COLORS",
    "DSPRITES_GRID",
    "DSPRITES_SHAPES",
    "Split",
    "load_digits_split",
    "read_cifar10_binary",
    "read_cifar100_binary",
    "read_idx",
    "render_dsprites",
    "sample_dsprites",
]


@dataclass(frozen=True)
class Split:
    """A train/test split of tensors: images ``(N, C, H, W)`` float32 and labels ``(N,)`` int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max()).item()) + 1


def load_digits_split(*, test_fraction: float = 0.25, seed: int = 0, flat: bool = False) -> Split:
    """scikit-learn's digits (1,797 images, 8x8, 10 classes) as a deterministic stratified split.

    Pixels are scaled from 0..16 to [0, 1]. Images are ``(N, 1, 8, 8)`` unless ``flat=True``
    (``(N, 64)``). The same ``seed`` always yields the same split.
    """
    check_interval(test_fraction, "test_fraction", 0.0, 1.0, closed="neither",
                   where="load_digits_split")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    rng = make_rng(seed)
    test_idx, train_idx = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr = np.sort(np.concatenate(train_idx))
    te = np.sort(np.concatenate(test_idx))
    xt = torch.from_numpy(x)
    xt = xt.reshape(len(x), -1) if flat else xt.unsqueeze(1)
    yt = torch.from_numpy(y)
    return Split(xt[tr], yt[tr], xt[te], yt[te])


# --- dSprites -------------------------------------------------------------------------------
DSPRITES_SHAPES = ("square", "ellipse", "heart")
#: The original dSprites factor grid (Matthey et al. 2017): 3 x 6 x 40 x 32 x 32 = 737,280 images.
DSPRITES_GRID: dict[str, np.ndarray] = {
    "shape": np.arange(3),
    "scale": np.linspace(0.5, 1.0, 6),
    "orientation": np.linspace(0.0, 2 * math.pi, 40),
    "pos_x": np.linspace(0.0, 1.0, 32),
    "pos_y": np.linspace(0.0, 1.0, 32),
}


def _inside_one(k: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Membership of local coordinates (u, v) in shape ``k`` (unit size, centred at 0)."""
    if k == 0:
        return (u.abs() <= 1.0) & (v.abs() <= 1.0)
    if k == 1:
        return u * u + 4.0 * (v * v) <= 1.0
    # heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled to fit the unit box, point up
    hx, hy = u * 1.25, -v * 1.25 + 0.15
    hx2 = hx * hx
    return (hx2 + hy * hy - 1) ** 3 - hx2 * hy**3 <= 0


def _inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Membership of local coordinates (u, v) in each shape; each shape's test runs only on the
    images of that shape."""
    out = torch.zeros(u.shape, dtype=torch.bool)
    for k in range(3):
        sel = (shape == k).nonzero().squeeze(1)
        if sel.numel():
            out[sel] = _inside_one(k, u[sel], v[sel])
    return out


#: Colours of the coloured dSprites variant (Scimeca et al. 2022): RGB multiplied onto the mask.
DSPRITES_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "white": (1.0, 1.0, 1.0),
}


def render_dsprites(
    shape: torch.Tensor,
    scale: torch.Tensor,
    orientation: torch.Tensor,
    pos_x: torch.Tensor,
    pos_y: torch.Tensor,
    *,
    size: int = 64,
    batch_size: int = 256,
    color: torch.Tensor | None = None,
    sprite_extent: float = 0.2,
    pos_range: tuple[float, float] = (0.2, 0.8),
) -> torch.Tensor:
    """Render dSprites images from factors, fully vectorised over the batch.

    ``shape`` holds indices into :data:`DSPRITES_SHAPES`; ``scale`` is in [0.5, 1];
    ``orientation`` in radians; ``pos_x``/``pos_y`` in [0, 1] (the sprite centre sweeps
    ``pos_range`` of the canvas). Without ``color`` the result is binary ``(N, 1, size, size)``
    float32 in {0, 1}. With ``color`` (indices ``(N,)`` into :data:`DSPRITES_COLORS`, or RGB
    values ``(N, 3)`` in [0, 1]) the colour is multiplied onto the mask: ``(N, 3, size, size)``.
    ``sprite_extent`` is the side of a scale-1 square as a fraction of the canvas.
    """
    where = "render_dsprites"
    check_int(size, "size", 8, 1024, where=where)
    check_interval(sprite_extent, "sprite_extent", 0.0, 1.0, closed="right", where=where)
    if (not isinstance(pos_range, (tuple, list)) or len(pos_range) != 2
            or not 0.0 <= float(pos_range[0]) <= float(pos_range[1]) <= 1.0):
        raise ValueError(f"The 'pos_range' parameter of {where} must be a pair (lo, hi) with "
                         f"0 <= lo <= hi <= 1. Got {pos_range!r} instead.")
    n = shape.shape[0]
    for name, t in (("scale", scale), ("orientation", orientation), ("pos_x", pos_x),
                    ("pos_y", pos_y)):
        check_tensor(t, name, shape=(n,), where=where)
    if n and (int(shape.min()) < 0 or int(shape.max()) > 2):
        raise ValueError("The 'shape' parameter of render_dsprites must hold indices in {0, 1, 2}.")
    rgb = None
    if color is not None:
        color = check_tensor(color, "color", ndim=(1, 2), where=where)
        if color.ndim == 1:
            check_tensor(color, "color", shape=(n,), where=where)
            if color.is_floating_point():
                raise TypeError(param_error("color", where, "integer colour indices or (N, 3) "
                                            "RGB values", f"dtype {color.dtype}"))
            if n and (int(color.min()) < 0 or int(color.max()) >= len(DSPRITES_COLORS)):
                raise ValueError(param_error("color", where, "indices in "
                                             f"[0, {len(DSPRITES_COLORS) - 1}]",
                                             f"range [{int(color.min())}, {int(color.max())}]"))
            table = torch.tensor(list(DSPRITES_COLORS.values()), dtype=torch.float32)
            rgb = table[color.long()]
        else:
            check_tensor(color, "color", shape=(n, 3), where=where)
            rgb = color.float()
            if n and (float(rgb.min()) < 0.0 or float(rgb.max()) > 1.0):
                raise ValueError(param_error("color", where, "RGB values in [0, 1]",
                                             f"range [{float(rgb.min())}, {float(rgb.max())}]"))
    out = torch.zeros(n, 1 if rgb is None else 3, size, size)
    half = sprite_extent / 2  # half side of a scale-1 sprite, as a fraction of the canvas
    lo, span = float(pos_range[0]), float(pos_range[1]) - float(pos_range[0])
    for s in range(0, n, batch_size):
        sl = slice(s, s + batch_size)
        b = shape[sl].shape[0]
        if b == 0:
            continue
        cx = lo + span * pos_x[sl].float().view(-1, 1, 1)
        cy = lo + span * pos_y[sl].float().view(-1, 1, 1)
        th = orientation[sl].float().view(-1, 1, 1)
        r = half * scale[sl].float().view(-1, 1, 1)
        # every shape lies inside the circle of radius sqrt(2) r around its centre: evaluate only
        # a w x w pixel window around each sprite (same pixel-centre arithmetic as a full canvas)
        reach = math.ceil(math.sqrt(2.0) * float(r.abs().max()) * size) + 1
        w = min(2 * reach + 1, size)
        x0 = torch.clamp(torch.floor(cx.view(-1) * size).long() - w // 2, 0, size - w)
        y0 = torch.clamp(torch.floor(cy.view(-1) * size).long() - w // 2, 0, size - w)
        ar = torch.arange(w)
        ix = x0.view(-1, 1) + ar  # (b, w) pixel columns
        iy = y0.view(-1, 1) + ar  # (b, w) pixel rows
        gx = ((ix.float() + 0.5) / size).view(b, 1, w)
        gy = ((iy.float() + 0.5) / size).view(b, w, 1)
        dx, dy = gx - cx, gy - cy
        u = (torch.cos(th) * dx + torch.sin(th) * dy) / r
        v = (-torch.sin(th) * dx + torch.cos(th) * dy) / r
        mask = _inside(shape[sl], u, v).float()  # (b, w, w)
        bi = torch.arange(b).view(-1, 1, 1)
        rows, cols = iy.view(b, w, 1), ix.view(b, 1, w)
        canvas = torch.zeros(b, size, size)
        canvas[bi, rows, cols] = mask
        if rgb is None:
            out[sl, 0] = canvas
        else:
            torch.mul(canvas.unsqueeze(1), rgb[sl].view(-1, 3, 1, 1), out=out[sl])
    return out


def sample_dsprites(
    n: int, *, seed: int | torch.Generator | None = 0, size: int = 64, color: bool = False,
    allowed: dict[str, np.ndarray | list[int] | tuple[int, ...]] | None = None,
    **render_kwargs,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw ``n`` factor combinations uniformly from :data:`DSPRITES_GRID` and render them.

    Returns ``(images, factors)`` where ``factors`` maps each factor name to its grid *index*
    (int64, shape ``(n,)``). Use ``DSPRITES_GRID[name][index]`` for the value.

    ``color=True`` also draws a colour index (key ``"color"``, into :data:`DSPRITES_COLORS`) and
    returns RGB images. ``allowed`` restricts factors to chosen indices, e.g.
    ``{"shape": [2], "color": [0, 1, 2]}`` (hearts in red, green or blue). Extra keyword
    arguments (``sprite_extent``, ``pos_range``) go to :func:`render_dsprites`.
    """
    where = "sample_dsprites"
    check_int(n, "n", 0, 10_000_000, where=where)
    sizes = {k: len(v) for k, v in DSPRITES_GRID.items()}
    if color:
        sizes["color"] = len(DSPRITES_COLORS)
    choices: dict[str, torch.Tensor] = {}
    for k, vals in (allowed or {}).items():
        if k not in sizes:
            raise KeyError(f"Unknown dSprites factor {k!r} in 'allowed' of {where}."
                           f"{suggest(k, sizes)} Known: {list(sizes)}")
        t = torch.as_tensor(np.asarray(vals, dtype=np.int64))
        if t.ndim != 1 or t.numel() == 0 or int(t.min()) < 0 or int(t.max()) >= sizes[k]:
            raise ValueError(param_error(f"allowed[{k!r}]", where, "a non-empty list of indices "
                                         f"in [0, {sizes[k] - 1}]", list(np.asarray(vals))))
        choices[k] = t
    g = make_generator(seed)
    idx = {}
    for k, m in sizes.items():
        if k in choices:
            idx[k] = choices[k][torch.randint(len(choices[k]), (n,), generator=g)]
        else:
            idx[k] = torch.randint(m, (n,), generator=g)
    vals = {k: torch.as_tensor(DSPRITES_GRID[k], dtype=torch.float32)[idx[k]]
            for k in DSPRITES_GRID}
    images = render_dsprites(idx["shape"], vals["scale"], vals["orientation"], vals["pos_x"],
                             vals["pos_y"], size=size, color=idx["color"] if color else None,
                             **render_kwargs)
    return images, idx


# --- file readers ---------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an MNIST-style IDX file (optionally ``.gz``) into a numpy array.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a bad header or a
    size that does not match the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {str(path)!r} does not exist.")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number).")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{str(path)!r} is truncated (header).")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{str(path)!r} holds {len(data) - header} data bytes but its header "
                         f"promises {expected} (shape {dims}).")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).copy()


def _read_cifar_records(paths: str | Path | list[str | Path], *, what: str, label_bytes: int,
                        label_max: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """CIFAR binary records: ``label_bytes`` label bytes then 3072 pixel bytes each.

    Returns images ``(N, 3, 32, 32)`` uint8 and one int64 array per label byte."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    size = label_bytes + 3072
    images, labels = [], [[] for _ in range(label_bytes)]
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"{what} file {str(p)!r} does not exist.")
        raw = np.fromfile(p, dtype=np.uint8)
        if raw.size == 0 or raw.size % size:
            raise ValueError(f"{str(p)!r} is not a {what} binary file: {raw.size} bytes is not "
                             f"a multiple of {size}.")
        rec = raw.reshape(-1, size)
        if any(rec[:, j].max() > m for j, m in enumerate(label_max)):
            raise ValueError(f"{str(p)!r} has labels out of range: not a {what} binary file.")
        for j in range(label_bytes):
            labels[j].append(rec[:, j].astype(np.int64))
        images.append(rec[:, label_bytes:].reshape(-1, 3, 32, 32))
    return np.concatenate(images), [np.concatenate(lab) for lab in labels]


def read_cifar10_binary(paths: str | Path | list[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 *binary version* batches (``data_batch_1.bin`` ...), never the pickles.

    Each record is 1 label byte + 3072 pixel bytes. Returns images ``(N, 3, 32, 32)`` uint8 and
    labels ``(N,)`` int64.
    """
    images, (labels,) = _read_cifar_records(paths, what="CIFAR-10", label_bytes=1,
                                            label_max=(9,))
    return images, labels


def read_cifar100_binary(paths: str | Path | list[str | Path], *, label: str = "fine"
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-100 *binary version* files (``train.bin``, ``test.bin``).

    Each record is 1 coarse label byte, 1 fine label byte and 3072 pixel bytes. Returns images
    ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 (``label="fine"``: 100 classes,
    ``"coarse"``: 20 super-classes).
    """
    if label not in ("fine", "coarse"):
        raise ValueError(f"The 'label' parameter of read_cifar100_binary must be one of "
                         f"['fine', 'coarse']. Got {label!r} instead.")
    images, (coarse, fine) = _read_cifar_records(paths, what="CIFAR-100", label_bytes=2,
                                                 label_max=(19, 99))
    return images, fine if label == "fine" else coarse
