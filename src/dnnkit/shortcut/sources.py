"""Factor-labelled image sources for WCST-ML: the procedural coloured dSprites and users' data.

A *source* is anything with named discrete factors (each a small set of integer value indices)
from which images can be drawn: :class:`DSpritesSource` renders any factor combination on demand
with :func:`dnnkit.core.data.render_dsprites` (nothing is materialised), and
:class:`FactorDataset` wraps a user's image array plus integer factor table (the real dSprites
file, UTKFace, or anything else, see :mod:`dnnkit.shortcut.loaders`).

Both expose the same small surface used by :func:`dnnkit.shortcut.make_wcst_ml`:
``names``, ``sizes``, ``kinds``, ``value_counts(i)``, ``draw(allowed, n, rng, exclude)``,
``factors_of(ids)``, ``lookup(factors)`` and ``take(ids)`` (images).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dnnkit.core.data import DSPRITES_COLORS, DSPRITES_GRID, DSPRITES_SHAPES, render_dsprites
from dnnkit.core.validation import check_choice, check_int, check_interval, param_error

__all__ = ["KINDS", "DSpritesSource", "FactorDataset"]

KINDS = ("categorical", "ordinal")

_DS_NAMES = ("color", "shape", "scale", "orientation", "pos_x", "pos_y")
_DS_KINDS = {"color": "categorical", "shape": "categorical", "scale": "ordinal",
             "orientation": "ordinal", "pos_x": "ordinal", "pos_y": "ordinal"}


def _allowed_arrays(allowed: Sequence[np.ndarray | None], sizes: Sequence[int]) -> list[np.ndarray]:
    return [np.arange(s) if a is None else np.asarray(a, dtype=np.int64)
            for a, s in zip(allowed, sizes)]


@dataclass(frozen=True)
class DSpritesSource:
    """The procedural dSprites grid with colour: color x shape x scale x orientation x pos_x x pos_y.

    Parameters
    ----------
    size
        Canvas side in pixels (the paper uses 64; 32 is 4x cheaper and keeps every cue visible).
    colors
        Names from :data:`dnnkit.core.data.DSPRITES_COLORS`, in level order (default red, green,
        blue, white: white is the 4th value and never a colour level when L = 3).
    dedupe
        Draw each distinct image at most once per draw. Orientation index 39 (2 pi) renders like
        index 0 and is folded onto it; our renderer rotates exact outlines by multiples of
        2 pi / 39, so the square's 90-degree and the ellipse's 180-degree symmetries produce near,
        not exact, duplicates. Orientation is only partially identifiable for those two shapes.
    sprite_extent, pos_range
        Geometry passed to :func:`render_dsprites` (defaults follow the spec: a scale-1 square
        spans 0.45 of the canvas; centres sweep the central half).
    """

    size: int = 32
    colors: tuple[str, ...] = ("red", "green", "blue", "white")
    dedupe: bool = False
    sprite_extent: float = 0.45
    pos_range: tuple[float, float] = (0.25, 0.75)
    names: tuple[str, ...] = field(default=_DS_NAMES, init=False)

    def __post_init__(self) -> None:
        where = "DSpritesSource"
        check_int(self.size, "size", 8, 1024, where=where)
        check_interval(self.sprite_extent, "sprite_extent", 0.0, 1.0, closed="right", where=where)
        if len(self.colors) < 1:
            raise ValueError(param_error("colors", where, "a non-empty tuple of colour names",
                                         self.colors))
        for c in self.colors:
            check_choice(c, "colors", tuple(DSPRITES_COLORS), where=where)
        if len(set(self.colors)) != len(self.colors):
            raise ValueError(param_error("colors", where, "distinct colour names", self.colors))

    # -- the source surface ------------------------------------------------------------------
    @property
    def sizes(self) -> tuple[int, ...]:
        return (len(self.colors), len(DSPRITES_SHAPES), *(len(DSPRITES_GRID[k]) for k in
                                                           ("scale", "orientation", "pos_x",
                                                            "pos_y")))

    @property
    def kinds(self) -> dict[str, str]:
        return dict(_DS_KINDS)

    def value_names(self, i: int) -> list[str]:
        name = self.names[i]
        if name == "color":
            return list(self.colors)
        if name == "shape":
            return list(DSPRITES_SHAPES)
        return [f"{v:.3g}" for v in DSPRITES_GRID[name]]

    def value_counts(self, i: int) -> np.ndarray:
        return np.ones(self.sizes[i], dtype=np.int64)

    def _canonical(self, f: np.ndarray) -> np.ndarray:
        if self.dedupe:
            f = f.copy()
            f[:, 3] = np.where(f[:, 3] == 39, 0, f[:, 3])
        return f

    def factors_of(self, ids: np.ndarray) -> np.ndarray:
        return np.stack(np.unravel_index(np.asarray(ids, dtype=np.int64), self.sizes), 1)

    def lookup(self, factors: np.ndarray) -> np.ndarray:
        f = self._canonical(np.asarray(factors, dtype=np.int64))
        return np.ravel_multi_index(tuple(f.T), self.sizes).astype(np.int64)

    def draw(self, allowed: Sequence[np.ndarray | None], n: int, rng: np.random.Generator,
             exclude: np.ndarray | None = None) -> np.ndarray:
        """Draw ``n`` item ids uniformly from the product of ``allowed`` value sets.

        With ``dedupe`` the ids are distinct; ``exclude`` ids are never returned.
        """
        sets = _allowed_arrays(allowed, self.sizes)
        if self.dedupe and 0 in sets[3] and 39 in sets[3]:
            sets[3] = sets[3][sets[3] != 39]
        capacity = math.prod(len(s) for s in sets)
        excl = np.unique(np.asarray(exclude, dtype=np.int64)) if exclude is not None else None
        unique = self.dedupe
        if (unique or excl is not None) and capacity <= 200_000:
            grids = np.meshgrid(*sets, indexing="ij")
            all_ids = self.lookup(np.stack([g.ravel() for g in grids], 1))
            if excl is not None:
                all_ids = all_ids[~np.isin(all_ids, excl)]
            if not unique:
                return rng.choice(all_ids, n, replace=True) if len(all_ids) else _empty(n)
            if n > len(all_ids):
                raise ValueError(
                    f"Requested {n} distinct images but only {len(all_ids)} distinct factor "
                    "combinations exist for this selection (dedupe=True); lower the sizes.")
            return rng.choice(all_ids, n, replace=False)
        out = np.empty(0, dtype=np.int64)
        for _ in range(1000):
            need = n - len(out)
            if need <= 0:
                break
            f = np.stack([s[rng.integers(len(s), size=2 * need + 8)] for s in sets], 1)
            ids = self.lookup(f)
            if excl is not None:
                ids = ids[~np.isin(ids, excl)]
            if unique:
                ids = ids[~np.isin(ids, out)]
                _, first = np.unique(ids, return_index=True)
                ids = ids[np.sort(first)]
            out = np.concatenate([out, ids[:need]])
        if len(out) < n:  # pragma: no cover - only with absurd exclusions
            raise ValueError(f"Could not draw {n} images from this selection.")
        return out

    def take(self, ids: np.ndarray) -> torch.Tensor:
        """Render the images of item ``ids``: float32 ``(n, 3, size, size)`` in [0, 1]."""
        f = torch.from_numpy(self.factors_of(ids))
        rgb = torch.tensor([DSPRITES_COLORS[c] for c in self.colors], dtype=torch.float32)
        val = {k: torch.as_tensor(DSPRITES_GRID[k], dtype=torch.float32)
               for k in ("scale", "orientation", "pos_x", "pos_y")}
        return render_dsprites(f[:, 1], val["scale"][f[:, 2]], val["orientation"][f[:, 3]],
                               val["pos_x"][f[:, 4]], val["pos_y"][f[:, 5]], size=self.size,
                               color=rgb[f[:, 0]], sprite_extent=self.sprite_extent,
                               pos_range=self.pos_range)


def _empty(n: int) -> np.ndarray:
    raise ValueError(f"No images are left to draw {n} from (all excluded).")



@dataclass(frozen=True)
class FactorDataset:
    """A user's factor-labelled images for WCST-ML (e.g. real dSprites, UTKFace).

    Parameters
    ----------
    images
        ``(N, C, H, W)`` or ``(N, H, W)`` array/tensor. Floats must lie in [0, 1]; integer arrays
        (e.g. uint8) are multiplied by ``pixel_scale`` (default 1/255) when drawn.
    factors
        ``(N, F)`` integer value indices, ``0 <= factors[:, j] < sizes[j]``.
    names
        The F factor names.
    kinds
        ``{name: 'categorical' | 'ordinal'}``; missing names default to 'categorical'.
    sizes
        Number of values per factor (default: ``factors.max(0) + 1``).
    value_labels
        Optional human-readable values per factor (e.g. ages in years).
    pixel_scale
        Factor turning integer pixels into [0, 1] (1/255 for 8-bit; 1.0 for the {0, 1} dSprites).

    Examples
    --------
    >>> import numpy as np
    >>> ds = FactorDataset(np.zeros((4, 1, 8, 8), np.float32), np.array([[0, 0], [0, 1], [1, 0],
    ...                    [1, 1]]), names=("a", "b"))
    >>> ds.sizes
    (2, 2)
    """

    images: np.ndarray | torch.Tensor
    factors: np.ndarray
    names: tuple[str, ...]
    kinds: Mapping[str, str] | None = None
    sizes: tuple[int, ...] | None = None
    value_labels: Mapping[str, Sequence] | None = None
    pixel_scale: float | None = None

    def __post_init__(self) -> None:
        where = "FactorDataset"
        imgs = self.images
        if not isinstance(imgs, (np.ndarray, torch.Tensor)):
            raise TypeError(param_error("images", where, "a numpy array or torch.Tensor",
                                        type(imgs).__name__))
        if imgs.ndim not in (3, 4):
            raise ValueError(param_error("images", where, "an array (N, C, H, W) or (N, H, W)",
                                         f"shape {tuple(imgs.shape)}"))
        fac = np.asarray(self.factors)
        if fac.ndim != 2 or not np.issubdtype(fac.dtype, np.integer):
            raise ValueError(param_error("factors", where, "an integer array (N, F)",
                                         f"dtype {fac.dtype}, shape {fac.shape}"))
        if fac.shape[0] != imgs.shape[0]:
            raise ValueError(f"{where}: images has {imgs.shape[0]} rows but factors has "
                             f"{fac.shape[0]}.")
        names = tuple(self.names)
        if len(names) != fac.shape[1] or len(set(names)) != len(names):
            raise ValueError(param_error("names", where, f"{fac.shape[1]} distinct names", names))
        if fac.size and fac.min() < 0:
            raise ValueError(param_error("factors", where, "non-negative value indices",
                                         int(fac.min())))
        sizes = tuple(int(s) for s in (self.sizes if self.sizes is not None
                                       else (fac.max(0) + 1 if fac.size else [0] * len(names))))
        if len(sizes) != len(names) or (fac.size and np.any(fac.max(0) >= np.array(sizes))):
            raise ValueError(param_error("sizes", where, "one size per factor above every index",
                                         sizes))
        kinds = {n: "categorical" for n in names}
        for k, v in (self.kinds or {}).items():
            if k not in kinds:
                raise KeyError(f"{where}: kinds names unknown factor {k!r}; known: {list(names)}")
            kinds[k] = check_choice(v, f"kinds[{k!r}]", KINDS, where=where)
        is_float = (imgs.is_floating_point() if isinstance(imgs, torch.Tensor)
                    else np.issubdtype(imgs.dtype, np.floating))
        scale = self.pixel_scale
        if scale is None:
            scale = 1.0 if is_float else 1.0 / 255.0
        check_interval(scale, "pixel_scale", 0.0, None, closed="neither", where=where)
        if imgs.shape[0]:
            lo = float(imgs.min()) * scale
            hi = float(imgs.max()) * scale
            if lo < 0.0 or hi > 1.0 or not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(param_error("images", where, "pixel values in [0, 1] (after "
                                             f"pixel_scale={scale:g})", f"range [{lo}, {hi}]"))
        object.__setattr__(self, "factors", fac.astype(np.int64, copy=False))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "pixel_scale", float(scale))

    def __len__(self) -> int:
        return int(self.factors.shape[0])

    def value_names(self, i: int) -> list[str]:
        labels = (self.value_labels or {}).get(self.names[i])
        if labels is not None and len(labels) == self.sizes[i]:
            return [str(v) for v in labels]
        return [str(v) for v in range(self.sizes[i])]

    def value_counts(self, i: int) -> np.ndarray:
        return np.bincount(self.factors[:, i], minlength=self.sizes[i])

    def factors_of(self, ids: np.ndarray) -> np.ndarray:
        return self.factors[np.asarray(ids, dtype=np.int64)]

    def lookup(self, factors: np.ndarray) -> np.ndarray:
        """Row ids with exactly these factor values (-1 where no row has them)."""
        mult = np.cumprod((1,) + self.sizes[::-1][:-1])[::-1].astype(np.int64)
        codes = self.factors @ mult
        order = np.argsort(codes, kind="stable")
        want = np.asarray(factors, dtype=np.int64) @ mult
        pos = np.searchsorted(codes[order], want)
        pos = np.clip(pos, 0, len(codes) - 1)
        hit = codes[order][pos] == want
        return np.where(hit, order[pos], -1)

    def draw(self, allowed: Sequence[np.ndarray | None], n: int, rng: np.random.Generator,
             exclude: np.ndarray | None = None) -> np.ndarray:
        """Draw ``n`` distinct rows uniformly among rows whose factors lie in ``allowed``."""
        mask = np.ones(len(self), dtype=bool)
        for j, a in enumerate(allowed):
            if a is not None:
                mask &= np.isin(self.factors[:, j], np.asarray(a))
        if exclude is not None and len(exclude):
            mask[np.asarray(exclude, dtype=np.int64)] = False
        cand = np.flatnonzero(mask)
        if n > len(cand):
            raise ValueError(f"Requested {n} images but only {len(cand)} rows of the dataset "
                             "match this selection; lower the sizes.")
        return rng.choice(cand, n, replace=False)

    def take(self, ids: np.ndarray) -> torch.Tensor:
        """Images of rows ``ids`` as float32 ``(n, C, H, W)`` in [0, 1]."""
        ids = np.asarray(ids, dtype=np.int64)
        arr = self.images
        sel = arr[torch.from_numpy(ids)] if isinstance(arr, torch.Tensor) else arr[ids]
        t = sel if isinstance(sel, torch.Tensor) else torch.as_tensor(np.asarray(sel))
        t = t.float() * self.pixel_scale
        return t.unsqueeze(1) if t.ndim == 3 else t
