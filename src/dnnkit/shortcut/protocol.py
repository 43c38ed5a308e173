"""The WCST-ML data protocol (Scimeca et al. 2022, Sec. 2): diagonal and off-diagonal sets.

K cues, each cut into L levels. The *diagonal* training set holds samples whose every cue is at
the same level l (label l), so every cue alone solves the task. The *off-diagonal* test set of
cue c holds level combinations never seen in training, labelled by the level of c: its accuracy
tells whether a model adopted c. With level combinations drawn uniformly among the L^K - L
non-diagonal ones, a model that perfectly uses another cue scores
(L^(K-1) - L) / (L^K - L) on O_c, not 1/L.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Seed,
    Sequence_,
    Str,
    check_choice,
    check_int,
    param_error,
    suggest,
    validate_params,
)
from dnnkit.shortcut.sources import DSpritesSource, FactorDataset

__all__ = [
    "CueData",
    "CueSpec",
    "WCSTSplits",
    "augmented_training_set",
    "bin_levels",
    "chance_levels",
    "level_of",
    "make_wcst_ml",
]

log = logging.getLogger("dnnkit")
Source = DSpritesSource | FactorDataset


@dataclass(frozen=True)
class CueSpec:
    """A cue: a factor of the source, its kind and the value indices of each of its L levels."""

    name: str
    kind: str
    levels: tuple[tuple[int, ...], ...]
    factor_index: int

    @property
    def representatives(self) -> tuple[int, ...]:
        """The middle value of each level (used by the complexity proxy)."""
        return tuple(lv[len(lv) // 2] for lv in self.levels)


@dataclass(frozen=True)
class CueData:
    """Images ``x`` (N, C, H, W) float32 in [0, 1], labels ``y`` (N,), factor table (N, F), ids."""

    x: torch.Tensor
    y: torch.Tensor
    factors: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def as_tensor_dataset(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.x, self.y)


@dataclass(frozen=True)
class WCSTSplits:
    """The WCST-ML sets for one choice of cues (see :func:`make_wcst_ml`).

    ``chance[c] = (1/L, (L^(K-1) - L)/(L^K - L))``: the reference of a model ignoring every cue and
    of a model that perfectly uses one *other* cue (exact under ``offdiag_sampling='uniform_levels'``).
    """

    cues: tuple[CueSpec, ...]
    n_levels: int
    train: CueData
    diag_val: CueData
    offdiag: dict[str, CueData]
    chance: dict[str, tuple[float, float]]
    source: Source = field(repr=False)
    fixed: dict[str, tuple[int, ...]] = field(default_factory=dict)
    offdiag_sampling: str = "uniform_levels"

    @property
    def cue_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cues)

    def cue(self, name: str) -> CueSpec:
        for c in self.cues:
            if c.name == name:
                return c
        raise KeyError(f"Unknown cue {name!r}.{suggest(name, self.cue_names)} "
                       f"Cues of these splits: {list(self.cue_names)}")


def chance_levels(n_levels: int, n_cues: int) -> tuple[float, float]:
    """``(1/L, (L^(K-1) - L) / (L^K - L))``: chance of a cue-blind model and of a model using
    another cue perfectly, on uniformly drawn off-diagonal combinations.

    >>> chance_levels(3, 3)
    (0.3333333333333333, 0.25)
    """
    L, K = check_int(n_levels, "n_levels", 2, where="chance_levels"), check_int(
        n_cues, "n_cues", 2, where="chance_levels")
    return 1.0 / L, (L ** (K - 1) - L) / (L**K - L)


def bin_levels(counts: np.ndarray, n_levels: int, *, kind: str, binning: str = "balanced"
               ) -> tuple[tuple[int, ...], ...]:
    """Cut a factor's values into ``n_levels`` levels.

    Categorical: the L most frequent values (ties in index order), each its own level.
    Ordinal, ``binning='balanced'``: L contiguous bins balanced by count (``np.array_split`` of
    the values when counts are uniform). ``binning='official'``: the greedy rule of the authors'
    code, which leaves the top values unused on uniform counts (scale 6 -> {0,1},{2},{3,4}).
    """
    counts = np.asarray(counts, dtype=np.int64)
    m, L = len(counts), n_levels
    if kind == "categorical":
        order = sorted(range(m), key=lambda i: (-counts[i], i))[:L]
        return tuple((int(i),) for i in sorted(order, key=lambda i: (-counts[i], i)))
    values = np.flatnonzero(counts > 0)
    if binning == "balanced":
        c = counts[values]
        if np.all(c == c[0]):
            return tuple(tuple(int(v) for v in part) for part in np.array_split(values, L))
        cum = np.cumsum(c)
        cuts, start = [], 0
        for k in range(1, L):
            target = cum[-1] * k / L
            j = int(np.argmin(np.abs(cum - target))) + 1
            j = min(max(j, start + 1), len(values) - (L - k))
            cuts.append(j)
            start = j
        return tuple(tuple(int(v) for v in part) for part in np.split(values, cuts))
    # official greedy rule (re-implemented from the description of get_dataset_fvar)
    cuts = [0]
    for lv in range(L):
        left = int(counts[cuts[-1] + 1:].sum())
        mark = left / (L - lv)
        best_score, prev, best = float(left), 1.0, cuts[-1] + 1
        for cut in range(cuts[-1] + 1, m + 1):
            score = abs(int(counts[cuts[-1]:cut].sum()) - mark)
            if score < best_score:
                best_score, best = score, cut
            elif prev <= score:
                break
            prev = score
        cuts.append(best)
    return tuple(tuple(range(a, b)) for a, b in itertools.pairwise(cuts))


def level_of(values: np.ndarray, cue: CueSpec) -> np.ndarray:
    """Level index of each value of ``cue`` (-1 for values outside every level)."""
    table = np.full(max(max(lv) for lv in cue.levels) + 1, -1, dtype=np.int64)
    for i, lv in enumerate(cue.levels):
        table[list(lv)] = i
    values = np.asarray(values, dtype=np.int64)
    out = np.full(values.shape, -1, dtype=np.int64)
    ok = values < len(table)
    out[ok] = table[values[ok]]
    return out


def _resolve_cues(source: Source, cues: Sequence[str], n_levels: int | None, binning: str,
                  where: str) -> tuple[tuple[CueSpec, ...], int]:
    if isinstance(cues, str) or not isinstance(cues, Sequence):
        raise TypeError(param_error("cues", where, "a sequence of factor names", cues))
    cues = list(cues)
    if len(cues) < 2:
        raise ValueError(param_error("cues", where, "at least 2 cue names (with K = 1 every "
                                     "sample is diagonal and no off-diagonal set exists)", cues))
    if len(set(cues)) != len(cues):
        raise ValueError(param_error("cues", where, "distinct cue names", cues))
    for c in cues:
        if c not in source.names:
            raise KeyError(f"Unknown cue {c!r} for {where}.{suggest(c, source.names)} "
                           f"Known factors: {list(source.names)}")
    idx = [source.names.index(c) for c in cues]
    present = {c: int((source.value_counts(i) > 0).sum()) for c, i in zip(cues, idx)}
    for c, k in present.items():
        if k < 2:
            raise ValueError(f"The cue {c!r} of {where} has {k} value(s) in this source; a cue "
                             "needs at least 2 levels.")
    smallest = min(present.values())
    L = smallest if n_levels is None else check_int(n_levels, "n_levels", 2, where=where)
    if L > smallest:
        worst = min(present, key=present.get)
        raise ValueError(param_error("n_levels", where, f"at most {smallest} (cue {worst!r} has "
                                     f"only {smallest} values)", L))
    specs = tuple(CueSpec(c, source.kinds[c], bin_levels(source.value_counts(i), L,
                                                         kind=source.kinds[c], binning=binning), i)
                  for c, i in zip(cues, idx))
    return specs, L


def _even_counts(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.full(m, n // m, dtype=np.int64)
    counts[rng.choice(m, n % m, replace=False)] += 1
    return counts


def _draw_combo(source: Source, base: list, cues: tuple[CueSpec, ...], combo: Sequence[int],
                n: int, rng: np.random.Generator, exclude: np.ndarray | None) -> np.ndarray:
    allowed = list(base)
    for cue, lv in zip(cues, combo):
        allowed[cue.factor_index] = np.asarray(cue.levels[lv])
    return source.draw(allowed, n, rng, exclude)


def _diag_levels(source: Source, factors: np.ndarray, cues: tuple[CueSpec, ...]) -> np.ndarray:
    return np.stack([level_of(factors[:, c.factor_index], c) for c in cues], 1)


def _offdiag_ids(source: Source, base: list, cues: tuple[CueSpec, ...], cue: CueSpec, L: int,
                 n: int, sampling: str, rng: np.random.Generator,
                 exclude: np.ndarray | None) -> np.ndarray:
    K = len(cues)
    if sampling == "uniform_levels":
        combos = [c for c in itertools.product(range(L), repeat=K) if len(set(c)) > 1]
        counts = _even_counts(n, len(combos), rng)
        parts, taken = [], exclude
        for combo, k in zip(combos, counts):
            if k:
                ids = _draw_combo(source, base, cues, combo, int(k), rng, taken)
                parts.append(ids)
                if isinstance(source, FactorDataset) or source.dedupe:
                    taken = ids if taken is None else np.concatenate([taken, ids])
        return rng.permutation(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    # official: cue c inside its levels, every other factor free; drop diagonal samples
    allowed = list(base)
    allowed[cue.factor_index] = np.concatenate([np.asarray(lv) for lv in cue.levels])
    out = np.zeros(0, dtype=np.int64)
    for _ in range(200):
        need = n - len(out)
        if need <= 0:
            break
        excl = out if exclude is None else np.concatenate([exclude, out])
        unique = isinstance(source, FactorDataset) or source.dedupe
        ids = source.draw(allowed, 2 * need + 8, rng, excl if unique else exclude)
        lv = _diag_levels(source, source.factors_of(ids), cues)
        diag = (lv >= 0).all(1) & (lv == lv[:, :1]).all(1)
        ids = ids[~diag]
        if unique:
            _, first = np.unique(ids, return_index=True)
            ids = ids[np.sort(first)]
        out = np.concatenate([out, ids[:need]])
    if len(out) < n:
        raise ValueError(f"Could not draw {n} off-diagonal samples for cue {cue.name!r}.")
    return out


def _make_data(source: Source, ids: np.ndarray, labels: np.ndarray) -> CueData:
    x = source.take(ids)
    return CueData(x, torch.as_tensor(labels, dtype=torch.int64), source.factors_of(ids),
                   np.asarray(ids, dtype=np.int64))


def _base_allowed(source: Source, fixed: Mapping[str, Sequence[int]] | None, cues, where
                  ) -> tuple[list, dict[str, tuple[int, ...]]]:
    base: list = [None] * len(source.names)
    out = {}
    for k, v in (fixed or {}).items():
        if k not in source.names:
            raise KeyError(f"Unknown factor {k!r} in 'fixed' of {where}.{suggest(k, source.names)}"
                           f" Known factors: {list(source.names)}")
        if k in [c.name for c in cues]:
            raise ValueError(f"{where}: factor {k!r} is a cue and cannot also be fixed.")
        j = source.names.index(k)
        vals = tuple(int(i) for i in np.atleast_1d(np.asarray(v, dtype=np.int64)))
        if not vals or min(vals) < 0 or max(vals) >= source.sizes[j]:
            raise ValueError(param_error(f"fixed[{k!r}]", where, "value indices in "
                                         f"[0, {source.sizes[j] - 1}]", list(vals)))
        base[j] = np.asarray(vals)
        out[k] = vals
    return base, out


def _warn_unidentifiable(source: Source, cues: tuple[CueSpec, ...], base: list) -> None:
    names = [c.name for c in cues]
    if "orientation" not in names or "shape" not in source.names:
        return
    if isinstance(source, FactorDataset) and "heart" not in [v.lower() for v in
                                                             source.value_names(
                                                                 source.names.index("shape"))]:
        symmetric_only = False  # user data without named shapes: nothing to judge
    else:
        j = source.names.index("shape")
        if "shape" in names:
            shapes = {v for lv in cues[names.index("shape")].levels for v in lv}
        else:
            shapes = set(range(source.sizes[j])) if base[j] is None else set(base[j].tolist())
        symmetric_only = 2 not in shapes  # heart is index 2
    if symmetric_only:
        warnings.warn("The cue 'orientation' is unidentifiable here: only symmetric shapes "
                      "(square: 90 degrees, ellipse: 180 degrees) are drawn, so several "
                      "orientation levels render the same image.", UserWarning, stacklevel=3)


@validate_params({"cues": Sequence_(Str()), "n_levels": Optional_(Int(2, 10_000)),
                  "n_train": Int(1, 10_000_000), "n_val": Int(0, 10_000_000),
                  "n_test": Int(1, 10_000_000), "binning": Options("balanced", "official"),
                  "offdiag_sampling": Options("uniform_levels", "official"),
                  "fixed": Optional_(Instance(Mapping)), "seed": Seed()})
def make_wcst_ml(
    source: Source,
    cues: Sequence[str],
    *,
    n_levels: int | None = None,
    n_train: int = 3000,
    n_val: int = 600,
    n_test: int = 600,
    binning: Literal["balanced", "official"] = "balanced",
    offdiag_sampling: Literal["uniform_levels", "official"] = "uniform_levels",
    fixed: Mapping[str, Sequence[int]] | None = None,
    seed: int | np.random.Generator | None = None,
) -> WCSTSplits:
    """Build the WCST-ML sets: a diagonal training set and one off-diagonal test set per cue.

    Parameters
    ----------
    source
        A :class:`DSpritesSource` (rendered on demand) or a :class:`FactorDataset`.
    cues
        K >= 2 factor names, e.g. ``("color", "shape", "scale", "orientation")``.
    n_levels
        L, the number of levels (= classes); default the smallest number of values among the cues.
    n_train, n_val
        Class-balanced diagonal training / validation sizes.
    n_test
        Size of each off-diagonal test set O_c.
    binning
        'balanced' (``np.array_split`` on uniform counts) or 'official' (the authors' greedy rule).
    offdiag_sampling
        'uniform_levels': each non-diagonal level combination equally often, each cue value
        uniform inside its level (exact chance references). 'official': cue c inside its levels,
        everything else free (as in the authors' code; other cues may take unused values).
    fixed
        Restrict non-cue factors to some value indices, e.g. ``{"shape": [2]}``.
    seed
        Seed of the sampling.

    Returns
    -------
    WCSTSplits

    Raises
    ------
    KeyError
        Unknown cue or factor names (with close matches).
    ValueError
        K < 2, a cue with fewer than 2 values, ``n_levels`` above the smallest cue, sizes beyond
        the distinct combinations available.

    Examples
    --------
    >>> from dnnkit.shortcut import make_wcst_ml
    >>> from dnnkit.shortcut.sources import DSpritesSource
    >>> s = make_wcst_ml(DSpritesSource(size=16), ["color", "shape"], n_train=30, n_val=6,
    ...                  n_test=12, seed=0)
    >>> s.train.x.shape, s.chance["color"]
    (torch.Size([30, 3, 16, 16]), (0.3333333333333333, 0.0))
    """
    where = "make_wcst_ml"
    if not isinstance(source, (DSpritesSource, FactorDataset)):
        raise TypeError(param_error("source", where, "a DSpritesSource or FactorDataset",
                                    type(source).__name__))
    check_choice(binning, "binning", ("balanced", "official"), where=where)
    check_choice(offdiag_sampling, "offdiag_sampling", ("uniform_levels", "official"),
                 where=where)
    specs, L = _resolve_cues(source, cues, n_levels, binning, where)
    check_int(n_train, "n_train", L, where=where)
    check_int(n_val, "n_val", 0, where=where)
    check_int(n_test, "n_test", 1, where=where)
    base, fixed_t = _base_allowed(source, fixed, specs, where)
    _warn_unidentifiable(source, specs, base)
    rng = make_rng(seed)

    tr_counts = _even_counts(n_train, L, rng)
    va_counts = _even_counts(n_val, L, rng)
    tr_ids, tr_y, va_ids, va_y = [], [], [], []
    for lv in range(L):
        k_tr, k_va = int(tr_counts[lv]), int(va_counts[lv])
        ids = _draw_combo(source, base, specs, [lv] * len(specs), k_tr + k_va, rng, None)
        tr_ids.append(ids[:k_tr])
        va_ids.append(ids[k_tr:])
        tr_y += [lv] * k_tr
        va_y += [lv] * k_va
    perm = rng.permutation(n_train)
    train = _make_data(source, np.concatenate(tr_ids)[perm], np.asarray(tr_y)[perm])
    val = _make_data(source, np.concatenate(va_ids), np.asarray(va_y))

    offdiag = {}
    for cue in specs:
        ids = _offdiag_ids(source, base, specs, cue, L, n_test, offdiag_sampling, rng, None)
        labels = level_of(source.factors_of(ids)[:, cue.factor_index], cue)
        offdiag[cue.name] = _make_data(source, ids, labels)
    chance = {c.name: chance_levels(L, len(specs)) for c in specs}
    return WCSTSplits(specs, L, train, val, offdiag, chance, source, fixed_t, offdiag_sampling)


@validate_params({"splits": Instance(WCSTSplits), "cue": Str(),
                  "n": Optional_(Int(1, 10_000_000)), "seed": Seed()})
def augmented_training_set(splits: WCSTSplits, cue: str, *, n: int | None = None,
                           seed: int | np.random.Generator | None = None) -> CueData:
    """The diagonal training set plus ``n`` off-diagonal samples labelled by ``cue``.

    The only rule consistent with every label is then ``cue`` itself, so a model trained on this
    set is forced to use it (the paper's cue-augmented "c-solutions", Sec. 3). The added samples
    never repeat the test samples of O_cue. ``n`` defaults to the training-set size.
    """
    where = "augmented_training_set"
    if not isinstance(splits, WCSTSplits):
        raise TypeError(param_error("splits", where, "a WCSTSplits", type(splits).__name__))
    spec = splits.cue(cue)
    n = len(splits.train) if n is None else check_int(n, "n", 1, where=where)
    rng = make_rng(seed)
    base = [None] * len(splits.source.names)
    for k, v in splits.fixed.items():
        base[splits.source.names.index(k)] = np.asarray(v)
    ids = _offdiag_ids(splits.source, base, splits.cues, spec, splits.n_levels, n,
                       splits.offdiag_sampling, rng, splits.offdiag[cue].ids)
    labels = level_of(splits.source.factors_of(ids)[:, spec.factor_index], spec)
    extra = _make_data(splits.source, ids, labels)
    tr = splits.train
    perm = torch.from_numpy(rng.permutation(len(tr) + n))
    return CueData(torch.cat([tr.x, extra.x])[perm], torch.cat([tr.y, extra.y])[perm],
                   np.concatenate([tr.factors, extra.factors])[perm.numpy()],
                   np.concatenate([tr.ids, extra.ids])[perm.numpy()])
