"""FBNet's differentiable NAS: stochastic super-net, latency-aware loss, alternating search.

Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture
Search", CVPR 2019 (arXiv:1812.03443), Sec. 3.2-3.3, eqs. (2)-(7).
"""

from __future__ import annotations

import copy
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from dnnkit.core.hooks import preserved_mode
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    AnyOf,
    Callable_,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Sequence_,
    Str,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    check_tensor,
    param_error,
    suggest,
    validate_params,
)
from dnnkit.fbnet.latency import LatencyTable, check_lut_for_log
from dnnkit.fbnet.space import (
    BlockFactory,
    LayerSlot,
    build_checked,
    check_candidates,
    check_slots,
)

__all__ = ["SuperNet", "fbnet_loss", "gumbel_softmax_weights", "DNASConfig", "SearchResult",
           "Derived", "dnas_search"]

log = logging.getLogger("dnnkit")
LOSS_FORMS = ("paper", "log_pow")


def gumbel_softmax_weights(theta: torch.Tensor, tau: float, noise: torch.Tensor,
                           hard: bool = False) -> torch.Tensor:
    """Mixture weights ``m = softmax((theta + g) / tau)`` for Gumbel noise ``g`` (FBNet eq. 6).

    ``hard=True``: the one-hot argmax in the forward pass with the soft weights' gradient
    (straight-through); FBNet uses the soft weights.
    """
    m = torch.softmax((theta + noise) / tau, dim=-1)
    if hard:
        one = torch.zeros_like(m).scatter_(-1, m.argmax(-1, keepdim=True), 1.0)
        m = one - m.detach() + m
    return m


def sample_gumbel(shape, generator: torch.Generator, device, dtype) -> torch.Tensor:
    """``g = -log(-log u)``, ``u ~ U(0, 1)`` (clamped away from 0 and 1)."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    u = u.clamp(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).to(device=device, dtype=dtype)


@validate_params({"logits": Tensor(ndim=2, dtype="floating"), "targets": Tensor(ndim=1, dtype="integer"),
                  "alpha": Real(0.0, 1e3, closed="right"), "beta": Real(0.0, 1e3),
                  "form": Options(*LOSS_FORMS)})
def fbnet_loss(logits: torch.Tensor, targets: torch.Tensor, latency: torch.Tensor | float, *,
               alpha: float = 0.2, beta: float = 0.6, form: str = "paper") -> torch.Tensor:
    """FBNet's latency-aware loss (FBNet eq. 2).

    ``form='paper'``: ``CE * alpha * (log LAT)^beta``; ``form='log_pow'`` (popular
    re-implementations): ``alpha * CE * log(LAT^beta) = alpha * beta * CE * log LAT``. Both need
    ``LAT > 1`` in the table's unit.

    Raises
    ------
    ValueError
        ``alpha <= 0``, ``beta < 0`` (or ``beta == 0`` with ``log_pow``, which makes the loss 0),
        latency <= 1, an unknown form.
    """
    where = "fbnet.fbnet_loss"
    check_interval(alpha, "alpha", 0.0, None, closed="neither", where=where)
    check_interval(beta, "beta", 0.0, 1e3, where=where)
    check_choice(form, "form", LOSS_FORMS, where=where)
    if form == "log_pow" and beta == 0:
        raise ValueError(param_error("beta", where, "> 0 with form='log_pow' (the loss would be 0)",
                                     beta))
    lat = latency if isinstance(latency, torch.Tensor) else torch.tensor(float(latency))
    if not bool(torch.all(lat > 1)):
        raise ValueError(param_error("latency", where, "> 1 in the table's unit for the log loss "
                                     "(use a smaller unit, e.g. 'us')", float(lat.min())))
    ce = F.cross_entropy(logits, targets)
    lat = lat.to(ce.device, ce.dtype)
    if form == "paper":
        return ce * alpha * torch.log(lat) ** beta
    return alpha * beta * ce * torch.log(lat)


@dataclass(frozen=True)
class Derived:
    """Architectures derived from ``P_theta``: candidate names per slot, the mode and the seed."""

    archs: list[list[str]]
    mode: str
    seed: int | None


@validate_params({"stem": Instance(nn.Module), "head": Instance(nn.Module),
                  "candidates": Instance(Mapping), "slots": Instance(Sequence),
                  "lut": Instance(LatencyTable)})
class SuperNet(nn.Module):
    """FBNet's stochastic super-net (FBNet eqs. 5-7).

    Slot ``l`` outputs ``sum_i m_{l,i} b_{l,i}(x_l)`` with ``m_l = softmax((theta_l + g_l)/tau)``;
    the differentiable latency is ``LAT = sum_l sum_i m_{l,i} LUT[l, i]``. ``theta`` starts at 0
    (uniform ``P_theta``).

    Parameters
    ----------
    stem, head : nn.Module
        Fixed parts before the first and after the last slot (held and trained by the super-net).
    slots : sequence of LayerSlot
    candidates : mapping of str to BlockFactory
        Each candidate is built for each slot and checked against the slot's output shape.
    lut : LatencyTable
        ``[len(slots), len(candidates)]``, columns named as ``candidates``.

    Raises
    ------
    ValueError
        A candidate whose output does not fit its slot (named), a LUT of the wrong shape or
        with other candidate names.
    """

    def __init__(self, stem: nn.Module, slots: Sequence[LayerSlot],
                 candidates: Mapping[str, BlockFactory], head: nn.Module, lut: LatencyTable):
        super().__init__()
        where = "fbnet.SuperNet"
        for name, m in (("stem", stem), ("head", head)):
            if not isinstance(m, nn.Module):
                raise TypeError(param_error(name, where, "an nn.Module", type(m).__name__))
        check_candidates(candidates, where)
        slots = check_slots(slots, where)
        if not isinstance(lut, LatencyTable):
            raise TypeError(param_error("lut", where, "a LatencyTable", type(lut).__name__))
        if lut.shape != (len(slots), len(candidates)):
            raise ValueError(param_error("lut", where,
                                         f"a table of shape [{len(slots)}, {len(candidates)}]",
                                         f"shape {list(lut.shape)}"))
        if lut.names != list(candidates):
            raise ValueError(param_error("lut", where, f"columns {list(candidates)}", lut.names))
        made_for = lut.meta.get("slots") if isinstance(lut.meta, dict) else None
        here = [[s.c_in, s.c_out, s.stride, *s.input_hw] for s in slots]
        if made_for is not None and [list(r) for r in made_for] != here:
            raise ValueError(param_error("lut", where, f"a table made for these slots {here}",
                                         f"a table made for {made_for}"))
        for i in range(1, len(slots)):
            prev, cur = slots[i - 1], slots[i]
            if prev.c_out != cur.c_in or prev.output_hw != cur.input_hw:
                raise ValueError(f"Slot {i} ({cur}) does not take slot {i - 1}'s output "
                                 f"({prev.c_out} channels, {prev.output_hw}).")
        self.stem, self.head = stem, head
        self.slots = slots
        self.candidate_names = list(candidates)
        self.factories = dict(candidates)
        self.ops = nn.ModuleList(
            nn.ModuleList(build_checked(f, n, s, i) for n, f in candidates.items())
            for i, s in enumerate(slots))
        k = len(candidates)
        self.theta = nn.ParameterList(nn.Parameter(torch.zeros(k)) for _ in slots)
        self.lut = lut
        self.register_buffer("lut_values", lut.values.clone().float(), persistent=False)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture logits ``theta`` (one ``[K]`` vector per slot)."""
        return list(self.theta)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except ``theta`` (stem, candidates, head)."""
        ids = {id(p) for p in self.theta}
        return [p for p in self.parameters() if id(p) not in ids]

    def probabilities(self) -> list[torch.Tensor]:
        """``P_theta`` per slot: ``softmax(theta_l)`` (detached)."""
        return [torch.softmax(t.detach(), -1) for t in self.theta]

    def entropy(self) -> float:
        """Mean over slots of the entropy (nats) of ``softmax(theta_l)``."""
        ps = self.probabilities()
        return float(sum(-(p * torch.log(p.clamp_min(1e-30))).sum() for p in ps) / len(ps))

    def expected_latency(self) -> float:
        """``E_{a ~ P_theta}[LAT(a)] = sum_l sum_i softmax(theta_l)_i LUT[l, i]``."""
        p = torch.stack(self.probabilities()).to(self.lut.values)
        return float((p * self.lut.values).sum())

    @validate_params({"tau": Real(0.0, 1e6, closed="right"),
                      "generator": Optional_(Instance(torch.Generator)),
                      "noise": Optional_(Tensor(ndim=2)), "hard": Instance(bool)},
                     where="fbnet.SuperNet.mixture_weights")
    def mixture_weights(self, tau: float, *, generator: torch.Generator | None = None,
                        noise: torch.Tensor | None = None, hard: bool = False) -> torch.Tensor:
        """Gumbel-softmax weights ``[L, K]`` (noise drawn from ``generator`` unless given)."""
        th = torch.stack(list(self.theta))
        if noise is not None and tuple(noise.shape) != tuple(th.shape):
            raise ValueError(param_error("noise", "fbnet.SuperNet.mixture_weights",
                                         f"a tensor of shape {tuple(th.shape)}",
                                         f"shape {tuple(noise.shape)}"))
        if noise is None:
            noise = sample_gumbel(th.shape, make_generator(generator), th.device, th.dtype)
        return gumbel_softmax_weights(th, tau, noise.to(th), hard)

    @validate_params({"x": Tensor(ndim=4), "tau": Real(0.0, 1e6, closed="right"),
                      "hard": Instance(bool)}, where="fbnet.SuperNet.forward")
    def forward(self, x: torch.Tensor, tau: float = 1.0, hard: bool = False, *,
                generator: torch.Generator | None = None,
                weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the Gumbel-weighted latency ``LAT`` (FBNet eqs. 5 and 7).

        ``weights`` (``[L, K]``) overrides the Gumbel sample (e.g. a one-hot architecture).
        """
        where = "fbnet.SuperNet.forward"
        check_interval(tau, "tau", 0.0, None, closed="neither", where=where)
        check_tensor(x, "x", ndim=4, where=where)
        m = self.mixture_weights(tau, generator=generator, hard=hard) if weights is None \
            else weights
        h = self.stem(x)
        for ops, w in zip(self.ops, m):
            h = sum(wi * op(h) for wi, op in zip(w, ops))
        lat = (m * self.lut_values.to(m.dtype)).sum()
        return self.head(h), lat

    @validate_params({"mode": Options("argmax", "sample"), "n": Int(1, 100_000),
                      "seed": Optional_(Int(0, 2**63 - 1))}, where="fbnet.SuperNet.derive")
    def derive(self, mode: str = "argmax", n: int = 1, seed: int | None = None) -> Derived:
        """Child architectures: ``argmax theta_l`` per slot, or ``n`` samples of ``P_theta``.

        Sampling without a seed draws one from the OS and records it in the result.
        """
        where = "fbnet.SuperNet.derive"
        check_choice(mode, "mode", ("argmax", "sample"), where=where)
        check_int(n, "n", 1, 100_000, where=where)
        if mode == "argmax":
            arch = [self.candidate_names[int(t.detach().argmax())] for t in self.theta]
            return Derived([list(arch) for _ in range(n)], mode, None)
        if seed is None:
            seed = secrets.randbits(62)
        check_int(seed, "seed", 0, 2**63 - 1, where=where)
        g = make_generator(seed)
        p = torch.stack(self.probabilities()).cpu().double()
        idx = torch.multinomial(p, n, replacement=True, generator=g).T  # [n, L]
        return Derived([[self.candidate_names[int(j)] for j in row] for row in idx], mode, seed)

    @validate_params({"arch": Sequence_(AnyOf(Str(), Int(0, 100_000))), "inherit": Instance(bool)},
                     where="fbnet.SuperNet.build_child")
    def build_child(self, arch: Sequence[str | int], *, inherit: bool = False) -> nn.Sequential:
        """A plain network for ``arch``: stem, the chosen blocks, head.

        On the super-net's device and dtype. ``inherit=False`` (FBNet: train the child from
        scratch) builds fresh blocks and re-initialises copies of stem and head;
        ``inherit=True`` copies the super-net's weights.
        """
        idx = self.lut._indices(arch)
        stem, head = copy.deepcopy(self.stem), copy.deepcopy(self.head)
        if inherit:
            blocks = [copy.deepcopy(self.ops[i][j]) for i, j in enumerate(idx)]
        else:
            for m in list(stem.modules()) + list(head.modules()):
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            blocks = [self.factories[self.candidate_names[j]](s.c_in, s.c_out, s.stride)
                      for j, s in zip(idx, self.slots)]
        p = next(iter(self.parameters()))
        return nn.Sequential(stem, *blocks, head).to(p.device, p.dtype)


@validate_params({
    "epochs": Int(1, 100_000), "warmup_epochs": Int(0, 100_000),
    "tau0": Real(0.0, 1e6, closed="right"), "tau_decay": Real(0.0, 1.0, closed="right"),
    "w_lr": Real(0.0, 1e3, closed="right"), "w_momentum": Real(0.0, 1.0, closed="left"),
    "w_weight_decay": Real(0.0, 1.0), "w_cosine": Instance(bool),
    "theta_lr": Real(0.0, 1e3, closed="right"), "theta_weight_decay": Real(0.0, 1.0),
    "alpha": Real(0.0, 1e3, closed="right"), "beta": Real(0.0, 1e3),
    "loss_form": Options(*LOSS_FORMS), "w_split": Real(0.0, 1.0, closed="neither"),
    "batch_size": Int(1, 1 << 20), "theta_batch_size": Int(1, 1 << 20), "hard": Instance(bool),
    "seed": Int(0, 2**63 - 1)}, where="fbnet.DNASConfig")
@dataclass(frozen=True)
class DNASConfig:
    """Search hyper-parameters; defaults are FBNet's (Sec. 4.1) except batch sizes.

    ``tau_decay`` multiplies ``tau`` every epoch (paper: ``exp(-0.045)``); the first
    ``warmup_epochs`` train only ``w``; ``w_split`` of the data trains ``w``, the rest ``theta``.
    """

    epochs: int = 90
    warmup_epochs: int = 10
    tau0: float = 5.0
    tau_decay: float = math.exp(-0.045)
    w_lr: float = 0.1
    w_momentum: float = 0.9
    w_weight_decay: float = 1e-4
    w_cosine: bool = True
    theta_lr: float = 0.01
    theta_weight_decay: float = 5e-4
    alpha: float = 0.2
    beta: float = 0.6
    loss_form: str = "paper"
    w_split: float = 0.8
    batch_size: int = 128
    theta_batch_size: int = 128
    hard: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        where = "fbnet.DNASConfig"
        check_int(self.epochs, "epochs", 1, 100_000, where=where)
        check_int(self.warmup_epochs, "warmup_epochs", 0, 100_000, where=where)
        if self.warmup_epochs >= self.epochs:
            raise ValueError(param_error("warmup_epochs", where,
                                         f"< epochs ({self.epochs})", self.warmup_epochs))
        check_interval(self.tau0, "tau0", 0.0, 1e6, closed="right", where=where)
        check_interval(self.tau_decay, "tau_decay", 0.0, 1.0, closed="right", where=where)
        for name in ("w_lr", "theta_lr", "alpha"):
            check_interval(getattr(self, name), name, 0.0, 1e3, closed="right", where=where)
        for name in ("w_momentum",):
            check_interval(getattr(self, name), name, 0.0, 1.0, closed="left", where=where)
        for name in ("w_weight_decay", "theta_weight_decay"):
            check_interval(getattr(self, name), name, 0.0, 1.0, where=where)
        check_interval(self.beta, "beta", 0.0, 1e3, where=where)
        check_choice(self.loss_form, "loss_form", LOSS_FORMS, where=where)
        if self.loss_form == "log_pow" and self.beta == 0:
            raise ValueError(param_error("beta", where, "> 0 with loss_form='log_pow'", 0.0))
        check_interval(self.w_split, "w_split", 0.0, 1.0, closed="neither", where=where)
        check_int(self.batch_size, "batch_size", 1, 1 << 20, where=where)
        check_int(self.theta_batch_size, "theta_batch_size", 1, 1 << 20, where=where)
        check_int(self.seed, "seed", 0, 2**63 - 1, where=where)

    @validate_params({"epoch": Int(0, 10**7)}, where="fbnet.DNASConfig.tau")
    def tau(self, epoch: int) -> float:
        """Temperature of epoch ``epoch`` (0-based): ``tau0 * tau_decay ** epoch``."""
        return self.tau0 * self.tau_decay ** epoch


@dataclass
class SearchResult:
    """A search's history (one dict per epoch), final ``theta`` and argmax architecture.

    History keys: epoch, tau, ce_w, ce_theta, loss_theta, expected_latency, entropy, theta
    (list of lists), wall_s and cpu_s (cumulative wall-clock and process CPU seconds).
    """

    history: list[dict]
    theta: list[torch.Tensor]
    arch: list[str]
    arch_latency: float
    wall_s: float
    config: dict = field(default_factory=dict)
    cpu_s: float = 0.0

    def series(self, key: str) -> list:
        if not self.history or key not in self.history[0]:
            known = list(self.history[0]) if self.history else []
            raise KeyError(f"Unknown history key {key!r}; known: {known}.{suggest(key, known)}")
        return [h[key] for h in self.history]


def _batches(n: int, bs: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    return [perm[i:i + bs] for i in range(0, n, bs)]


@validate_params({"supernet": Instance(SuperNet), "x": Tensor(ndim=4, dtype="floating"),
                  "y": Tensor(ndim=1, dtype="integer"), "config": Optional_(Instance(DNASConfig)),
                  "callback": Optional_(Callable_())})
def dnas_search(supernet: SuperNet, x: torch.Tensor, y: torch.Tensor,
                config: DNASConfig | None = None,
                callback: Callable[[int, dict], None] | None = None) -> SearchResult:
    """FBNet's alternating search (FBNet Sec. 3.3 and 4.1).

    Splits ``(x, y)`` into a ``w``-set (``w_split``) and a ``theta``-set. Each epoch trains the
    weights ``w`` on the ``w``-set (SGD, momentum, weight decay, cosine lr; cross-entropy through
    a Gumbel-sampled super-net), then, after ``warmup_epochs``, ``theta`` on the ``theta``-set
    (Adam on :func:`fbnet_loss`). ``tau`` decays by ``tau_decay`` per epoch.

    ``w`` is trained on the cross-entropy alone: the latency factor of eq. (2) does not depend on
    ``w``, so its minimiser is the same, and leaving it in would rescale ``w``'s learning rate
    by ``alpha (log LAT)^beta``, differently for each ``beta``.

    Parameters
    ----------
    supernet : SuperNet
        Trained in place (its parameters' device is used; batches are moved there).
    x, y : torch.Tensor
        Images ``[N, C, H, W]`` and int64 labels ``[N]``.
    config : DNASConfig
    callback : callable, optional
        ``callback(epoch, record)`` after every epoch.

    Returns
    -------
    SearchResult
    """
    where = "fbnet.dnas_search"
    if not isinstance(supernet, SuperNet):
        raise TypeError(param_error("supernet", where, "a SuperNet", type(supernet).__name__))
    config = DNASConfig() if config is None else config
    if not isinstance(config, DNASConfig):
        raise TypeError(param_error("config", where, "a DNASConfig", type(config).__name__))
    check_tensor(x, "x", ndim=4, where=where)
    check_tensor(y, "y", ndim=1, where=where)
    if len(y) != len(x):
        raise ValueError(param_error("y", where, f"{len(x)} labels (one per image)", len(y)))
    if y.dtype not in (torch.int64, torch.int32):
        raise TypeError(param_error("y", where, "an integer label tensor", f"dtype {y.dtype}"))
    if callback is not None and not callable(callback):
        raise TypeError(param_error("callback", where, "a callable or None", callback))
    n_w = int(round(config.w_split * len(x)))
    if n_w < 1 or len(x) - n_w < 1:
        raise ValueError(param_error("x", where, f"enough samples for a non-empty w-set and "
                                     f"theta-set at w_split={config.w_split}", f"{len(x)} samples"))
    check_lut_for_log(supernet.lut, where)

    gen = make_generator(config.seed)
    perm = torch.randperm(len(x), generator=gen)
    p = next(iter(supernet.parameters()))
    dev, dt = p.device, p.dtype
    xw, yw = x[perm[:n_w]], y[perm[:n_w]].long()
    xt, yt = x[perm[n_w:]], y[perm[n_w:]].long()
    w_opt = torch.optim.SGD(supernet.weight_parameters(), lr=config.w_lr,
                            momentum=config.w_momentum, weight_decay=config.w_weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, config.epochs) \
        if config.w_cosine else None
    t_opt = torch.optim.Adam(supernet.arch_parameters(), lr=config.theta_lr,
                             weight_decay=config.theta_weight_decay)
    history: list[dict] = []
    t0, c0 = time.perf_counter(), time.process_time()
    with preserved_mode(supernet):
        supernet.train()
        for epoch in range(config.epochs):
            tau = config.tau(epoch)
            ce_w, nb = 0.0, 0
            for b in _batches(n_w, config.batch_size, gen):
                xb, yb = xw[b].to(dev, dt), yw[b].to(dev)
                logits, _ = supernet(xb, tau, config.hard, generator=gen)
                loss = F.cross_entropy(logits, yb)
                w_opt.zero_grad(set_to_none=True)
                t_opt.zero_grad(set_to_none=True)
                loss.backward()
                w_opt.step()
                ce_w += float(loss.detach())
                nb += 1
            if sched is not None:
                sched.step()
            ce_t = loss_t = float("nan")
            if epoch >= config.warmup_epochs:
                ce_sum = loss_sum = 0.0
                nt = 0
                for b in _batches(len(xt), config.theta_batch_size, gen):
                    xb, yb = xt[b].to(dev, dt), yt[b].to(dev)
                    logits, lat = supernet(xb, tau, config.hard, generator=gen)
                    loss = fbnet_loss(logits, yb, lat, alpha=config.alpha, beta=config.beta,
                                      form=config.loss_form)
                    w_opt.zero_grad(set_to_none=True)
                    t_opt.zero_grad(set_to_none=True)
                    loss.backward()
                    t_opt.step()
                    with torch.no_grad():
                        ce_sum += float(F.cross_entropy(logits, yb))
                    loss_sum += float(loss.detach())
                    nt += 1
                ce_t, loss_t = ce_sum / nt, loss_sum / nt
            rec = {"epoch": epoch, "tau": tau, "ce_w": ce_w / max(nb, 1), "ce_theta": ce_t,
                   "loss_theta": loss_t, "expected_latency": supernet.expected_latency(),
                   "entropy": supernet.entropy(),
                   "theta": [t.detach().cpu().tolist() for t in supernet.theta],
                   "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
            history.append(rec)
            log.debug("fbnet search epoch %d: tau %.3f ce_w %.3f E[LAT] %.4g H %.3f", epoch, tau,
                      rec["ce_w"], rec["expected_latency"], rec["entropy"])
            if callback is not None:
                callback(epoch, rec)
    arch = supernet.derive("argmax").archs[0]
    return SearchResult(history, [t.detach().cpu().clone() for t in supernet.theta], arch,
                        supernet.lut.total(arch), time.perf_counter() - t0, asdict(config),
                        time.process_time() - c0)
