"""Deep Taylor propagation rules (Montavon et al. 2017, Sec. 3-4), one layer at a time.

Each rule redistributes the relevance ``R_j`` of a layer's outputs onto its inputs ``a_i``
(paper Eq. for the generic search direction ``v``: ``R_i = sum_j v_ij w_ij / sum_i' v_i'j w_i'j R_j``):

- ``"w2"`` (domain R^d, unbounded inputs): ``R_i = sum_j w_ij^2 / sum_i' w_i'j^2 R_j``.
- ``"zplus"`` (domain R_+^d, ReLU outputs): ``R_i = sum_j a_i w_ij^+ / sum_i' a_i' w_i'j^+ R_j``
  (identical to LRP-alpha1beta0 with biases ignored).
- ``"zb"`` (box domain ``l <= a <= h``, pixels):
  ``R_i = sum_j (a_i w_ij - l_i w_ij^+ - h_i w_ij^-) / sum_i' (...) R_j``.
- ``"epsilon"`` / ``"z"``: plain LRP-epsilon / LRP-0 with the bias in the denominator
  (not a Deep Taylor rule; provided for composites).

All rules work for any layer given as a *linear map* ``F(a, W)`` (``nn.Linear``, ``nn.Conv1d/2d``):
the transposed map is obtained with one vector-Jacobian product, so convolutions need no
special code. Denominators are stabilised as ``z + eps * sign(z)`` with ``sign(0) = +1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from dnnkit.core.validation import (
    AnyOf,
    Optional_,
    Options,
    Real,
    Tensor,
    check_choice,
    check_tensor,
    param_error,
    validate_params,
)

__all__ = ["Rule", "RULES", "AffineMap", "stabilize", "layer_map", "propagate", "propagate_linear"]

Rule = Literal["zplus", "zb", "w2", "epsilon", "z"]
RULES: tuple[str, ...] = ("zplus", "zb", "w2", "epsilon", "z")

LinearMap = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)`` with ``sign(0) = +1`` (never divides by zero)."""
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _divide_(relevance: torch.Tensor, z: torch.Tensor, eps: float) -> torch.Tensor:
    """``relevance / stabilize(z, eps)`` computed in the storage of ``z`` (a fresh temporary of
    the rule), so no output-size buffer beyond ``z`` itself is allocated."""
    if z.shape != torch.broadcast_shapes(z.shape, relevance.shape):
        z = z.expand_as(relevance).clone()  # w^2 denominators are shared by the whole batch
    neg = z.lt(0)
    z.add_(eps).add_(neg, alpha=-2 * eps)  # z + eps * sign(z), sign(0) = +1
    return torch.div(relevance, z, out=z)


class AffineMap:
    """The affine map ``F(a, W, b)`` of a Linear/Conv layer and its transpose ``F^T(s, W)``.

    Calling the object applies ``F``; :meth:`t` applies the transpose of the bias-free map
    directly (``s @ W`` or a transposed convolution), without building an autograd graph.
    """

    def __init__(self, forward: LinearMap,
                 transpose: Callable[[torch.Tensor, torch.Tensor, torch.Size], torch.Tensor]
                 | None = None) -> None:
        self.forward = forward
        self.transpose = transpose

    def __call__(self, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return self.forward(a, w, b)

    def t(self, s: torch.Tensor, w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``F^T(s, W)`` with the shape of ``like`` (the layer's input)."""
        if self.transpose is None:
            return _vjp(self.forward, like, w, s)
        return self.transpose(s, w, like.shape)


def layer_map(module: torch.nn.Module) -> AffineMap:
    """The affine map ``F(a, W, b)`` of a Linear/Conv module with its hyper-parameters bound."""
    if isinstance(module, torch.nn.Linear):
        return AffineMap(lambda a, w, b: F.linear(a, w, b), lambda s, w, shape: s.matmul(w))
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
        one_d = isinstance(module, torch.nn.Conv1d)
        conv = F.conv1d if one_d else F.conv2d
        conv_t = torch.nn.grad.conv1d_input if one_d else torch.nn.grad.conv2d_input
        if module.padding_mode != "zeros":
            raise NotImplementedError(f"Conv padding_mode={module.padding_mode!r} is not supported "
                                      "by deep_taylor (only 'zeros').")
        hp = (module.stride, module.padding, module.dilation, module.groups)
        if isinstance(module.padding, str):  # 'same' / 'valid': let autograd transpose it
            return AffineMap(lambda a, w, b: conv(a, w, b, *hp))
        return AffineMap(lambda a, w, b: conv(a, w, b, *hp),
                         lambda s, w, shape: conv_t(shape, w, s, *hp))
    raise TypeError(f"layer_map: {type(module).__name__} is not a Linear/Conv1d/Conv2d layer.")


def _vjp(fmap: LinearMap, like: torch.Tensor, weight: torch.Tensor, s: torch.Tensor
         ) -> torch.Tensor:
    """``F^T(s, W)`` by autograd, for a map given without its transpose."""
    with torch.enable_grad():
        probe = torch.zeros_like(like, requires_grad=True)
        out = fmap(probe, weight, None)
        (g,) = torch.autograd.grad(out, probe, grad_outputs=s)
    return g


def _transpose(fmap: LinearMap | AffineMap, s: torch.Tensor, w: torch.Tensor,
               like: torch.Tensor) -> torch.Tensor:
    return fmap.t(s, w, like) if isinstance(fmap, AffineMap) else _vjp(fmap, like, w, s)


def _shared_bound(bound: torch.Tensor | float, a: torch.Tensor) -> torch.Tensor | None:
    """The z^B bound as a tensor broadcastable to ``a``; ``None`` when it is identically 0.

    A bound that does not vary over the batch (a float, or per channel/pixel) is returned with
    batch size 1, so the layer map of the bound is computed once, not once per sample."""
    t = torch.as_tensor(bound, dtype=a.dtype, device=a.device)
    if not bool(t.any()):
        return None
    if t.ndim < a.ndim or t.shape[0] == 1:
        return t.expand(1, *a.shape[1:])
    return t.expand_as(a)


def propagate(
    fmap: LinearMap | AffineMap,
    a: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    relevance: torch.Tensor,
    rule: str,
    *,
    low: torch.Tensor | float | None = None,
    high: torch.Tensor | float | None = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Redistribute ``relevance`` (shape of ``F(a)``) onto ``a`` with ``rule``.

    Parameters
    ----------
    fmap
        The layer's affine map ``F(a, W, b)`` (see :func:`layer_map`; a plain callable is
        transposed by autograd).
    a, weight, bias
        Layer input, weight and bias (bias is used only by ``"epsilon"``/``"z"``).
    relevance
        Relevance of the layer's outputs.
    rule
        One of :data:`RULES`.
    low, high
        Box bounds for ``"zb"`` (broadcastable to ``a``).
    eps
        Stabiliser of the denominators.

    Returns
    -------
    torch.Tensor
        Relevance of the inputs, same shape as ``a``. For ``"zplus"``, ``"zb"`` and ``"w2"`` the
        sum is conserved wherever the denominator is non-zero (paper, Propositions 1-3).

    Notes
    -----
    Memory: one output-size temporary (the denominator, overwritten by the quotient ``s``) and
    input-size results of the transposed maps; the bounds of z^B and the ones of w^2 go through
    the layer with batch size 1 when they are shared by the batch.
    """
    w = weight.to(a.dtype)
    if rule == "zplus":
        wp = w.clamp(min=0)
        s = _divide_(relevance, fmap(a, wp, None), eps)
        return _transpose(fmap, s, wp, a).mul_(a)
    if rule == "w2":
        w2 = w * w
        ones = torch.ones((1, *a.shape[1:]), dtype=a.dtype, device=a.device)
        s = _divide_(relevance, fmap(ones, w2, None), eps)
        return _transpose(fmap, s, w2, a)
    if rule == "zb":
        if low is None or high is None:
            raise ValueError("The z^B rule needs 'low' and 'high' bounds.")
        lo, hi = _shared_bound(low, a), _shared_bound(high, a)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        z = fmap(a, w, None)
        if lo is not None:
            z.sub_(fmap(lo, wp, None))
        if hi is not None:
            z.sub_(fmap(hi, wn, None))
        s = _divide_(relevance, z, eps)
        r = _transpose(fmap, s, w, a).mul_(a)
        if lo is not None:
            r.sub_(_transpose(fmap, s, wp, a).mul_(lo))
        if hi is not None:
            r.sub_(_transpose(fmap, s, wn, a).mul_(hi))
        return r
    if rule in ("epsilon", "z"):
        b = None if bias is None else bias.to(a.dtype)
        s = _divide_(relevance, fmap(a, w, b), eps)
        return _transpose(fmap, s, w, a).mul_(a)
    check_choice(rule, "rule", RULES, where="deep_taylor.propagate")
    raise AssertionError("unreachable")  # pragma: no cover


@validate_params({"a": Tensor(ndim=2), "weight": Tensor(ndim=2), "relevance": Tensor(ndim=2),
                  "rule": Options(*RULES), "bias": Optional_(Tensor(ndim=1)),
                  "low": Optional_(AnyOf(Real(), Tensor())),
                  "high": Optional_(AnyOf(Real(), Tensor())), "eps": Real(0.0, 1.0)})
def propagate_linear(
    a: torch.Tensor,
    weight: torch.Tensor,
    relevance: torch.Tensor,
    rule: str = "zplus",
    *,
    bias: torch.Tensor | None = None,
    low: torch.Tensor | float | None = None,
    high: torch.Tensor | float | None = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """One dense layer ``z = a @ weight.T + bias`` with ``rule`` (see :func:`propagate`).

    Shapes: ``a`` ``(N, d_in)``, ``weight`` ``(d_out, d_in)``, ``relevance`` ``(N, d_out)``.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[1.0, 2.0]]); w = torch.tensor([[1.0, -1.0], [2.0, 1.0]])
    >>> r = propagate_linear(a, w, torch.tensor([[0.0, 4.0]]), "zplus")
    >>> [round(v, 6) for v in r[0].tolist()]
    [2.0, 2.0]
    """
    check_choice(rule, "rule", RULES, where="deep_taylor.propagate_linear")
    check_tensor(a, "a", ndim=2, where="deep_taylor.propagate_linear")
    check_tensor(weight, "weight", shape=(None, a.shape[1]), where="deep_taylor.propagate_linear")
    check_tensor(relevance, "relevance", shape=(a.shape[0], weight.shape[0]),
                 where="deep_taylor.propagate_linear")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(param_error("bias", "deep_taylor.propagate_linear",
                                     f"a tensor of shape ({weight.shape[0]},)",
                                     f"shape {tuple(bias.shape)}"))
    return propagate(layer_map(torch.nn.Linear(1, 1)), a, weight, bias, relevance, rule,
                     low=low, high=high, eps=eps)
