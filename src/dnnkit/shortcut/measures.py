"""Measurements on trained models: cue preference, flatness (sphere test), basins, KC proxy.

Scimeca et al. 2022 explain which cue a network adopts from the parameter space: solutions that
use preferred cues are flatter (sphere test, Sec. 3.1), occupy more of parameter space (adoption
rate over random initialisations; re-training from perturbed solutions) and the preferred cues
have lower Kolmogorov complexity (here a compressor-based proxy, our definition).
"""

from __future__ import annotations

import bz2
import copy
import lzma
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from dnnkit.core.hooks import eval_mode
from dnnkit.core.seeding import make_generator, make_rng
from dnnkit.core.training import accuracy, fit, predict
from dnnkit.core.validation import (
    AnyOf,
    Callable_,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Seed,
    Sequence_,
    Str,
    Tensor,
    check_choice,
    check_int,
    check_positive,
    check_tensor,
    param_error,
    validate_params,
)
from dnnkit.shortcut.protocol import CueData, WCSTSplits

__all__ = [
    "COMPRESSORS",
    "PreferenceResult",
    "basin_rerun",
    "check_output_width",
    "cue_preference",
    "kc_proxy",
    "offdiag_accuracy",
    "sphere_flatness",
]

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    # preset 9 with a 1 MiB dictionary: the same compressed length as plain preset 9 for inputs
    # below 1 MiB, without allocating the 64 MiB match finder on every call (8x faster)
    "lzma": lambda b: lzma.compress(b, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9,
                                                  "dict_size": 1 << 20}]),
    "zlib": lambda b: zlib.compress(b, 9),
    "bz2": lambda b: bz2.compress(b, 9),
}


def check_output_width(model: nn.Module, x: torch.Tensor, n_levels: int, where: str) -> None:
    """Raise ``ValueError`` unless ``model(x[:2])`` has ``n_levels`` outputs."""
    out = predict(model, x[:2])
    if out.ndim != 2 or out.shape[1] != n_levels:
        raise ValueError(f"The model given to {where} outputs shape {tuple(out.shape)} but the "
                         f"WCST-ML task has L = {n_levels} levels; its last layer must have "
                         f"{n_levels} outputs.")


def offdiag_accuracy(model: nn.Module, splits: WCSTSplits, *, batch_size: int = 1024
                     ) -> dict[str, float]:
    """Accuracy of ``model`` on each off-diagonal set O_c (higher = cue c adopted).

    Compare with ``splits.chance[c]``: 1/L for a cue-blind model and
    (L^(K-1) - L)/(L^K - L) for a model that uses another cue.
    """
    if not isinstance(splits, WCSTSplits):
        raise TypeError(param_error("splits", "offdiag_accuracy", "a WCSTSplits",
                                    type(splits).__name__))
    check_output_width(model, splits.train.x, splits.n_levels, "offdiag_accuracy")
    return {c: accuracy(model, d.x, d.y, batch_size=batch_size)
            for c, d in splits.offdiag.items()}


@dataclass
class PreferenceResult:
    """Off-diagonal accuracy per cue over training, for several seeds.

    ``acc[c]`` has shape ``(n_seeds, n_epochs)``; ``val_acc`` is the diagonal validation accuracy
    and ``train_loss`` the mean training loss, both ``(n_seeds, n_epochs)``.
    """

    cues: tuple[str, ...]
    seeds: tuple[int, ...]
    acc: dict[str, np.ndarray]
    val_acc: np.ndarray
    train_loss: np.ndarray
    chance: dict[str, tuple[float, float]]
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def final(self) -> dict[str, np.ndarray]:
        """Final-epoch off-diagonal accuracy per cue, one value per seed."""
        return {c: a[:, -1] for c, a in self.acc.items()}

    def area(self) -> dict[str, np.ndarray]:
        """Mean over epochs (area under the off-diagonal learning curve), one value per seed."""
        return {c: a.mean(1) for c, a in self.acc.items()}

    def ranking(self, by: Literal["final", "area"] = "final") -> list[str]:
        """Cues sorted by seed-mean final (or area) off-diagonal accuracy, preferred first."""
        vals = self.final() if by == "final" else self.area()
        return sorted(self.cues, key=lambda c: -float(vals[c].mean()))

    def orders(self) -> list[list[str]]:
        """The cue order of each seed (by final accuracy), preferred first."""
        fin = self.final()
        return [sorted(self.cues, key=lambda c: -float(fin[c][s])) for s in range(len(self.seeds))]

    def adoption(self) -> dict[str, float]:
        """Fraction of seeds whose adopted cue (argmax final off-diagonal accuracy) is each cue:
        the paper's abundance measure over random initialisations."""
        orders = self.orders()
        return {c: sum(o[0] == c for o in orders) / len(orders) for c in self.cues}


def _init_model(model_fn: Callable[[], nn.Module], seed: int) -> nn.Module:
    # seed the initialisation without leaving a mark on the global RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_fn()
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model_fn", "cue_preference", "a callable returning an "
                                    "nn.Module", type(model).__name__))
    return model


@validate_params({"model_fn": Callable_(), "splits": Instance(WCSTSplits),
                  "epochs": Int(1, 1_000_000), "lr": Real(0.0, 10.0, closed="right"),
                  "batch_size": Int(1, 100_000_000), "seeds": Sequence_(Int(0, 2**63 - 1)),
                  "optimizer": Str(), "train": Optional_(Instance(CueData)),
                  "progress": Instance(bool)})
def cue_preference(
    model_fn: Callable[[], nn.Module],
    splits: WCSTSplits,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seeds: Sequence[int] = (0, 1, 2),
    optimizer: str = "adam",
    train: CueData | None = None,
    progress: bool = False,
) -> PreferenceResult:
    """Train a fresh model per seed on the diagonal set and track every off-diagonal accuracy.

    Parameters
    ----------
    model_fn
        Builds the model (L outputs); called once per seed under ``torch.manual_seed(seed)``
        inside ``torch.random.fork_rng`` (the global RNG state is left untouched). The model
        stays on the device ``model_fn`` puts it on.
    splits
        From :func:`make_wcst_ml`.
    epochs, lr, batch_size, optimizer
        The recipe (paper: Adam 1e-3, batch 500, 120 epochs for ResNet-20 on 64x64 dSprites).
    seeds
        One training run per seed (initialisation and data order).
    train
        Train on this set instead of ``splits.train`` (e.g. an :func:`augmented_training_set`).

    Returns
    -------
    PreferenceResult
        ``acc[c]`` (seeds, epochs); ``ranking()``, ``orders()``, ``adoption()``.

    Raises
    ------
    ValueError
        The model's output width differs from L, or bad recipe values.
    """
    import time

    where = "cue_preference"
    if not isinstance(splits, WCSTSplits):
        raise TypeError(param_error("splits", where, "a WCSTSplits", type(splits).__name__))
    if not callable(model_fn):
        raise TypeError(param_error("model_fn", where, "a callable returning an nn.Module",
                                    type(model_fn).__name__))
    check_int(epochs, "epochs", 1, where=where)
    seeds = tuple(int(check_int(s, "seeds", 0, where=where)) for s in seeds)
    if not seeds:
        raise ValueError(param_error("seeds", where, "a non-empty sequence of ints", seeds))
    data = splits.train if train is None else train
    cues = splits.cue_names
    acc = {c: np.zeros((len(seeds), epochs)) for c in cues}
    val = np.zeros((len(seeds), epochs))
    loss = np.zeros((len(seeds), epochs))
    t0 = time.perf_counter()
    for si, seed in enumerate(seeds):
        model = _init_model(model_fn, seed)
        check_output_width(model, data.x, splits.n_levels, where)

        def on_epoch(epoch: int, m: nn.Module, si: int = si) -> dict:
            for c in cues:
                d = splits.offdiag[c]
                acc[c][si, epoch] = accuracy(m, d.x, d.y)
            if len(splits.diag_val):
                val[si, epoch] = accuracy(m, splits.diag_val.x, splits.diag_val.y)
            return {}

        hist = fit(model, data.x, data.y, epochs=epochs, batch_size=batch_size, lr=lr,
                   optimizer=optimizer, seed=seed, on_epoch=on_epoch, progress=progress,
                   description=f"seed {seed}")
        loss[si] = hist.loss
    return PreferenceResult(cues, seeds, acc, val, loss, dict(splits.chance),
                            time.perf_counter() - t0)


def _as_xy(data, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, CueData):
        return data.x, data.y
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise TypeError(param_error("data", where, "a CueData or an (x, y) pair", type(data).__name__))


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _loss_at(model: nn.Module, params: dict[str, torch.Tensor], buffers: dict, x: torch.Tensor,
             y: torch.Tensor, loss_fn: Callable, batch_size: int) -> float:
    dev = next(iter(params.values())).device
    total, n = 0.0, x.shape[0]
    for i in range(0, n, batch_size):
        xb, yb = x[i: i + batch_size].to(dev), y[i: i + batch_size].to(dev)
        out = functional_call(model, {**params, **buffers}, (xb,))
        total += float(loss_fn(out, yb)) * xb.shape[0]
    return total / n


def _draw_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.float64 if p.dtype == torch.float64 else torch.float32


def _unit_direction(params: dict[str, torch.Tensor], g: torch.Generator
                    ) -> dict[str, torch.Tensor]:
    dirs = {k: torch.randn(p.shape, generator=g, dtype=_draw_dtype(p)) for k, p in params.items()}
    norm = math.sqrt(sum(float(d.double().pow(2).sum()) for d in dirs.values()))
    return {k: (d.double() / norm).to(device=params[k].device, dtype=params[k].dtype)
            for k, d in dirs.items()}


def random_unit_direction(model: nn.Module, *, seed: int | torch.Generator | None = None
                          ) -> dict[str, torch.Tensor]:
    """A Gaussian direction over all trainable parameters of ``model``, of unit global norm.

    With the same ``seed`` this is the first direction :func:`sphere_flatness` uses, so a point
    of the sphere test can be re-evaluated elsewhere (e.g. with the loss-landscapes library).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", "random_unit_direction", "an nn.Module",
                                    type(model).__name__))
    return _unit_direction(_params(model), make_generator(seed))


def _check_radii(radii: Sequence[float], where: str) -> np.ndarray:
    r = np.asarray(radii, dtype=np.float64).ravel()
    if r.size == 0:
        raise ValueError(param_error("radii", where, "a non-empty sequence of positive floats",
                                     list(radii)))
    for v in r:
        check_positive(float(v), "radii", where=where)
    return r


@validate_params({"model": Instance(nn.Module),
                  "data": AnyOf(Instance(CueData), Sequence_(min_len=2, max_len=2)),
                  "radii": AnyOf(Sequence_(Real(0.0, None, closed="neither")), Tensor(ndim=1)),
                  "n_dirs": Int(1, 1_000_000), "loss_fn": Optional_(Callable_()),
                  "seed": Seed(), "batch_size": Int(1, 100_000_000)})
def sphere_flatness(
    model: nn.Module,
    data,
    radii: Sequence[float],
    *,
    n_dirs: int = 100,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int | torch.Generator | None = None,
    batch_size: int = 2048,
) -> np.ndarray:
    """The sphere test: loss increase at random points at distance r from the solution.

    For each radius r and each of ``n_dirs`` directions u (Gaussian over all trainable parameters,
    normalised to unit norm): ``delta(r, u) = L(theta + r u) - L(theta)`` on ``data``. Flatter
    solutions have smaller delta at equal r. For a quadratic loss ``0.5 theta^T H theta`` at
    ``theta = 0`` in d dimensions, ``E[delta] = r^2 tr(H) / (2 d)``.

    Parameters
    ----------
    model
        A trained model; evaluated in eval mode through ``torch.func.functional_call`` so its
        parameters, buffers and mode flags are left exactly as found. Follows its device/dtype.
    data
        A :class:`CueData` or ``(x, y)`` (the paper uses the training set).
    radii
        Positive distances (the paper: 6, 12, ..., 300 for ResNet-20).
    n_dirs
        Directions per radius (paper: 100); the same directions are used for every radius.
    loss_fn
        ``loss_fn(output, y)`` (mean over the batch); default cross-entropy.
    seed
        Seeds the directions.

    Returns
    -------
    np.ndarray
        ``(len(radii), n_dirs)`` loss increases.
    """
    where = "sphere_flatness"
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", where, "an nn.Module", type(model).__name__))
    r = _check_radii(radii, where)
    check_int(n_dirs, "n_dirs", 1, where=where)
    x, y = _as_xy(data, where)
    check_tensor(x, "data", where=where)       # NaN/inf inputs would give a NaN answer
    check_tensor(y, "data", where=where)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(param_error("data", where, "a non-empty (x, y) pair of equal lengths",
                                     f"{x.shape[0]} inputs and {y.shape[0]} labels"))
    loss_fn = loss_fn or nn.functional.cross_entropy
    params = _params(model)
    if not params:
        raise ValueError(f"{where}: the model has no trainable parameters.")
    buffers = {k: b for k, b in model.named_buffers()}
    g = make_generator(seed)
    out = np.zeros((len(r), n_dirs))
    with eval_mode(model):
        base = _loss_at(model, params, buffers, x, y, loss_fn, batch_size)
        for j in range(n_dirs):
            dirs = _unit_direction(params, g)
            for i, rad in enumerate(r):
                moved = {k: p + float(rad) * dirs[k] for k, p in params.items()}
                out[i, j] = _loss_at(model, moved, buffers, x, y, loss_fn, batch_size) - base
    return out


def basin_rerun(
    model: nn.Module,
    splits: WCSTSplits,
    radii: Sequence[float],
    *,
    n_dirs: int = 3,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int | None = 0,
) -> dict[float, dict[str, float]]:
    """Re-train from perturbed copies of a solution and record which cue each new solution uses.

    For every radius r and direction u, a copy of ``model`` is moved to ``theta + r u`` and
    re-trained on the diagonal set only; its adopted cue is the argmax off-diagonal accuracy.
    Preferred cues capture re-trained solutions from larger radii (larger basins; the paper's
    radius re-run). ``model`` itself is never modified.

    Returns
    -------
    dict
        ``{r: {cue: fraction of the n_dirs re-runs adopting it}}``.
    """
    where = "basin_rerun"
    r = _check_radii(radii, where)
    check_int(n_dirs, "n_dirs", 1, where=where)
    check_output_width(model, splits.train.x, splits.n_levels, where)
    g = make_generator(seed)
    result: dict[float, dict[str, float]] = {}
    for rad in r:
        counts = dict.fromkeys(splits.cue_names, 0)
        for j in range(n_dirs):
            m = copy.deepcopy(model)
            ps = [p for p in m.parameters() if p.requires_grad]
            d = [torch.randn(p.shape, generator=g) for p in ps]
            norm = math.sqrt(sum(float(t.pow(2).sum()) for t in d))
            with torch.no_grad():
                for p, t in zip(ps, d):
                    p.add_((float(rad) / norm) * t.to(p.device, p.dtype))
            fit(m, splits.train.x, splits.train.y, epochs=epochs, lr=lr, batch_size=batch_size,
                seed=int(torch.randint(2**31 - 1, (1,), generator=g)))
            accs = offdiag_accuracy(m, splits)
            counts[max(accs, key=accs.get)] += 1
        result[float(rad)] = {c: k / n_dirs for c, k in counts.items()}
    return result


@validate_params({"splits": Instance(WCSTSplits), "compressor": Options("lzma", "zlib", "bz2"),
                  "n_bases": Int(1, 100_000), "seed": Seed()})
def kc_proxy(
    splits: WCSTSplits,
    *,
    compressor: Literal["lzma", "zlib", "bz2"] = "lzma",
    n_bases: int = 150,
    seed: int | np.random.Generator | None = 0,
) -> dict[str, float]:
    """A compressor-based proxy of each cue's descriptional (Kolmogorov) complexity.

    ``KC(c) = mean_b [ C(img_1 || ... || img_L) - C(img_1) ]``: the extra compressed bytes needed
    to describe the L images of one random base setting b in which only cue c steps through its
    level representatives (middle value of each level). Images as uint8 bytes; ``C`` is the
    compressed length (lzma preset 9 with a 1 MiB dictionary, zlib 9 or bz2 9). Our definition (the paper's estimator was
    not available); all cues use the same bases. The paper's claim (Sec. 5): preferred cues have
    lower KC.

    Returns
    -------
    dict
        ``{cue: proxy in bytes}``.
    """
    where = "kc_proxy"
    if not isinstance(splits, WCSTSplits):
        raise TypeError(param_error("splits", where, "a WCSTSplits", type(splits).__name__))
    check_choice(compressor, "compressor", tuple(COMPRESSORS), where=where)
    check_int(n_bases, "n_bases", 1, where=where)
    comp = COMPRESSORS[compressor]
    src = splits.source
    rng = make_rng(seed)
    base_allowed = [None] * len(src.names)
    for k, v in splits.fixed.items():
        base_allowed[src.names.index(k)] = np.asarray(v)
    # base settings: every cue at its level-0 representative is replaced below
    ids = src.draw(base_allowed, n_bases * 4, rng, None)
    bases = src.factors_of(ids)
    out: dict[str, float] = {}
    for cue in splits.cues:
        vals = []
        for b in bases:
            rows = np.repeat(b[None], splits.n_levels, 0)
            rows[:, cue.factor_index] = cue.representatives
            found = src.lookup(rows)
            if (found < 0).any():
                continue
            imgs = src.take(found)
            u8 = (imgs.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            first = len(comp(u8[0].tobytes()))
            vals.append(len(comp(u8.tobytes())) - first)
            if len(vals) == n_bases:
                break
        if not vals:
            raise ValueError(f"{where}: no base setting of the source has all level "
                             f"representatives of cue {cue.name!r}; the dataset is too sparse "
                             "for this proxy.")
        out[cue.name] = float(np.mean(vals))
    return out
