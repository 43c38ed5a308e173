"""FedDIP hyper-parameters and the three schedules (sparsity, learning rate, regularisation).

All schedules follow the official code (github ``EricLoong/feddip``); ``t`` is the 0-based round.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    check_choice,
    check_int,
    check_interval,
    param_error,
    validate_params,
)

__all__ = ["FedDIPConfig", "lambda_schedule", "lr_schedule", "sparsity_schedule"]

_WHERE = "FedDIPConfig"


_ROUNDS = Int(1, 10_000_000)
_RATE = Real(0.0, 1.0, closed="left")


@validate_params({
    "rounds": _ROUNDS, "clients_per_round": Int(1, 1_000_000), "local_epochs": Int(1, 100_000),
    "batch_size": Int(1, 100_000_000), "lr": Real(0.0, 100.0, closed="right"),
    "lr_decay": Real(0.0, 1.0, closed="right"), "weight_decay": Real(0.0, 10.0),
    "momentum": _RATE, "init_sparsity": _RATE, "target_sparsity": _RATE,
    "reconfig_interval": _ROUNDS, "prune_until": Optional_(_ROUNDS),
    "lambda_max": Real(0.0, 1e6), "lambda_init": Real(0.0, 1e6),
    "lambda_segments": Int(1, 1_000_000), "norm_p": Real(0.0, 100.0, closed="right"),
    "regularize": Instance(bool), "prune": Instance(bool), "lambda_constant": Instance(bool),
    "prox_mu": Real(0.0, 1e6), "reprune_from": Options("masked", "dense"),
    "upload": Options("dense", "masked"),
    "round0_mask": Options("server_erk", "client_erk", "dense"), "seed": Int(0, 2**63 - 1)})
@dataclass(frozen=True)
class FedDIPConfig:
    """Hyper-parameters of FedDIP (defaults: the official code / README command).

    Parameters
    ----------
    rounds : int
        Number of federated rounds ``T``.
    clients_per_round : int
        Clients sampled per round (``C * K`` in the paper).
    local_epochs, batch_size, lr, lr_decay, weight_decay, momentum
        Local SGD: ``lr_t = lr * lr_decay**t``; weight decay acts on the dense weights.
    init_sparsity, target_sparsity : float
        ``s_0`` and ``s_p`` of the cubic schedule, both in [0, 1) with ``s_0 <= s_p``.
    reconfig_interval : int
        ``R``: the server re-prunes the global model when ``t % R == 0``.
    prune_until : int or None
        Round at which the cubic schedule reaches ``s_p`` (``None``: ``T``, as in the code,
        which never quite reaches ``s_p``). Set it to a multiple of ``R`` below ``T`` to end
        exactly at the target and leave rounds for fine-tuning.
    lambda_max, lambda_init, lambda_segments, norm_p
        Incremental regularisation ``lambda_t * sum_l ||m * w_l||_p`` (step schedule, ``Q``
        segments); ``norm_p = 2`` is the plain, non-squared L2 norm of each tensor.
    regularize, prune : bool
        Switch the incremental regularisation / the pruning off (both off = plain FedAvg).
    lambda_constant : bool
        Use ``lambda_max`` at every round instead of the incremental step schedule.
    prox_mu : float
        FedProx proximal term ``mu/2 ||w - w_global||^2`` (0 = off; code flag ``--prox``, 0.01).
    reprune_from : {"masked", "dense"}
        ``"masked"`` (code): the aggregate is masked before re-pruning, so masks never regrow.
        ``"dense"``: the server keeps the unmasked aggregate and re-prunes from it (regrowth).
    upload : {"dense", "masked"}
        What clients send back: the dense local weights (code) or ``mask * w``.
    round0_mask : {"server_erk", "client_erk", "dense"}
        Mask used in round 0 before the server has pruned: one seeded ERK mask of density
        ``1 - s_0`` drawn by the server, an independent ERK mask per client (code), or none.
    seed : int
        Seeds client sampling, round-0 masks and the clients' batch order.
    """

    rounds: int = 1000
    clients_per_round: int = 5
    local_epochs: int = 5
    batch_size: int = 128
    lr: float = 0.1
    lr_decay: float = 0.998
    weight_decay: float = 5e-4
    momentum: float = 0.0
    init_sparsity: float = 0.5
    target_sparsity: float = 0.9
    reconfig_interval: int = 5
    prune_until: int | None = None
    lambda_max: float = 1e-3
    lambda_init: float = 5e-4
    lambda_segments: int = 20
    norm_p: float = 2.0
    regularize: bool = True
    prune: bool = True
    lambda_constant: bool = False
    prox_mu: float = 0.0
    reprune_from: Literal["masked", "dense"] = "masked"
    upload: Literal["dense", "masked"] = "dense"
    round0_mask: Literal["server_erk", "client_erk", "dense"] = "server_erk"
    seed: int = 0

    def __post_init__(self) -> None:
        validate_config(self)

    def replace(self, **changes) -> FedDIPConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def pruning_end(self) -> int:
        """The round at which the sparsity schedule reaches ``target_sparsity``."""
        return self.rounds if self.prune_until is None else self.prune_until


def validate_config(cfg: FedDIPConfig) -> None:
    """Raise ``ValueError``/``TypeError`` naming the first bad field of ``cfg``."""
    check_int(cfg.rounds, "rounds", 1, where=_WHERE)
    check_int(cfg.clients_per_round, "clients_per_round", 1, where=_WHERE)
    check_int(cfg.local_epochs, "local_epochs", 1, where=_WHERE)
    check_int(cfg.batch_size, "batch_size", 1, where=_WHERE)
    check_interval(cfg.lr, "lr", 0.0, None, closed="neither", where=_WHERE)
    check_interval(cfg.lr_decay, "lr_decay", 0.0, 1.0, closed="right", where=_WHERE)
    check_interval(cfg.weight_decay, "weight_decay", 0.0, None, where=_WHERE)
    check_interval(cfg.momentum, "momentum", 0.0, 1.0, closed="left", where=_WHERE)
    check_interval(cfg.init_sparsity, "init_sparsity", 0.0, 1.0, closed="left", where=_WHERE)
    check_interval(cfg.target_sparsity, "target_sparsity", 0.0, 1.0, closed="left",
                   where=_WHERE)
    if cfg.init_sparsity > cfg.target_sparsity:
        raise ValueError(param_error("init_sparsity", _WHERE,
                                     f"<= target_sparsity ({cfg.target_sparsity})",
                                     cfg.init_sparsity))
    check_int(cfg.reconfig_interval, "reconfig_interval", 1, where=_WHERE)
    if cfg.prune_until is not None:
        check_int(cfg.prune_until, "prune_until", 1, cfg.rounds, where=_WHERE)
    check_interval(cfg.lambda_max, "lambda_max", 0.0, None, where=_WHERE)
    check_interval(cfg.lambda_init, "lambda_init", 0.0, None, where=_WHERE)
    check_int(cfg.lambda_segments, "lambda_segments", 1, where=_WHERE)
    if cfg.regularize and not cfg.lambda_constant and cfg.rounds < cfg.lambda_segments:
        raise ValueError(
            f"The 'rounds' parameter of {_WHERE} must be >= lambda_segments "
            f"({cfg.lambda_segments}) for the incremental regularisation schedule (each "
            f"segment needs at least one round). Got {cfg.rounds!r} instead. Lower "
            "lambda_segments, set lambda_constant=True or regularize=False.")
    check_interval(cfg.norm_p, "norm_p", 0.0, None, closed="neither", where=_WHERE)
    check_interval(cfg.prox_mu, "prox_mu", 0.0, None, where=_WHERE)
    for name in ("regularize", "prune", "lambda_constant"):
        if not isinstance(getattr(cfg, name), bool):
            raise TypeError(param_error(name, _WHERE, "a bool", getattr(cfg, name)))
    check_choice(cfg.reprune_from, "reprune_from", ("masked", "dense"), where=_WHERE)
    check_choice(cfg.upload, "upload", ("dense", "masked"), where=_WHERE)
    check_choice(cfg.round0_mask, "round0_mask", ("server_erk", "client_erk", "dense"),
                 where=_WHERE)
    check_int(cfg.seed, "seed", 0, where=_WHERE)


def sparsity_schedule(t: int, rounds: int, init_sparsity: float, target_sparsity: float,
                      *, end: int | None = None) -> float:
    """Cubic sparsity schedule of Zhu & Gupta used by FedDIP.

    ``s_t = s_p + (s_0 - s_p) * (1 - min(t, end) / end)**3`` with ``end = rounds`` by default
    (official code).

    Parameters
    ----------
    t : int
        Round index, ``0 <= t < rounds``.
    rounds : int
        Total number of rounds ``T``.
    init_sparsity, target_sparsity : float
        ``s_0 <= s_p`` in [0, 1).
    end : int, optional
        Round at which ``s_p`` is reached (``1 <= end <= rounds``).

    Returns
    -------
    float
        The scheduled sparsity ``s_t``.

    Examples
    --------
    >>> sparsity_schedule(0, 100, 0.5, 0.9)
    0.5
    >>> round(sparsity_schedule(50, 100, 0.5, 0.9), 4)
    0.85
    """
    check_int(rounds, "rounds", 1, where="sparsity_schedule")
    check_int(t, "t", 0, rounds - 1, where="sparsity_schedule")
    check_interval(init_sparsity, "init_sparsity", 0.0, 1.0, closed="left",
                   where="sparsity_schedule")
    check_interval(target_sparsity, "target_sparsity", 0.0, 1.0, closed="left",
                   where="sparsity_schedule")
    end = rounds if end is None else check_int(end, "end", 1, rounds, where="sparsity_schedule")
    frac = 1.0 - min(t, end) / end
    return float(target_sparsity + (init_sparsity - target_sparsity) * frac**3)


def lambda_schedule(t: int, rounds: int, lambda_max: float, lambda_init: float = 5e-4,
                    segments: int = 20) -> float:
    """Incremental regularisation strength (step function of the official code).

    ``L = T // Q``, segment ``i = min(t // L, Q - 1)`` (the last segment absorbs ``T mod Q``);
    ``lambda_t = 0`` in segment 0, else ``lambda_init + (lambda_max - lambda_init) (i-1)/(Q-1)``.
    The last value is ``lambda_init + (lambda_max - lambda_init)(Q-2)/(Q-1)``: the code never
    reaches ``lambda_max`` exactly.

    Raises
    ------
    ValueError
        If ``rounds < segments`` (a segment would be empty; the code then silently used the
        last value from round 0 on).

    Examples
    --------
    >>> lambda_schedule(0, 100, 1e-3)
    0.0
    >>> lambda_schedule(5, 100, 1e-3)
    0.0005
    """
    check_int(rounds, "rounds", 1, where="lambda_schedule")
    check_int(t, "t", 0, rounds - 1, where="lambda_schedule")
    check_int(segments, "segments", 1, rounds, where="lambda_schedule")
    check_interval(lambda_max, "lambda_max", 0.0, None, where="lambda_schedule")
    check_interval(lambda_init, "lambda_init", 0.0, None, where="lambda_schedule")
    seg_len = rounds // segments
    i = min(t // seg_len, segments - 1)
    if i == 0:
        return 0.0
    if segments == 1:
        return float(lambda_init)
    return float(lambda_init + (lambda_max - lambda_init) * (i - 1) / (segments - 1))


def lr_schedule(t: int, lr: float, decay: float) -> float:
    """``lr_t = lr * decay**t`` (exponential decay per round, code default 0.998)."""
    return float(lr * decay**t)


def round_plan(cfg: FedDIPConfig, t: int) -> dict[str, float | int | bool]:
    """Everything a round needs: ``lr``, ``lambda`` (0 when off), scheduled ``sparsity`` and
    whether the server re-prunes after aggregating (``reprune``)."""
    check_int(t, "t", 0, cfg.rounds - 1, where="round_plan")
    if not cfg.regularize:
        lam = 0.0
    elif cfg.lambda_constant:
        lam = float(cfg.lambda_max)
    else:
        lam = lambda_schedule(t, cfg.rounds, cfg.lambda_max, cfg.lambda_init,
                              cfg.lambda_segments)
    s_t = (sparsity_schedule(t, cfg.rounds, cfg.init_sparsity, cfg.target_sparsity,
                             end=cfg.pruning_end) if cfg.prune else 0.0)
    return {"round": t, "lr": lr_schedule(t, cfg.lr, cfg.lr_decay), "lambda": lam,
            "sparsity": s_t,
            "reprune": bool(cfg.prune and t % cfg.reconfig_interval == 0)}
