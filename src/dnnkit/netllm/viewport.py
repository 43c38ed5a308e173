"""Viewport prediction (VP) substrate: synthetic head motion, baselines, the adapted predictor.

Viewports are ``(roll, pitch, yaw)`` in degrees, yaw in [-180, 180). The task (spec 2.1/2.4):
from ``history`` past samples (5 Hz) predict the next ``horizon`` samples; metric MAE in degrees
with yaw wrap-around.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from dnnkit.core.seeding import make_generator, make_rng
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Real,
    Seed,
    Tensor,
    check_int,
    check_interval,
    check_tensor,
    param_error,
    validate_params,
)
from dnnkit.netllm._loop import seeded_training
from dnnkit.netllm.backbone import _check_backbone
from dnnkit.netllm.model import NetworkingHead, _run_backbone

__all__ = ["synthetic_viewports", "viewport_windows", "viewport_mae", "VelocityPredictor",
           "LinearRegressionPredictor", "NetLLMPredictor", "train_supervised", "wrap_degrees"]

ANGLE_SCALE = 90.0


def wrap_degrees(x: torch.Tensor) -> torch.Tensor:
    """Map angles to [-180, 180)."""
    return torch.remainder(x + 180.0, 360.0) - 180.0


@validate_params({"n_users": Int(1, 100_000), "seconds": Real(0.0, 1e6, closed="right"),
                  "hz": Int(1, 1000), "seed": Seed()})
def synthetic_viewports(n_users: int, seconds: float, *, hz: int = 5, seed=0) -> torch.Tensor:
    """Synthetic head-motion traces ``(n_users, seconds * hz, 3)`` (roll, pitch, yaw) degrees.

    Yaw: random walk with momentum (angular velocity AR(1), occasional fixations); pitch:
    Ornstein-Uhlenbeck around the equator, clipped to +-90; roll: small OU noise.
    """
    where = "netllm.synthetic_viewports"
    n_users = check_int(n_users, "n_users", 1, 100_000, where=where)
    seconds = check_interval(seconds, "seconds", 0.0, 1e6, closed="neither", where=where)
    hz = check_int(hz, "hz", 1, 1000, where=where)
    n = int(round(seconds * hz))
    if n < 2:
        raise ValueError(param_error("seconds", where, "at least 2 samples at this rate", seconds))
    rng = make_rng(seed)
    dt = 1.0 / hz
    out = np.zeros((n_users, n, 3))
    for u in range(n_users):
        yaw, v, pitch, roll = rng.uniform(-180, 180), 0.0, rng.normal(0, 10), 0.0
        speed = rng.uniform(10, 40)      # typical angular speed of this user, deg/s
        for i in range(n):
            if rng.random() < 0.04:
                v = rng.normal(0, speed)  # a new glance direction
            v = 0.9 * v + rng.normal(0, 0.25 * speed)
            yaw = (yaw + v * dt + 180.0) % 360.0 - 180.0
            pitch += -0.5 * pitch * dt + rng.normal(0, 6.0) * np.sqrt(dt)
            pitch = float(np.clip(pitch, -90, 90))
            roll += -1.0 * roll * dt + rng.normal(0, 1.0) * np.sqrt(dt)
            out[u, i] = (roll, pitch, yaw)
    return torch.tensor(out, dtype=torch.float32)


@validate_params({"traces": Tensor(ndim=3), "history": Int(1, 100_000),
                  "horizon": Int(1, 100_000), "stride": Int(1, 100_000)})
def viewport_windows(traces: torch.Tensor, *, history: int = 10, horizon: int = 20,
                     stride: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``(U, N, 3)`` traces into ``(history, horizon)`` pairs: ``x (M, history, 3)``,
    ``y (M, horizon, 3)``."""
    where = "netllm.viewport_windows"
    traces = check_tensor(traces, "traces", ndim=3, where=where)
    history = check_int(history, "history", 1, 100_000, where=where)
    horizon = check_int(horizon, "horizon", 1, 100_000, where=where)
    stride = check_int(stride, "stride", 1, 100_000, where=where)
    if traces.shape[-1] != 3 or traces.shape[1] < history + horizon:
        raise ValueError(param_error("traces", where, f"shape (users, >= {history + horizon}, 3)",
                                     f"shape {tuple(traces.shape)}"))
    xs, ys = [], []
    for s in range(0, traces.shape[1] - history - horizon + 1, stride):
        xs.append(traces[:, s:s + history])
        ys.append(traces[:, s + history:s + history + horizon])
    return torch.cat(xs), torch.cat(ys)


@validate_params({"pred": Tensor(), "true": Tensor(), "wrap_yaw": Instance(bool)})
def viewport_mae(pred: torch.Tensor, true: torch.Tensor, *, wrap_yaw: bool = True) -> float:
    """Mean absolute error in degrees over all samples and the 3 angles; the yaw error is taken
    on the circle (``|wrap(pred - true)|``)."""
    pred = check_tensor(pred, "pred", where="netllm.viewport_mae")
    true = check_tensor(true, "true", where="netllm.viewport_mae")
    if pred.shape != true.shape or pred.shape[-1] != 3:
        raise ValueError(param_error("pred", "netllm.viewport_mae",
                                     f"shape {tuple(true.shape)} with 3 angles last",
                                     f"shape {tuple(pred.shape)}"))
    d = (pred - true).abs()
    if wrap_yaw:
        d[..., 2] = wrap_degrees(pred[..., 2] - true[..., 2]).abs()
    return float(d.mean())


def _unwrap(x: torch.Tensor) -> torch.Tensor:
    """Unwrap yaw along the time axis (-2) so it is continuous."""
    y = x.clone()
    dy = wrap_degrees(torch.diff(x[..., 2], dim=-1))
    y[..., 1:, 2] = x[..., :1, 2] + torch.cumsum(dy, dim=-1)
    return y


def _rewrap(y: torch.Tensor) -> torch.Tensor:
    y = y.clone()
    y[..., 2] = wrap_degrees(y[..., 2])
    y[..., 1] = y[..., 1].clamp(-90, 90)
    return y


@validate_params({"k": Int(1, 1000)})
class VelocityPredictor:
    """Extrapolate the last velocity (mean of the last ``k`` differences, yaw unwrapped)."""

    def __init__(self, k: int = 1):
        self.k = check_int(k, "k", 1, 1000, where="netllm.VelocityPredictor")

    def __call__(self, history: torch.Tensor, horizon: int) -> torch.Tensor:
        h = _unwrap(history)
        k = min(self.k, h.shape[-2] - 1)
        v = (h[..., -1, :] - h[..., -1 - k, :]) / k
        steps = torch.arange(1, horizon + 1, dtype=h.dtype)
        return _rewrap(h[..., -1:, :] + steps[:, None] * v[..., None, :])


class LinearRegressionPredictor:
    """Per-angle least-squares line over the history (yaw unwrapped), extrapolated."""

    def __call__(self, history: torch.Tensor, horizon: int) -> torch.Tensor:
        h = _unwrap(history).double()
        n = h.shape[-2]
        t = torch.arange(n, dtype=torch.float64)
        A = torch.stack([t, torch.ones_like(t)], 1)                  # (n, 2)
        coef = torch.linalg.pinv(A) @ h                              # (..., 2, 3)
        tf = torch.arange(n, n + horizon, dtype=torch.float64)
        F = torch.stack([tf, torch.ones_like(tf)], 1)
        return _rewrap((F @ coef).to(history.dtype))


@validate_params({"backbone": Instance(nn.Module), "history": Int(1, 10_000),
                  "horizon": Int(1, 10_000), "features": Int(1, 1 << 16)})
class NetLLMPredictor(nn.Module):
    """Adapted LM for VP: each past viewport becomes one token (Linear(3 -> F) + projection,
    timestep embedding, LayerNorm), the backbone runs once, and a bounded regression head reads
    the last hidden state and outputs all ``horizon x 3`` future offsets in one pass (the
    "answer in one inference" variant of spec 2.3; offsets relative to the last viewport, in
    units of 90 degrees, through Tanh)."""

    def __init__(self, backbone: nn.Module, *, history: int = 10, horizon: int = 20,
                 features: int = 64):
        super().__init__()
        where = "netllm.NetLLMPredictor"
        d = _check_backbone(backbone)
        self.history = check_int(history, "history", 1, 10_000, where=where)
        self.horizon = check_int(horizon, "horizon", 1, 10_000, where=where)
        features = check_int(features, "features", 1, 1 << 16, where=where)
        self.backbone = backbone
        self.encode = nn.Sequential(nn.Linear(3, features), nn.LeakyReLU(),
                                    nn.Linear(features, d))
        self.time_embedding = nn.Embedding(self.history, d)
        self.norm = nn.LayerNorm(d)
        self.head = NetworkingHead.regression(d, self.horizon * 3, bounded=True)

    def _inputs(self, history: torch.Tensor) -> torch.Tensor:
        h = _unwrap(history)
        return (h - h[..., -1:, :]) / ANGLE_SCALE

    @validate_params({"history": Tensor(ndim=3)})
    def offsets(self, history: torch.Tensor) -> torch.Tensor:
        """Normalised future offsets ``(B, horizon, 3)`` (the training target space)."""
        x = self._inputs(history[..., -self.history:, :])
        T = x.shape[-2]
        tok = self.encode(x) + self.time_embedding(torch.arange(T, device=x.device))
        h = _run_backbone(self.backbone, self.norm(tok))[:, -1]
        return self.head(h).reshape(-1, self.horizon, 3)

    @validate_params({"history": Tensor(ndim=3)})
    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Predicted future viewports in degrees ``(B, horizon, 3)``."""
        h = _unwrap(history)
        return _rewrap(h[..., -1:, :] + ANGLE_SCALE * self.offsets(history))

    @validate_params({"history": Tensor(ndim=3), "future": Tensor(ndim=3)})
    def target(self, history: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        full = _unwrap(torch.cat([history, future], -2))
        return (full[..., -self.horizon:, :] - full[..., history.shape[-2] - 1:history.shape[-2],
                                                    :]) / ANGLE_SCALE


@validate_params({"x": Tensor(ndim=3), "y": Tensor(ndim=3),
                  "lr": Real(0.0, 10.0, closed="right"), "steps": Int(0, 1 << 30),
                  "batch_size": Int(1, 1 << 20), "clip": Real(0.0, 1e6, closed="right"),
                  "time_budget_s": Optional_(Real(0.0, 1e7)), "seed": Seed()})
def train_supervised(model: NetLLMPredictor, x: torch.Tensor, y: torch.Tensor, *,
                     lr: float = 1e-3, steps: int = 300, batch_size: int = 32,
                     clip: float = 1.0, time_budget_s: float | None = None, seed=0) -> dict:
    """MSE between predicted and true future offsets (spec 2.4, supervised part), AdamW."""
    where = "netllm.train_supervised"
    if not isinstance(model, NetLLMPredictor):
        raise TypeError(param_error("model", where, "a NetLLMPredictor", type(model).__name__))
    x = check_tensor(x, "x", ndim=3, where=where)
    y = check_tensor(y, "y", ndim=3, where=where)
    if len(x) != len(y) or y.shape[1] != model.horizon:
        raise ValueError(param_error("y", where, f"shape ({len(x)}, {model.horizon}, 3)",
                                     f"shape {tuple(y.shape)}"))
    lr = check_interval(lr, "lr", 0.0, 10.0, closed="right", where=where)
    steps = check_int(steps, "steps", 0, 1 << 30, where=where)
    batch_size = check_int(batch_size, "batch_size", 1, 1 << 20, where=where)
    p0 = next(model.encode.parameters())
    tgt = model.target(x, y)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    gen = make_generator(seed)
    losses = []
    t0 = time.perf_counter()
    with seeded_training(model, gen) as reseed:
        for _ in range(steps):
            reseed()
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
            idx = torch.randint(len(x), (batch_size,), generator=gen)
            pred = model.offsets(x[idx].to(p0.device, p0.dtype))
            loss = nn.functional.mse_loss(pred, tgt[idx].to(p0.device, p0.dtype))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            losses.append(float(loss.detach()))
    return {"loss": losses, "steps": len(losses), "seconds": time.perf_counter() - t0}
