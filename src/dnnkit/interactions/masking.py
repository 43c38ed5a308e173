"""The masked value function ``v(x_T)`` of a model on one input, all ``2**n`` subsets batched."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from dnnkit.core.validation import (
    AnyOf,
    Callable_,
    Instance,
    Int,
    Optional_,
    Real,
    Str,
    Tensor,
    check_choice,
    check_int,
    check_tensor,
    param_error,
    validate_params,
)
from dnnkit.interactions.subsets import check_n, index_to_subset

__all__ = ["log_odds", "masked_outputs", "patch_players", "player_masks"]

OUTPUTS = ("log_odds", "logit", "prob")
_W = "masked_outputs"


def log_odds(logits: torch.Tensor, target: int) -> torch.Tensor:
    """``log(p / (1 - p + 1e-7) + 1e-7)`` with ``p = softmax(logits)[:, target]`` (official code).

    The two ``1e-7`` keep the value finite for ``p`` in {0, 1} (at most about +-16.1).
    """
    p = torch.softmax(logits, dim=-1)[:, target]
    return torch.log(p / (1.0 - p + 1e-7) + 1e-7)


def player_masks(players: Sequence[Sequence[int]] | torch.Tensor, shape: Sequence[int], *,
                 device: torch.device | str | None = None, where: str = _W) -> torch.Tensor:
    """Player groups as a boolean matrix ``(n, prod(shape))`` over the flattened input.

    ``players`` is either a list of index groups into the flattened input (``x.reshape(-1)``) or
    a boolean tensor ``(n, *shape)``. Groups must be non-empty, in range and pairwise disjoint;
    positions in no group are "background" and keep their value in every masked input.
    """
    numel = math.prod(shape)
    if isinstance(players, torch.Tensor):
        if players.dtype != torch.bool:
            raise TypeError(param_error("players", where, "index groups or a bool tensor "
                                        "(n, *x.shape)", f"tensor of dtype {players.dtype}"))
        if tuple(players.shape[1:]) != tuple(shape) or players.ndim < 1:
            raise ValueError(param_error("players", where, f"a bool tensor of shape (n, "
                                         f"{', '.join(map(str, shape))})",
                                         f"shape {tuple(players.shape)}"))
        check_n(players.shape[0], where=where)
        m = players.reshape(players.shape[0], numel).to(device)
    else:
        if isinstance(players, (str, bytes)) or not isinstance(players, Sequence):
            raise TypeError(param_error("players", where, "a sequence of index groups or a bool "
                                        "tensor", type(players).__name__))
        check_n(len(players), where=where)
        m = torch.zeros(len(players), numel, dtype=torch.bool, device=device)
        for i, group in enumerate(players):
            idx = [check_int(j, f"players[{i}]", 0, numel - 1, where=where) for j in group]
            if idx:
                m[i, torch.as_tensor(idx, device=m.device)] = True
    sizes = m.sum(1)
    empty = torch.nonzero(sizes == 0).flatten().tolist()
    if empty:
        raise ValueError(param_error("players", where, "non-empty groups",
                                     f"empty group(s) {empty}"))
    overlap = m.sum(0) > 1
    if bool(overlap.any()):
        pos = torch.nonzero(overlap).flatten()[:5].tolist()
        groups = [torch.nonzero(m[:, p]).flatten().tolist() for p in pos]
        raise ValueError(param_error("players", where, "pairwise disjoint groups",
                                     "overlaps at flat positions "
                                     + ", ".join(f"{p} (groups {g})" for p, g in zip(pos, groups))))
    return m


def patch_players(height: int, width: int, patch: int, *, channels: int = 1,
                  select: Sequence[int] | None = None) -> list[list[int]]:
    """Square ``patch x patch`` image patches as index groups over a flattened ``(C, H, W)`` input.

    Patches are numbered row-major; ``select`` keeps only those patch numbers (in that order), the
    others become background.

    Examples
    --------
    >>> patch_players(4, 4, 2)[0]
    [0, 1, 4, 5]
    """
    check_int(patch, "patch", 1, min(height, width), where="patch_players")
    if height % patch or width % patch:
        raise ValueError(param_error("patch", "patch_players", f"a divisor of {height} and "
                                     f"{width}", patch))
    groups = []
    for r in range(0, height, patch):
        for c in range(0, width, patch):
            groups.append([ch * height * width + (r + dr) * width + (c + dc)
                           for ch in range(channels) for dr in range(patch) for dc in range(patch)])
    if select is not None:
        groups = [groups[check_int(s, "select", 0, len(groups) - 1, where="patch_players")]
                  for s in select]
    return groups


def _bits(masks: torch.Tensor, n: int) -> torch.Tensor:
    shifts = torch.arange(n, device=masks.device)
    return (masks.unsqueeze(1) >> shifts) & 1


@torch.no_grad()
@validate_params({"model": Callable_(), "x": Tensor(dtype="floating"), "players": Instance(list, tuple, torch.Tensor),
                  "baseline": AnyOf(Real(), Tensor()), "target": Optional_(Int(0, 2**31 - 1)), "output": AnyOf(Str(), Callable_()),
                  "subtract_empty": Instance(bool), "batch_size": Int(1, 1 << 24)})
def masked_outputs(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    players: Sequence[Sequence[int]] | torch.Tensor,
    baseline: torch.Tensor | float = 0.0,
    target: int | None = None,
    output: Literal["log_odds", "logit", "prob"] | Callable[[torch.Tensor], torch.Tensor]
    = "log_odds",
    subtract_empty: bool = True,
    batch_size: int = 256,
) -> torch.Tensor:
    r"""Scalar output ``v(x_T)`` of ``model`` on all ``2**n`` masked versions of one input.

    In ``x_T`` the players in ``T`` keep their values, the other players take the ``baseline``
    values, and positions in no player group keep their values (background).

    Parameters
    ----------
    model : callable
        Maps a batch ``(B, *x.shape)`` to logits ``(B, C)`` (or scalars ``(B,)``). An
        ``nn.Module`` must be in eval mode; the model is neither moved nor modified.
    x : torch.Tensor
        One input without batch dimension, e.g. ``(1, 8, 8)``; the forwards run on its device
        and dtype.
    players : sequence of index groups or bool tensor ``(n, *x.shape)``
        The ``n`` input variables as groups of flat positions of ``x`` (see :func:`patch_players`);
        non-empty and disjoint, ``1 <= n <= 20``.
    baseline : float or torch.Tensor broadcastable to ``x.shape``
        The value of absent players (0 = black image / zero embedding).
    target : int, optional
        Class whose output is explained; defaults to the model's prediction on ``x``.
    output : {'log_odds', 'logit', 'prob'} or callable
        ``'log_odds'`` is the paper's ``log(p / (1 - p))`` of the target class (with the
        official code's 1e-7 guards); a callable maps the logits ``(B, C)`` to ``(B,)``.
    subtract_empty : bool
        Return ``v(x_T) - v(x_empty)`` so that ``v[0] == 0`` (the paper's default).
    batch_size : int
        Masked inputs per forward call.

    Returns
    -------
    torch.Tensor, shape (2**n,)
        Indexed by bitmask ``T`` (bit i <=> player i present).

    Raises
    ------
    ValueError
        Bad players (empty, overlapping, out of range, n > 20), a baseline of the wrong shape, a
        target out of range, a model left in training mode, or a non-finite output (the message
        names the first mask and its players).

    References
    ----------
    Chen et al. (ICLR 2024), Sec. 2 (masked samples ``x_T`` and the log-odds output).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(4, 3).eval()
    >>> v = masked_outputs(model, torch.ones(4), players=[[0, 1], [2], [3]], output="logit",
    ...                    target=0)
    >>> v.shape, float(v[0])
    (torch.Size([8]), 0.0)
    """
    if isinstance(model, torch.nn.Module) and model.training:
        raise ValueError("masked_outputs: the model is in training mode, so dropout or batch-norm "
                         "would make v(x_T) depend on the batch; call model.eval() first.")
    if not callable(model):
        raise TypeError(param_error("model", _W, "a callable", type(model).__name__))
    x = check_tensor(x, "x", floating=True, where=_W)
    check_int(batch_size, "batch_size", 1, where=_W)
    if not callable(output):
        check_choice(output, "output", OUTPUTS, where=_W)
    pm = player_masks(players, x.shape, device=x.device)
    n = check_n(pm.shape[0], where=_W)
    if isinstance(baseline, torch.Tensor):
        baseline = check_tensor(baseline, "baseline", where=_W)
        try:
            b = torch.broadcast_to(baseline.to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError:
            raise ValueError(param_error("baseline", _W, f"broadcastable to x.shape "
                                         f"{tuple(x.shape)}", f"shape {tuple(baseline.shape)}")
                             ) from None
    elif isinstance(baseline, (int, float)) and not isinstance(baseline, bool) \
            and math.isfinite(baseline):
        b = torch.full_like(x, float(baseline))
    else:
        raise TypeError(param_error("baseline", _W, "a finite float or a tensor", baseline))
    xf, bf = x.reshape(-1), b.reshape(-1)
    background = ~pm.any(0)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return model(batch.reshape(-1, *x.shape))

    def scalar(logits: torch.Tensor, tgt: int | None) -> torch.Tensor:
        if callable(output):
            out = output(logits)
        elif logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1 and output == "logit"):
            if output != "logit":
                raise ValueError(f"masked_outputs: the model returns one scalar per input, so "
                                 f"output={output!r} is undefined; use output='logit'.")
            out = logits.reshape(-1)
        else:
            if logits.ndim != 2:
                raise ValueError(f"masked_outputs: the model must return (B, C) logits or (B,) "
                                 f"scalars; got shape {tuple(logits.shape)}.")
            if output == "logit":
                out = logits[:, tgt]
            elif output == "prob":
                out = torch.softmax(logits, -1)[:, tgt]
            else:
                out = log_odds(logits, tgt)
        if not isinstance(out, torch.Tensor) or out.shape != (logits.shape[0],):
            raise ValueError(f"masked_outputs: the output function must return shape "
                             f"({logits.shape[0]},); got {getattr(out, 'shape', type(out))}.")
        return out

    if target is None:
        full = forward(xf.unsqueeze(0))
        target = int(full.reshape(1, -1).argmax(1)) if full.ndim == 2 else None
    elif not callable(output):
        probe = forward(xf.unsqueeze(0))
        classes = probe.shape[-1] if probe.ndim == 2 else 1
        check_int(target, "target", 0, classes - 1, where=_W)

    total = 1 << n
    pmf = pm.float()
    outs = []
    for start in range(0, total, batch_size):
        masks = torch.arange(start, min(start + batch_size, total), device=x.device)
        keep = (_bits(masks, n).float() @ pmf > 0) | background  # (B, numel), no (B, n, numel)
        batch = torch.where(keep, xf, bf)
        outs.append(scalar(forward(batch), target))
    v = torch.cat(outs)
    bad = ~torch.isfinite(v)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0])
        raise ValueError(f"masked_outputs: the model output is {float(v[first])} for mask "
                         f"{first} (players {sorted(index_to_subset(first))}); "
                         f"{int(bad.sum())} of {total} masked outputs are not finite.")
    if subtract_empty:
        v = v - v[0].clone()
    return v
