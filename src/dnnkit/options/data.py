"""Parameter boxes, labelled pricing datasets and a CSV loader for market quotes.

A dataset row is ``X = [model parameters..., K/S, tau, r, q]`` with label ``y = C/K`` from a
reference pricer (spec section 2.2). Samples come from a :class:`Box` (uniform, Latin hypercube or
scrambled Sobol); rows whose label is non-finite are dropped and tiny negative labels clipped, with
counters in ``meta``.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dnnkit.core.seeding import make_generator
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
    check_memory,
    check_tensor,
    param_error,
    validate_params,
)
from dnnkit.options.processes import (
    CONTRACT_HIGH,
    CONTRACT_LOW,
    CONTRACT_NAMES,
    check_contracts,
    get_model,
)

__all__ = [
    "Box",
    "PricingDataset",
    "Quotes",
    "default_box",
    "generate_dataset",
    "load_quotes_csv",
]


_BOUNDS = AnyOf(Tensor(ndim=(0, 1)), Sequence_(Real()))


@validate_params({"names": Sequence_(Str()), "low": _BOUNDS, "high": _BOUNDS})
@dataclass(frozen=True)
class Box:
    """An axis-aligned box of named features, ``low <= x <= high`` (float64)."""

    names: tuple[str, ...]
    low: torch.Tensor
    high: torch.Tensor

    def __post_init__(self):
        low = torch.as_tensor(self.low, dtype=torch.float64).reshape(-1)
        high = torch.as_tensor(self.high, dtype=torch.float64).reshape(-1)
        names = tuple(self.names)
        if not (len(names) == low.numel() == high.numel()):
            raise ValueError(param_error("low/high", "Box", f"{len(names)} values (one per name)",
                                         f"{low.numel()} and {high.numel()}"))
        if bool((~torch.isfinite(low)).any() or (~torch.isfinite(high)).any()):
            raise ValueError(param_error("low/high", "Box", "finite", "NaN or inf"))
        if bool((high < low).any()):
            bad = [names[i] for i in torch.nonzero(high < low).flatten().tolist()]
            raise ValueError(param_error("high", "Box", ">= low for every feature", bad))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def _check_width(self, x: torch.Tensor, fn: str) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(param_error("x", f"options.Box.{fn}",
                                         f"a tensor with {self.dim} features {list(self.names)}",
                                         f"shape {tuple(x.shape)}"))

    @property
    def dim(self) -> int:
        return len(self.names)

    @validate_params({"n": Int(1, 100_000_000), "method": Options("uniform", "lhs", "sobol"),
                      "seed": Seed()})
    def sample(self, n: int, method: str = "uniform", seed=None) -> torch.Tensor:
        """``n`` points in the box, shape ``(n, d)``, float64 (``uniform``, ``lhs``, ``sobol``)."""
        check_int(n, "n", 1, where="Box.sample")
        check_choice(method, "method", ("uniform", "lhs", "sobol"), where="Box.sample")
        check_memory(3 * 8.0 * n * self.dim, "n", "options.Box.sample")
        gen = make_generator(seed)
        d = self.dim
        if method == "uniform":
            u = torch.rand(n, d, generator=gen, dtype=torch.float64)
        elif method == "lhs":
            perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(d)], 1)
            u = (perms.to(torch.float64) + torch.rand(n, d, generator=gen, dtype=torch.float64)) / n
        else:
            s = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            u = torch.quasirandom.SobolEngine(d, scramble=True, seed=s).draw(n, dtype=torch.float64)
        return self.low + (self.high - self.low) * u

    @validate_params({"x": Tensor(ndim=(1, 2))})
    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Map to ``[-1, 1]`` per feature (degenerate features map to 0); keeps dtype/device."""
        self._check_width(x, "to_unit")
        lo, hi = self.low.to(x), self.high.to(x)
        span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        return torch.where(hi > lo, 2 * (x - lo) / span - 1, torch.zeros_like(x))

    @validate_params({"x": Tensor(ndim=(1, 2)), "tol": Real(0.0, 1e6)})
    def contains(self, x: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
        """Boolean per row: inside the box up to ``tol`` times the box width."""
        self._check_width(x, "contains")
        lo, hi = self.low.to(x), self.high.to(x)
        w = (hi - lo) * tol
        return ((x >= lo - w) & (x <= hi + w)).all(-1)

    @validate_params({"x": Tensor(ndim=(1, 2))})
    def violations(self, x: torch.Tensor) -> list[str]:
        """Human-readable list of features outside the box and by how much (worst row)."""
        self._check_width(x, "violations")
        lo, hi = self.low.to(x), self.high.to(x)
        out = []
        for j, nm in enumerate(self.names):
            below = float((lo[j] - x[..., j]).max())
            above = float((x[..., j] - hi[j]).max())
            if below > 0:
                out.append(f"{nm} below {float(lo[j]):.6g} by up to {below:.3g}")
            if above > 0:
                out.append(f"{nm} above {float(hi[j]):.6g} by up to {above:.3g}")
        return out

    def as_dict(self) -> dict:
        return {"names": list(self.names), "low": self.low.tolist(), "high": self.high.tolist()}


def default_box(model: str, contract_low: Sequence[float] = CONTRACT_LOW,
                contract_high: Sequence[float] = CONTRACT_HIGH) -> Box:
    """The default feature box ``[model parameters..., K/S, tau, r, q]`` (spec section 2.2).

    The bounds are built in float64 from the Python floats, so the documented edges are exact
    (a quote with K/S = 0.8 or tau = 0.05 lies inside, not 1e-8 outside)."""
    spec = get_model(model)
    return Box(spec.params + CONTRACT_NAMES,
               torch.tensor(spec.low + tuple(contract_low), dtype=torch.float64),
               torch.tensor(spec.high + tuple(contract_high), dtype=torch.float64))


@dataclass
class PricingDataset:
    """Features ``X (n, p + 4)``, labels ``y (n,) = C/K``, the box they were drawn from, meta,
    and for Monte Carlo labels their standard errors ``stderr (n,)``."""

    X: torch.Tensor
    y: torch.Tensor
    feature_box: Box
    meta: dict = field(default_factory=dict)
    stderr: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def split(self, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
              ) -> tuple[PricingDataset, ...]:
        """Random split (seeded) into ``len(fractions)`` parts."""
        if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
            raise ValueError(param_error("fractions", "PricingDataset.split",
                                         "positive numbers summing to 1", list(fractions)))
        perm = torch.randperm(len(self), generator=make_generator(seed))
        bounds = [0]
        for f in fractions[:-1]:
            bounds.append(bounds[-1] + round(f * len(self)))
        bounds.append(len(self))
        return tuple(PricingDataset(self.X[perm[a:b]], self.y[perm[a:b]], self.feature_box,
                                    dict(self.meta),
                                    None if self.stderr is None else self.stderr[perm[a:b]])
                     for a, b in itertools.pairwise(bounds))


@validate_params({"model": AnyOf(Str(), Callable_()), "n": Int(1, 100_000_000),
                  "box": Optional_(Instance(Box)), "sampler": Options("uniform", "lhs", "sobol"),
                  "chunk": Int(1, 100_000_000), "seed": Seed(), "option": Options("call", "put")})
def generate_dataset(model: str | Callable, n: int, *, box: Box | None = None,
                     sampler: str = "uniform", chunk: int = 10_000, seed=0,
                     option: str = "call", **pricer_kw) -> PricingDataset:
    """Sample ``n`` feature rows from ``box`` and label them with a reference pricer.

    Parameters
    ----------
    model : str or callable
        A model name (``bs``, ``heston``, ``vg``, ``vgsa``: labels from
        :func:`dnnkit.options.pricers.price_european`), or any callable
        ``f(params (n, p), contracts (n, 4)) -> (n,)`` returning ``C/K`` (then ``box`` is needed);
        a Monte Carlo pricer may return ``(price, stderr)`` (e.g. a wrapper of
        :func:`~dnnkit.options.exotics.mc_barrier`), kept as ``dataset.stderr``.
    n : int
        Rows to generate (rows with non-finite labels are dropped, so slightly fewer may remain).
    box : Box, optional
        Feature box ``[params..., K/S, tau, r, q]``; default :func:`default_box`.
    sampler : {"uniform", "lhs", "sobol"}
    chunk : int
        Rows labelled at once (bounds memory).
    seed : int or torch.Generator
    option : {"call", "put"}
    **pricer_kw
        Passed to the pricer (e.g. ``method="cos", n_terms=256``).

    Returns
    -------
    PricingDataset
        ``meta`` holds the model name, pricer settings, ``n_clipped`` (tiny negatives set to 0)
        and ``n_dropped``.

    Examples
    --------
    >>> ds = generate_dataset("bs", 100, seed=0)
    >>> ds.X.shape, ds.y.shape
    (torch.Size([100, 5]), torch.Size([100]))
    """
    from dnnkit.options.pricers import price_european

    check_int(n, "n", 1, where="generate_dataset")
    check_int(chunk, "chunk", 1, where="generate_dataset")
    if callable(model):
        if box is None:
            raise ValueError(param_error("box", "generate_dataset",
                                         "a Box when model is a callable", None))
        pricer, name = model, getattr(model, "__name__", "callable")
    else:
        spec = get_model(model)
        box = box or default_box(spec.name)
        if box.dim != len(spec.params) + 4:
            raise ValueError(param_error("box", "generate_dataset",
                                         f"a Box with {len(spec.params) + 4} features",
                                         box.dim))
        name = spec.name

        def pricer(p, c):
            return price_european(name, p, c, option, **pricer_kw)
    X = box.sample(n, sampler, seed)
    p_dim = box.dim - 4
    ys, ses = [], []
    for i in range(0, n, chunk):
        xb = X[i:i + chunk]
        with torch.no_grad():
            out = pricer(xb[:, :p_dim], xb[:, p_dim:])
        if isinstance(out, tuple):                 # Monte Carlo: (price, standard error)
            out, se = out
            ses.append(torch.as_tensor(se, dtype=torch.float64))
        ys.append(torch.as_tensor(out, dtype=torch.float64))
    y = torch.cat(ys)
    stderr = torch.cat(ses) if ses else None
    ok = torch.isfinite(y)
    n_dropped = int((~ok).sum())
    X, y = X[ok], y[ok]
    stderr = stderr[ok] if stderr is not None else None
    neg = y < 0
    if bool((y < -1e-8).any()):
        raise ValueError(f"The reference pricer returned {int((y < -1e-8).sum())} labels below "
                         "-1e-8; its truncation or number of terms is too small.")
    n_clipped = int(neg.sum())
    y = torch.clamp(y, min=0.0)
    meta = {"model": name, "option": option, "sampler": sampler, "n_clipped": n_clipped,
            "n_dropped": n_dropped, "pricer": {k: v for k, v in pricer_kw.items()
                                               if isinstance(v, (int, float, str))}}
    return PricingDataset(X, y, box, meta, stderr)


@dataclass
class Quotes:
    """Market quotes: contracts ``(n, 4) = [K/S, tau, r, q]``, prices ``C/K``, optional weights."""

    contracts: torch.Tensor
    prices: torch.Tensor
    weights: torch.Tensor | None = None
    option: str = "call"

    def __post_init__(self):
        self.contracts = check_contracts(self.contracts, where="Quotes")
        self.prices = check_tensor(self.prices, "prices", ndim=1, where="Quotes").to(torch.float64)
        n = self.contracts.shape[0]
        if self.prices.shape[0] != n:
            raise ValueError(param_error("prices", "Quotes", f"a tensor of shape ({n},)",
                                         f"shape {tuple(self.prices.shape)}"))
        if self.weights is not None:
            w = check_tensor(self.weights, "weights", shape=(n,), where="Quotes").to(torch.float64)
            if bool((w < 0).any()) or float(w.sum()) <= 0:
                raise ValueError(param_error("weights", "Quotes",
                                             "non-negative with a positive sum", w[:5].tolist()))
            self.weights = w
        m, tau, r, q = self.contracts.unbind(1)
        fwd_s = torch.exp(-q * tau) / m           # S e^{-q tau} / K
        disc = torch.exp(-r * tau)
        if self.option == "call":
            low, high = torch.clamp(fwd_s - disc, min=0.0), fwd_s
        else:
            low, high = torch.clamp(disc - fwd_s, min=0.0), disc
        bad = (self.prices < low - 1e-12) | (self.prices > high + 1e-12)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten()[:10].tolist()
            raise ValueError(f"Quotes rows {rows} violate the no-arbitrage bounds (below the "
                             "discounted intrinsic value or above the discounted forward / "
                             "strike bound).")


def load_quotes_csv(path: str | Path, spot: float | None = None) -> Quotes:
    """Read call quotes from a CSV with columns ``strike, maturity, price`` (or ``implied_vol``)
    and optional ``spot, rate, dividend`` (per row, else ``spot=`` argument, rate/dividend 0).

    ``maturity`` is in years. Implied vols are turned into prices with Black-Scholes. Returns
    :class:`Quotes` with prices per unit strike.

    Raises
    ------
    ValueError
        Missing columns, unparsable numbers (with the line number), or no spot.
    """
    from dnnkit.options.pricers import bs_price

    path = Path(path)
    if not path.is_file():
        raise ValueError(param_error("path", "load_quotes_csv", "an existing CSV file", str(path)))
    rows = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower() for c in (reader.fieldnames or [])}
        need = {"strike", "maturity"}
        if not need <= cols or not ({"price", "implied_vol"} & cols):
            raise ValueError(f"CSV {str(path)!r} needs columns strike, maturity and price or "
                             f"implied_vol; found {sorted(cols)}.")
        for ln, raw in enumerate(reader, start=2):
            rec = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            try:
                s = float(rec["spot"]) if rec.get("spot") else spot
                if s is None:
                    raise ValueError("no spot column and no spot= argument")
                K, tau = float(rec["strike"]), float(rec["maturity"])
                r = float(rec.get("rate") or 0.0)
                q = float(rec.get("dividend") or 0.0)
                price = float(rec["price"]) if rec.get("price") else None
                vol = float(rec["implied_vol"]) if rec.get("implied_vol") else None
            except ValueError as exc:
                raise ValueError(f"CSV {str(path)!r} line {ln}: {exc}.") from None
            if price is None and vol is None:
                raise ValueError(f"CSV {str(path)!r} line {ln}: neither price nor implied_vol.")
            if not (s > 0 and K > 0 and tau > 0) or not all(map(math.isfinite, (s, K, tau, r, q))):
                raise ValueError(f"CSV {str(path)!r} line {ln}: spot, strike and maturity must be "
                                 "finite and > 0.")
            rows.append((K / s, tau, r, q, price / K if price is not None else None, vol))
    if not rows:
        raise ValueError(f"CSV {str(path)!r} has no quote rows.")
    c = torch.tensor([r[:4] for r in rows], dtype=torch.float64)
    prices = []
    for i, r in enumerate(rows):
        if r[4] is not None:
            prices.append(r[4])
        else:
            prices.append(float(bs_price(torch.tensor([r[5]], dtype=torch.float64), c[i:i + 1])[0]))
    return Quotes(c, torch.tensor(prices, dtype=torch.float64))
