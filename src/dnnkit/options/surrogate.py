"""MLP surrogate pricers: train, evaluate, sweep, save and load.

A :class:`SurrogatePricer` maps raw features ``[model parameters..., K/S, tau, r, q]`` to ``C/K``.
Inputs are scaled to ``[-1, 1]`` with the training box; the output is
``baseline(X) + shift + scale * MLP(unit(X))``. The optional baseline is a Black-Scholes price at
the model's mean variance (``heston_bs``: ``vbar = theta + (v0 - theta)(1 - e^{-kappa tau}) /
(kappa tau)``; ``vg_bs``: ``sigma^2 + nu theta^2``), a control variate that leaves the network only
the smile correction (our design choice; ``baseline="none"`` is the paper's direct price map).

References
----------
Karatas, Oskoui, Hirsa (2019), arXiv:1902.05810, sections 3-4: supervised MLP on simulated
prices, search over depth, width, activation, loss and optimiser; MSE and R^2 on held-out data.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from dnnkit.core.checkpoint import CheckpointError, load_tensors, save_tensors
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    AnyOf,
    Callable_,
    Instance,
    Int,
    Optional_,
    Options,
    PathArg,
    Real,
    Seed,
    Str,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    check_memory,
    check_positive,
    check_tensor,
    param_error,
    validate_params,
)
from dnnkit.options.data import Box, PricingDataset
from dnnkit.options.pricers import bs_call_unchecked

__all__ = [
    "ACTIVATIONS",
    "BASELINES",
    "LOSSES",
    "OPTIMIZERS",
    "SurrogatePricer",
    "evaluate",
    "sweep",
]

log = logging.getLogger("dnnkit")

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU, "softplus": nn.Softplus,
                                           "tanh": nn.Tanh, "silu": nn.SiLU, "gelu": nn.GELU,
                                           "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}
LOSSES = ("mse", "mae", "huber", "mape", "msle")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "lbfgs")
BASELINES = ("none", "heston_bs", "vg_bs")
_BASE_PARAMS = {"heston_bs": ("v0", "kappa", "theta"), "vg_bs": ("sigma", "nu", "theta")}


def _baseline(name: str, box: Box, X: torch.Tensor) -> torch.Tensor:
    if name == "none":
        return torch.zeros(X.shape[:-1], dtype=X.dtype, device=X.device)
    idx = {nm: j for j, nm in enumerate(box.names)}
    contracts = X[..., -4:]
    if name == "heston_bs":
        v0, kappa, theta = (X[..., idx[k]] for k in ("v0", "kappa", "theta"))
        kt = kappa * contracts[..., 1]
        var = theta + (v0 - theta) * -torch.expm1(-kt) / kt
    else:
        sigma, nu, theta = (X[..., idx[k]] for k in ("sigma", "nu", "theta"))
        var = sigma * sigma + nu * theta * theta
    return bs_call_unchecked(torch.sqrt(torch.clamp(var, min=1e-8)), contracts)


_X = Tensor(ndim=2, dtype="floating")


@validate_params({"feature_box": Instance(Box), "depth": Int(1, 1_000), "width": Int(1, 1_000_000),
                  "activation": Options(*ACTIVATIONS), "baseline": Options(*BASELINES),
                  "dtype": Instance(torch.dtype)})
class SurrogatePricer(nn.Module):
    """MLP surrogate of a pricer on a feature box (Karatas et al. 2019, section 3).

    Parameters
    ----------
    feature_box : Box
        Names and bounds of the raw features ``[params..., K/S, tau, r, q]``; inputs are scaled
        to ``[-1, 1]`` with it and queries outside it warn (or raise with ``strict=True``).
    depth, width : int
        Hidden layers and units per layer.
    activation : str
        One of :data:`ACTIVATIONS`.
    baseline : {"none", "heston_bs", "vg_bs"}
        Control-variate price added to the network output (see module docstring).
    dtype : torch.dtype
        Dtype of the network weights (float32 is fastest on CPU; outputs follow the input dtype).

    Examples
    --------
    >>> from dnnkit.options.data import generate_dataset
    >>> ds = generate_dataset("bs", 512, seed=0)
    >>> net = SurrogatePricer(ds.feature_box, depth=2, width=16)
    >>> hist = net.fit(ds, epochs=2, batch_size=128)
    >>> net(ds.X[:3]).shape
    torch.Size([3])
    """

    def __init__(self, feature_box: Box, *, depth: int = 4, width: int = 64,
                 activation: str = "elu", baseline: str = "none",
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if not isinstance(feature_box, Box):
            raise TypeError(param_error("feature_box", "SurrogatePricer", "a Box",
                                        type(feature_box).__name__))
        check_int(depth, "depth", 1, where="SurrogatePricer")
        check_int(width, "width", 1, where="SurrogatePricer")
        check_choice(activation, "activation", tuple(ACTIVATIONS), where="SurrogatePricer")
        check_choice(baseline, "baseline", BASELINES, where="SurrogatePricer")
        check_memory(8.0 * depth * (width + 1) * (width + feature_box.dim), "width",
                     "options.SurrogatePricer")
        need = _BASE_PARAMS.get(baseline, ())
        missing = [k for k in need if k not in feature_box.names]
        if missing or (baseline != "none" and feature_box.names[-4:] != ("m", "tau", "r", "q")):
            raise ValueError(param_error("baseline", "SurrogatePricer",
                                         f"usable with the box features {list(feature_box.names)}",
                                         f"{baseline} (needs {list(need)} + m, tau, r, q)"))
        self.feature_box = feature_box
        self.config = {"depth": depth, "width": width, "activation": activation,
                       "baseline": baseline, "dtype": str(dtype).replace("torch.", "")}
        layers: list[nn.Module] = []
        prev = feature_box.dim
        for _ in range(depth):
            layers += [nn.Linear(prev, width, dtype=dtype), ACTIVATIONS[activation]()]
            prev = width
        layers.append(nn.Linear(prev, 1, dtype=dtype))
        self.net = nn.Sequential(*layers)
        self.register_buffer("low", feature_box.low.clone())
        self.register_buffer("high", feature_box.high.clone())
        self.register_buffer("y_shift", torch.zeros((), dtype=torch.float64))
        self.register_buffer("y_scale", torch.ones((), dtype=torch.float64))

    @classmethod
    @validate_params({"module": Instance(nn.Module), "feature_box": Instance(Box),
                      "baseline": Options(*BASELINES)})
    def from_module(cls, module: nn.Module, feature_box: Box, *, baseline: str = "none"
                    ) -> SurrogatePricer:
        """Wrap a user's ``nn.Module`` (unit-scaled features ``(n, d)`` -> ``(n,)`` or
        ``(n, 1)``) with the box scaling, baseline, output normalisation, ``fit``, ``price``
        and ``save``. ``fit`` keeps the module's own initialisation; ``load`` then needs
        ``module=`` (a fresh instance of the same architecture)."""
        if not isinstance(module, nn.Module) or next(module.parameters(), None) is None:
            raise TypeError(param_error("module", "SurrogatePricer.from_module",
                                        "an nn.Module with parameters", type(module).__name__))
        obj = cls(feature_box, depth=1, width=1, baseline=baseline)
        obj.net = module
        p = next(module.parameters())
        obj.config.update({"depth": None, "width": None, "activation": None, "custom": True,
                           "dtype": str(p.dtype).replace("torch.", "")})
        return obj

    # ------------------------------------------------------------------ forward / price
    def _param(self) -> torch.Tensor:
        return next(self.net.parameters())

    def _unit(self, X: torch.Tensor) -> torch.Tensor:
        lo, hi = self.low.to(X), self.high.to(X)
        span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        return torch.where(hi > lo, 2 * (X - lo) / span - 1, torch.zeros_like(X))

    @validate_params({"X": _X})
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Raw features ``(n, d)`` -> ``C/K`` ``(n,)`` in the input's dtype (no box check)."""
        if X.shape[1] != self.feature_box.dim:
            raise ValueError(param_error("X", "options.SurrogatePricer.forward",
                                         f"a tensor with {self.feature_box.dim} columns "
                                         f"{list(self.feature_box.names)}",
                                         f"shape {tuple(X.shape)}"))
        w = self._param()
        z = self.net(self._unit(X).to(w.device, w.dtype))
        if z.ndim == 2 and z.shape[1] == 1:
            z = z[:, 0]
        if z.shape != X.shape[:1]:
            raise ValueError(f"SurrogatePricer: the network returned shape {tuple(z.shape)} for "
                             f"{X.shape[0]} rows; it must return (n,) or (n, 1).")
        z = z.to(X.device, X.dtype)
        base = _baseline(self.config["baseline"], self.feature_box, X)
        return base + self.y_shift.to(X) + self.y_scale.to(X) * z

    @validate_params({"X": Tensor(ndim=2), "strict": Instance(bool), "where": Str()})
    def check_features(self, X, *, strict: bool = False, where: str = "SurrogatePricer.price"
                       ) -> torch.Tensor:
        """Validate raw features: shape, finiteness and the training box.

        Outside the box the network extrapolates: a ``UserWarning`` names the features and the
        distance, or ``ValueError`` with ``strict=True``. Never a silent guess.
        """
        X = check_tensor(X, "X", ndim=2, where=where)
        if X.shape[1] != self.feature_box.dim:
            raise ValueError(param_error("X", where, f"a tensor with {self.feature_box.dim} "
                                         f"columns {list(self.feature_box.names)}",
                                         f"shape {tuple(X.shape)}"))
        if not X.is_floating_point():
            X = X.to(torch.float64)
        bad = self.feature_box.violations(X.detach())
        if bad:
            msg = ("queried outside the surrogate's training box: " + "; ".join(bad))
            if strict:
                raise ValueError(f"{where}: {msg}.")
            warnings.warn(f"{where}: {msg}; the network extrapolates.", UserWarning,
                          stacklevel=3)
        return X

    @validate_params({"params": Tensor(ndim=(1, 2)), "contracts": Tensor(ndim=2, finite=False),
                      "strict": Instance(bool)})
    def price(self, params, contracts, *, strict: bool = False) -> torch.Tensor:
        """Surrogate ``C/K`` for ``params (n, p)`` (or ``(1, p)``) and ``contracts (n, 4)``.

        Raises ``ValueError`` on NaN, shape mismatches, non-positive moneyness/maturity and (with
        ``strict=True``) queries outside the training box; warns otherwise.
        """
        from dnnkit.options.processes import check_contracts

        c = check_contracts(contracts, where="SurrogatePricer.price")
        p = check_tensor(params, "params", ndim=(1, 2), where="SurrogatePricer.price")
        p = p.unsqueeze(0) if p.ndim == 1 else p
        if p.shape[0] not in (1, c.shape[0]):
            raise ValueError(param_error("params", "SurrogatePricer.price",
                                         f"a tensor with 1 or {c.shape[0]} rows",
                                         f"shape {tuple(p.shape)}"))
        p = p.to(c.dtype).expand(c.shape[0], -1)
        X = self.check_features(torch.cat([p, c], 1), strict=strict)
        return self(X)

    # ------------------------------------------------------------------ training
    @validate_params({"train": Instance(PricingDataset), "val": Optional_(Instance(PricingDataset)),
                      "loss": Options(*LOSSES), "optimizer": Options(*OPTIMIZERS),
                      "lr": Real(0.0, 10.0, closed="right"), "batch_size": Int(1, 100_000_000),
                      "epochs": Int(1, 10_000_000),
                      "time_budget_s": Optional_(Real(0.0, 1e7, closed="right")),
                      "early_stopping": Int(1, 10_000_000),
                      "lr_final": Real(0.0, 1.0, closed="right"),
                      "weight_decay": Real(0.0, 10.0), "seed": Seed(),
                      "on_epoch": Optional_(Callable_())})
    def fit(self, train: PricingDataset, val: PricingDataset | None = None, *, loss: str = "mse",
            optimizer: str = "adam", lr: float = 1e-3, batch_size: int = 1024,
            epochs: int = 200, time_budget_s: float | None = None, early_stopping: int = 20,
            lr_final: float = 0.01, weight_decay: float = 0.0, seed=0,
            on_epoch: Callable[[int, dict], None] | None = None) -> dict:
        """Train on ``train`` (minibatches, seeded), keep the best weights on ``val``.

        The learning rate decays geometrically from ``lr`` to ``lr * lr_final`` over the run (over
        the time budget when one is given, else over ``epochs``). Early stopping after
        ``early_stopping`` epochs without improvement of the validation RMSE.

        Parameters
        ----------
        train, val : PricingDataset
        loss : {"mse", "mae", "huber", "mape", "msle"}
            mse/mae/huber act on the scaled residual target; mape (``|e| / (y + 1e-3)``) and
            msle act on prices.
        optimizer : {"adam", "adamw", "sgd", "rmsprop", "lbfgs"}
            ``lbfgs`` is full batch with strong-Wolfe line search.
        time_budget_s : float, optional
            Wall-clock budget; training stops after the epoch that exceeds it.

        Returns
        -------
        dict
            ``epochs``, ``seconds``, ``train_loss`` (per epoch), ``val_rmse`` (per epoch),
            ``best_val_rmse``.
        """
        check_choice(loss, "loss", LOSSES, where="SurrogatePricer.fit")
        check_choice(optimizer, "optimizer", OPTIMIZERS, where="SurrogatePricer.fit")
        check_positive(lr, "lr", where="SurrogatePricer.fit")
        check_int(batch_size, "batch_size", 1, where="SurrogatePricer.fit")
        check_int(epochs, "epochs", 1, where="SurrogatePricer.fit")
        check_interval(lr_final, "lr_final", 0.0, 1.0, closed="right", where="SurrogatePricer.fit")
        if time_budget_s is not None:
            check_positive(time_budget_s, "time_budget_s", where="SurrogatePricer.fit")
        for nm, ds in (("train", train), ("val", val)):
            if ds is not None and (not isinstance(ds, PricingDataset)
                                   or ds.X.shape[1] != self.feature_box.dim):
                raise ValueError(param_error(nm, "SurrogatePricer.fit",
                                             f"a PricingDataset with {self.feature_box.dim} "
                                             "features", getattr(ds, "X", ds)))
        gen = make_generator(seed)
        dev, wdt = self._param().device, self._param().dtype
        with torch.no_grad():
            if not self.config.get("custom"):        # seeded restart of our own MLP
                for lin in (m for m in self.net if isinstance(m, nn.Linear)):
                    nn.init.kaiming_uniform_(lin.weight, a=math.sqrt(5), generator=gen)
                    bound = 1 / math.sqrt(lin.in_features)
                    nn.init.uniform_(lin.bias, -bound, bound, generator=gen)
            Xtr = train.X.to(dev, torch.float64)
            base = _baseline(self.config["baseline"], self.feature_box, Xtr)
            resid = train.y.to(dev, torch.float64) - base
            self.y_shift.copy_(resid.mean())
            self.y_scale.copy_(resid.std().clamp(min=1e-12))
            Z = self._unit(Xtr).to(wdt)
            T = ((resid - self.y_shift) / self.y_scale).to(wdt)
            base_w, y_w = base.to(wdt), train.y.to(dev, wdt)
        params = list(self.net.parameters())
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(params, lr=lr, line_search_fn="strong_wolfe", max_iter=20)
        elif optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
        elif optimizer == "rmsprop":
            opt = torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
        elif optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        scale, shift = float(self.y_scale), float(self.y_shift)

        def loss_fn(out, t, b, y):
            if loss == "mse":
                return torch.mean((out - t) ** 2)
            if loss == "mae":
                return torch.mean((out - t).abs())
            if loss == "huber":
                return nn.functional.huber_loss(out, t, delta=1.0)
            price = b + shift + scale * out
            if loss == "mape":
                return torch.mean((price - y).abs() / (y.abs() + 1e-3))
            return torch.mean((torch.log1p(price.clamp(min=-0.999)) - torch.log1p(y)) ** 2)

        hist: dict = {"train_loss": [], "val_rmse": [], "epochs": 0}
        best, best_state, stale = math.inf, None, 0
        t0 = time.perf_counter()
        n = Z.shape[0]
        for ep in range(epochs):
            frac = ((time.perf_counter() - t0) / time_budget_s if time_budget_s
                    else ep / max(1, epochs))
            for g in opt.param_groups:
                g["lr"] = lr * lr_final ** min(1.0, frac)
            self.net.train()
            tot, cnt = 0.0, 0
            if optimizer == "lbfgs":
                def closure():
                    opt.zero_grad()
                    val_ = loss_fn(self.net(Z).reshape(-1), T, base_w, y_w)
                    val_.backward()
                    return val_
                tot, cnt = float(opt.step(closure).detach()), 1
            else:
                perm = torch.randperm(n, generator=gen).to(dev)
                for i in range(0, n, batch_size):
                    idx = perm[i:i + batch_size]
                    opt.zero_grad(set_to_none=True)
                    li = loss_fn(self.net(Z[idx]).reshape(-1), T[idx], base_w[idx], y_w[idx])
                    li.backward()
                    opt.step()
                    tot += float(li.detach()) * idx.numel()
                    cnt += idx.numel()
            self.net.eval()
            hist["train_loss"].append(tot / max(cnt, 1))
            hist["epochs"] = ep + 1
            if val is not None:
                with torch.no_grad():
                    vr = float(torch.sqrt(torch.mean((self(val.X) - val.y) ** 2)))
                hist["val_rmse"].append(vr)
                if vr < best:
                    best, stale = vr, 0
                    best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                else:
                    stale += 1
            if on_epoch is not None:
                on_epoch(ep, hist)
            if not math.isfinite(hist["train_loss"][-1]):
                log.warning("SurrogatePricer.fit: loss became non-finite at epoch %d", ep)
                break
            if val is not None and stale >= early_stopping:
                break
            if time_budget_s is not None and time.perf_counter() - t0 >= time_budget_s:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        hist["seconds"] = time.perf_counter() - t0
        hist["best_val_rmse"] = best
        return hist

    # ------------------------------------------------------------------ persistence
    @validate_params({"path": PathArg()})
    def save(self, path: str | Path) -> Path:
        """Write weights, box and normalisation as one safetensors file (atomic)."""
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors.update({"box.low": self.low, "box.high": self.high,
                        "norm.y_shift": self.y_shift, "norm.y_scale": self.y_scale})
        meta = {"kind": "dnnkit.options.SurrogatePricer", "config": self.config,
                "names": list(self.feature_box.names)}
        return save_tensors(path, tensors, meta)

    @classmethod
    @validate_params({"path": PathArg(must_exist=True, kind="file"),
                      "device": AnyOf(Str(), Instance(torch.device)),
                      "module": Optional_(Instance(nn.Module))})
    def load(cls, path: str | Path, device: str | torch.device = "cpu", *,
             module: nn.Module | None = None) -> SurrogatePricer:
        """Rebuild a pricer written by :meth:`save`; ``CheckpointError`` on a bad file.

        A pricer made with :meth:`from_module` needs ``module=`` (same architecture)."""
        tensors, meta = load_tensors(path, device)
        if meta.get("kind") != "dnnkit.options.SurrogatePricer":
            raise CheckpointError(f"{str(path)!r} is not a saved SurrogatePricer.")
        cfg = dict(meta["config"])
        dtype = getattr(torch, cfg.pop("dtype", "float32"))
        box = Box(tuple(meta["names"]), tensors["box.low"], tensors["box.high"])
        if cfg.pop("custom", False):
            if module is None:
                raise CheckpointError(f"{str(path)!r} holds a custom network: pass module= (a "
                                      "fresh instance of the same architecture) to load it.")
            obj = cls.from_module(module, box, baseline=cfg["baseline"])
        else:
            obj = cls(box, dtype=dtype, **cfg)
        sd = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            obj.net.load_state_dict(sd)
        except RuntimeError as exc:
            raise CheckpointError(f"{str(path)!r} does not match its own config: {exc}") from None
        obj.y_shift.copy_(tensors["norm.y_shift"])
        obj.y_scale.copy_(tensors["norm.y_scale"])
        return obj.to(device)


def evaluate(pricer: Callable[[torch.Tensor], torch.Tensor], data: PricingDataset, *,
             m_edges: Sequence[float] = (0.9, 0.97, 1.03, 1.1),
             tau_edges: Sequence[float] = (0.25, 0.5, 1.0)) -> dict:
    """Accuracy of ``pricer(X) -> C/K`` on ``data`` (spec section 2.4).

    Returns mse, rmse, mae, max_abs, r2 (``1 - SSE/SST``), rel_err_mean over prices > 1e-3, and
    ``rmse_by_moneyness`` / ``rmse_by_maturity`` lists of ``(label, rmse, count)``; with MC labels
    (``data.stderr``) also the ``noise_floor`` (root mean MC variance): an RMSE near it means
    the surrogate is as close to the truth as the labels allow.
    """
    with torch.no_grad():
        pred = torch.as_tensor(pricer(data.X)).reshape(-1).to(torch.float64).cpu()
    y = data.y.to(torch.float64).cpu()
    err = pred - y
    names = data.feature_box.names
    out = {"n": len(y), "mse": float(torch.mean(err ** 2)),
           "rmse": float(torch.sqrt(torch.mean(err ** 2))), "mae": float(err.abs().mean()),
           "max_abs": float(err.abs().max()),
           "r2": float(1 - torch.sum(err ** 2) / torch.sum((y - y.mean()) ** 2))}
    big = y > 1e-3
    out["rel_err_mean"] = float((err[big].abs() / y[big]).mean()) if bool(big.any()) else math.nan

    def buckets(col: torch.Tensor, edges: Sequence[float], nm: str):
        e = [-math.inf, *edges, math.inf]
        res = []
        for lo, hi in itertools.pairwise(e):
            sel = (col >= lo) & (col < hi)
            if bool(sel.any()):
                res.append((f"{nm} in [{lo:g}, {hi:g})", float(torch.sqrt(torch.mean(err[sel] ** 2))),
                            int(sel.sum())))
        return res

    if "m" in names:
        out["rmse_by_moneyness"] = buckets(data.X[:, names.index("m")].cpu(), m_edges, "K/S")
    if "tau" in names:
        out["rmse_by_maturity"] = buckets(data.X[:, names.index("tau")].cpu(), tau_edges, "tau")
    if data.stderr is not None:
        se = data.stderr.to(torch.float64).cpu()
        out["noise_floor"] = float(torch.sqrt(torch.mean(se ** 2)))
    return out


def sweep(train: PricingDataset, val: PricingDataset, grid: Mapping[str, Sequence], *,
          time_budget_s: float = 20.0, baseline: str = "none", seed: int = 0) -> list[dict]:
    """The paper's empirical architecture search: every combination in ``grid`` trained with the
    same wall-clock budget, sorted by validation RMSE.

    ``grid`` keys: ``depth``, ``width``, ``activation``, ``loss``, ``optimizer``, ``lr``,
    ``batch_size`` (missing keys use the defaults of :class:`SurrogatePricer` / ``fit``).

    Returns
    -------
    list of dict
        One row per combination: the settings, ``val_rmse``, ``epochs``, ``seconds``.
    """
    allowed = ("depth", "width", "activation", "loss", "optimizer", "lr", "batch_size")
    for k in grid:
        check_choice(k, "grid key", allowed, where="sweep")
    check_positive(time_budget_s, "time_budget_s", where="sweep")
    keys = list(grid)
    rows = []
    for combo in itertools.product(*(list(grid[k]) for k in keys)):
        cfg = dict(zip(keys, combo))
        net = SurrogatePricer(train.feature_box, depth=cfg.get("depth", 4),
                              width=cfg.get("width", 64), activation=cfg.get("activation", "elu"),
                              baseline=baseline)
        h = net.fit(train, val, loss=cfg.get("loss", "mse"), optimizer=cfg.get("optimizer", "adam"),
                    lr=cfg.get("lr", 1e-3), batch_size=cfg.get("batch_size", 1024),
                    epochs=10_000, time_budget_s=time_budget_s, early_stopping=10_000, seed=seed)
        rows.append({**cfg, "val_rmse": h["best_val_rmse"], "epochs": h["epochs"],
                     "seconds": h["seconds"]})
    rows.sort(key=lambda r: r["val_rmse"])
    return rows


def speed_report(fast: Callable[[torch.Tensor], torch.Tensor],
                 reference: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, *,
                 repeats: int = 5) -> dict:
    """Time ``fast(X)`` (e.g. a surrogate) against ``reference(X)`` (e.g. the COS pricer) on the
    same batch (spec section 7): median wall and CPU time over ``repeats`` runs after one
    warm-up, options per second, the speed-up and the max absolute difference of the outputs.
    Records ``torch.get_num_threads()`` and the input dtype."""
    check_int(repeats, "repeats", 1, where="speed_report")
    X = check_tensor(X, "X", ndim=2, where="speed_report")

    def timed(fn):
        with torch.no_grad():
            out = fn(X)
            walls, cpus = [], []
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                fn(X)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
        walls.sort()
        cpus.sort()
        return out, walls[len(walls) // 2], cpus[len(cpus) // 2]

    out_f, wf, cf = timed(fast)
    out_r, wr, cr = timed(reference)
    diff = float((torch.as_tensor(out_f).reshape(-1).to(torch.float64).cpu()
                  - torch.as_tensor(out_r).reshape(-1).to(torch.float64).cpu()).abs().max())
    n = X.shape[0]
    return {"n": n, "threads": torch.get_num_threads(), "dtype": str(X.dtype),
            "fast_wall_s": wf, "fast_cpu_s": cf, "reference_wall_s": wr, "reference_cpu_s": cr,
            "fast_per_s": n / wf if wf > 0 else math.inf,
            "reference_per_s": n / wr if wr > 0 else math.inf,
            "speedup": wr / wf if wf > 0 else math.inf, "max_abs_diff": diff}
