"""The slimmable ensemble encoder: N identically shaped members, run only the first k.

Assine et al. (WoWMoM 2023) make the device-side head configurable with one set of weights: the
encoder is an ensemble of N small members whose outputs are combined into one tensor of fixed
shape, so one decoder serves every k. Running the first k members costs k member evaluations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from dnnkit.core.hooks import eval_mode
from dnnkit.core.validation import (
    Int,
    Optional_,
    Options,
    Real,
    Sequence_,
    Tensor,
    check_choice,
    check_int,
    check_tensor,
    declares,
    param_error,
    validate_params,
)

__all__ = ["SlimmableEnsembleEncoder"]

COMBINES = ("mean", "sum", "weighted", "learned")


class _ModeState:
    """A plain holder for the active mode: writing it costs no ``nn.Module.__setattr__``."""

    __slots__ = ("k", "bits")

    def __init__(self, k: int, bits: int = 0) -> None:
        self.k, self.bits = k, bits


@validate_params({"n_members": Optional_(Int(1, 64)), "combine": Options(*COMBINES),
                  "weights": Optional_(Sequence_(Real(0.0, None, closed="neither"))),
                  "example_input": Optional_(Tensor())})
class SlimmableEnsembleEncoder(nn.Module):
    """Ensemble of N members; ``forward(x, k)`` runs and combines only the first ``k``.

    Parameters
    ----------
    members : sequence of nn.Module, or a callable returning a fresh nn.Module
        The members (the user's own modules; they are registered as children, not copied), or
        a factory called ``n_members`` times.
    n_members : int, optional
        Number of members when ``members`` is a factory (1..64).
    combine : {"mean", "sum", "weighted", "learned"}
        How the active outputs ``z_1..z_k`` are combined: ``mean`` ``(1/k) sum z_i``; ``sum``
        ``sum z_i``; ``weighted`` ``sum w_i z_i / sum w_i`` with fixed positive ``weights``;
        ``learned`` the same with ``w = softmax(theta)[:k]`` renormalised, ``theta`` a parameter
        initialised from ``log(weights)`` (uniform when ``weights`` is None).
    weights : sequence of float, optional
        One positive weight per member (``weighted``, ``learned``).
    example_input : Tensor, optional
        An input batch; when given, every member is run on it once (eval mode, no gradient, the
        members' train flags restored) and members whose output shapes differ are refused here.
        Without it the same check runs on the first call of :meth:`forward`.

    Notes
    -----
    :meth:`set_mode` stores one integer (no allocation, no reload); the members are evaluated one
    after another, so the encoder's cost grows linearly in k.

    Examples
    --------
    >>> enc = SlimmableEnsembleEncoder(lambda: nn.Conv2d(1, 2, 3, padding=1), 4,
    ...                                example_input=torch.zeros(1, 1, 8, 8))
    >>> enc.set_mode(2)
    >>> enc(torch.zeros(5, 1, 8, 8)).shape, enc.out_shape
    (torch.Size([5, 2, 8, 8]), (2, 8, 8))
    """

    def __init__(self, members: Sequence[nn.Module] | Callable[[], nn.Module],
                 n_members: int | None = None, *,
                 combine: Literal["mean", "sum", "weighted", "learned"] = "mean",
                 weights: Sequence[float] | None = None,
                 example_input: torch.Tensor | None = None) -> None:
        super().__init__()
        where = "slimsplit.SlimmableEnsembleEncoder"
        if isinstance(members, nn.Module) or not (callable(members) or
                                                  isinstance(members, (list, tuple))):
            raise TypeError(param_error("members", where,
                                        "a list of nn.Module or a factory returning one",
                                        type(members).__name__))
        if isinstance(members, (list, tuple)):
            if n_members is not None and n_members != len(members):
                raise ValueError(param_error("n_members", where,
                                             f"None or len(members) = {len(members)}", n_members))
            mods = list(members)
        else:
            n = check_int(n_members, "n_members", 1, 64, where=where) if n_members is not None \
                else None
            if n is None:
                raise ValueError(param_error("n_members", where,
                                             "an int in [1, 64] when members is a factory", None))
            mods = [members() for _ in range(n)]
        if not 1 <= len(mods) <= 64:
            raise ValueError(param_error("members", where, "1 to 64 modules",
                                         f"{len(mods)} modules"))
        for i, m in enumerate(mods):
            if not isinstance(m, nn.Module):
                raise TypeError(param_error("members", where, "nn.Module members",
                                            f"{type(m).__name__} at index {i}"))
        self.members = nn.ModuleList(mods)
        self.n_members = len(mods)
        self.combine = check_choice(combine, "combine", COMBINES, where=where)
        w = None
        if weights is not None:
            if not isinstance(weights, (list, tuple)) or len(weights) != self.n_members:
                raise ValueError(param_error("weights", where,
                                             f"a list of {self.n_members} positive floats",
                                             weights))
            w = torch.tensor([float(v) for v in weights], dtype=torch.float32)
            if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
                raise ValueError(param_error("weights", where, "positive finite floats",
                                             list(weights)))
        if self.combine == "weighted" and w is None:
            raise ValueError(param_error("weights", where,
                                         "a list of weights when combine='weighted'", None))
        if self.combine in ("mean", "sum") and w is not None:
            raise ValueError(param_error("weights", where,
                                         f"None when combine={self.combine!r}", list(weights)))
        if self.combine == "weighted":
            self.register_buffer("weights", w)
        elif self.combine == "learned":
            init = torch.zeros(self.n_members) if w is None else w.log()
            self.logits = nn.Parameter(init)
        self._mode = _ModeState(self.n_members)
        self.out_shape: tuple[int, ...] | None = None
        if example_input is not None:
            self._check_members(check_tensor(example_input, "example_input", where=where))

    def _check_members(self, x: torch.Tensor) -> None:
        shapes = []
        with torch.no_grad():
            for m in self.members:
                with eval_mode(m):
                    shapes.append(tuple(m(x[:1]).shape[1:]))
        if len(set(shapes)) != 1:
            detail = ", ".join(f"member {i}: {s}" for i, s in enumerate(shapes))
            raise ValueError(param_error("members", "slimsplit.SlimmableEnsembleEncoder",
                                         "members with identical output shapes", detail))
        self.out_shape = shapes[0]

    @property
    def k(self) -> int:
        """The number of active members (the mode)."""
        return self._mode.k

    @declares({"k": Int(1, 1 << 16)})
    def set_mode(self, k: int) -> None:
        """Use the first ``k`` members from now on (O(1): one integer is stored)."""
        if not (type(k) is int and 1 <= k <= self.n_members):
            check_int(k, "k", 1, self.n_members, where="slimsplit.SlimmableEnsembleEncoder"
                      ".set_mode")
        self._mode.k = k

    @validate_params({"k": Int(1, 1 << 16)},
                     where="slimsplit.SlimmableEnsembleEncoder.member_weights")
    def member_weights(self, k: int) -> torch.Tensor | None:
        """The normalised combination weights of the first ``k`` members (None for mean/sum)."""
        check_int(k, "k", 1, self.n_members, where="slimsplit.SlimmableEnsembleEncoder"
                  ".member_weights")
        if self.combine == "weighted":
            w = self.weights[:k]
        elif self.combine == "learned":
            w = torch.softmax(self.logits, 0)[:k]
        else:
            return None
        return w / w.sum()

    @declares({"x": Tensor(), "k": Optional_(Int(1, 1 << 16))})
    def forward(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Combine the outputs of members ``0..k-1`` on ``x`` (``k`` defaults to the mode)."""
        where = "slimsplit.SlimmableEnsembleEncoder.forward"
        k = self.k if k is None else check_int(k, "k", 1, self.n_members, where=where)
        x = check_tensor(x, "x", where=where)
        if x.shape[0] == 0:
            raise ValueError(param_error("x", where, "a non-empty batch", f"shape {tuple(x.shape)}"))
        if self.out_shape is None:
            self._check_members(x)
        w = self.member_weights(k)
        z = None
        for i in range(k):
            zi = self.members[i](x)
            if w is not None:
                zi = zi * w[i].to(zi.dtype)
            z = zi if z is None else z + zi
        if self.combine == "mean" and k > 1:
            z = z / k
        return z
