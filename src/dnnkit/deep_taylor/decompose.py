"""Deep Taylor decomposition of a whole network by hooks (training-free relevance model).

The practical DTD of the paper (Sec. 4, "training-free relevance model"): the z+ rule in every
hidden Linear/Conv layer, z^B (bounded pixels) or w^2 (unbounded inputs) at the first layer,
sum-pooling by the proportional (z) rule, max-pooling winner-take-all, ReLU pass-through.

Implementation: forward hooks (removed on exit, even when forward raises) wrap each supported
module's output in an autograd node whose backward applies the module's rule; one call of
``torch.autograd.grad`` seeded with ``onehot * f_target(x)`` then yields the input relevance.
BatchNorm that directly follows a Linear/Conv inside a Sequential is folded into that layer's
weights for the rule only: the user's model is never modified.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from dnnkit.core.hooks import registered_hooks
from dnnkit.core.validation import (
    AnyOf,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Tensor,
    check_choice,
    check_interval,
    check_tensor,
    find_unsupported,
    validate_params,
)
from dnnkit.deep_taylor.rules import RULES, layer_map, propagate, stabilize

__all__ = ["DTDConfig", "deep_taylor", "SUPPORTED_MODULES"]

log = logging.getLogger("dnnkit")

_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d)
_PASS = (nn.ReLU,)
_SUMPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d)
_IDENTITY = (nn.Flatten, nn.Dropout, nn.Identity, nn.Unflatten)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
#: Module types deep_taylor knows how to treat. Extend by wrapping unsupported layers or by
#: expressing them with these (e.g. a sum-pooling as a Linear with fixed 0/1 weights).
SUPPORTED_MODULES: tuple[type, ...] = _LINEAR + _PASS + _SUMPOOL + _MAXPOOL + _IDENTITY + _BN


#: Constraint of a ``target`` argument: None, a class index or a (N,) integer tensor.
TARGET = Optional_(AnyOf(Int(0, 2**31 - 1), Tensor(ndim=(0, 1), dtype="integer", low=0)))
_BOUND = AnyOf(Real(), Tensor())


@validate_params({"first_rule": Options(*RULES), "low": _BOUND, "high": _BOUND,
                  "hidden_rule": Options("zplus", "epsilon", "z"),
                  "maxpool": Options("winner_take_all", "proportional"),
                  "stabilizer": Real(0.0, 1.0, closed="right"),
                  "check_assumptions": Instance(bool)})
@dataclass(frozen=True)
class DTDConfig:
    """Which rule goes where (paper Sec. 4-5).

    Parameters
    ----------
    first_rule
        Rule of the first Linear/Conv layer met in the forward pass: ``"zb"`` for inputs in a
        box ``[low, high]`` (pixels), ``"w2"`` for unbounded inputs, ``"zplus"`` for inputs >= 0.
    low, high
        Box of the z^B rule (floats or tensors broadcastable to the input, e.g. per channel).
    hidden_rule
        Rule of every other Linear/Conv layer: ``"zplus"`` (DTD's training-free relevance model)
        or ``"epsilon"``/``"z"`` for LRP composites.
    maxpool
        ``"winner_take_all"`` (relevance to the arg-max input) or ``"proportional"``.
    stabilizer
        Added with the sign of each denominator.
    check_assumptions
        Check the input domain of z^B/z+ (error) and positive biases (warning).
    """

    first_rule: Literal["zb", "w2", "zplus", "epsilon", "z"] = "zb"
    low: float | torch.Tensor = 0.0
    high: float | torch.Tensor = 1.0
    hidden_rule: Literal["zplus", "epsilon", "z"] = "zplus"
    maxpool: Literal["winner_take_all", "proportional"] = "winner_take_all"
    stabilizer: float = 1e-12
    check_assumptions: bool = True

    def __post_init__(self) -> None:
        where = "DTDConfig"
        check_choice(self.first_rule, "first_rule", RULES, where=where)
        check_choice(self.hidden_rule, "hidden_rule", ("zplus", "epsilon", "z"), where=where)
        check_choice(self.maxpool, "maxpool", ("winner_take_all", "proportional"), where=where)
        check_interval(self.stabilizer, "stabilizer", 0.0, 1.0, closed="right", where=where)
        lo, hi = torch.as_tensor(self.low), torch.as_tensor(self.high)
        if self.first_rule == "zb":
            if bool((lo > 0).any()) or bool((hi < 0).any()) or bool((lo > hi).any()):
                raise ValueError(
                    "The 'low'/'high' parameters of DTDConfig must satisfy low <= 0 <= high "
                    f"(the z^B box must contain the root point 0). Got low={self.low!r}, "
                    f"high={self.high!r} instead.")


class _RuleNode(torch.autograd.Function):
    """Identity in the forward pass; applies ``fn(a, R)`` in the backward pass.

    The module's output is handed over in a one-element list and returned as is: it is not an
    input of the function, so autograd neither copies it nor marks it as a view (in-place
    layers such as ``ReLU(inplace=True)`` may follow). ``a`` is saved only for rules that read
    it (pass-through rules such as ReLU's keep nothing alive for the backward pass).
    """

    @staticmethod
    def forward(ctx, a, fn, holder, save):  # type: ignore[override]
        ctx.fn = fn
        if save:
            ctx.save_for_backward(a)
        return holder.pop()

    @staticmethod
    def backward(ctx, relevance):  # type: ignore[override]
        a = ctx.saved_tensors[0] if ctx.saved_tensors else None
        return ctx.fn(a, relevance), None, None, None


def _fold_batchnorm(model: nn.Module) -> dict[nn.Module, tuple[torch.Tensor, torch.Tensor | None]]:
    """Folded (weight, bias) for every Linear/Conv directly followed by a BatchNorm in a
    Sequential; raises for a BatchNorm that cannot be folded."""
    folded: dict[nn.Module, tuple[torch.Tensor, torch.Tensor | None]] = {}
    foldable_bn: set[int] = set()
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        kids = list(parent.children())
        for prev, bn in zip(kids, kids[1:]):
            if isinstance(bn, _BN) and isinstance(prev, _LINEAR):
                if bn.running_mean is None or not bn.affine and bn.running_var is None:
                    continue
                scale = (bn.running_var + bn.eps).rsqrt()
                if bn.affine:
                    scale = scale * bn.weight
                shape = (-1,) + (1,) * (prev.weight.dim() - 1)
                w = prev.weight.detach() * scale.detach().reshape(shape)
                b0 = prev.bias.detach() if prev.bias is not None else torch.zeros_like(scale)
                b = (b0 - bn.running_mean) * scale
                if bn.affine:
                    b = b + bn.bias
                folded[prev] = (w.detach(), b.detach())
                foldable_bn.add(id(bn))
    bad = [name for name, m in model.named_modules() if isinstance(m, _BN)
           and id(m) not in foldable_bn]
    if bad:
        raise NotImplementedError(
            f"deep_taylor can only fold a BatchNorm that directly follows a Linear/Conv inside an "
            f"nn.Sequential (and tracks running statistics); cannot fold: {bad}.")
    return folded


def _pool_rule(module: nn.Module, eps: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Proportional (z) rule of a sum/average pooling: ``R_i = a_i / sum_window a * R_k``."""

    def fn(a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            probe = a.detach().requires_grad_(True)
            z = module.forward(probe)  # bypasses the hooks registered by deep_taylor
            (g,) = torch.autograd.grad(z, probe, grad_outputs=relevance / stabilize(z.detach(), eps))
        return a * g

    return fn


def _proportional_maxpool(module: nn.Module, eps: float):
    kind = nn.AvgPool1d if isinstance(module, nn.MaxPool1d) else nn.AvgPool2d
    if module.dilation not in (1, (1, 1), (1,)):
        raise NotImplementedError("deep_taylor: proportional max-pool needs dilation 1.")
    avg = kind(module.kernel_size, module.stride, module.padding, ceil_mode=module.ceil_mode,
               count_include_pad=True)
    return _pool_rule(avg, eps)


@validate_params({"model": Instance(nn.Module), "x": Tensor(ndim=(2, 3, 4, 5)),
                  "target": TARGET, "config": Optional_(Instance(DTDConfig)),
                  "return_layers": Instance(bool)})
def deep_taylor(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    config: DTDConfig | None = None,
    *,
    return_layers: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Deep Taylor relevance of ``f_target(x)`` over the input dimensions.

    Parameters
    ----------
    model
        A ReLU network built from :data:`SUPPORTED_MODULES` (any nesting), in eval mode.
        It is left exactly as it was: no hooks, no mode or weight change.
    x
        Input batch ``(N, ...)``.
    target
        Class explained per sample: an int, a ``(N,)`` tensor, or ``None`` for the arg-max.
    config
        Rules and their parameters, see :class:`DTDConfig`.
    return_layers
        Also return the relevance at the input of every Linear/Conv layer (keyed by module path).

    Returns
    -------
    torch.Tensor
        ``R`` with ``R.shape == x.shape``; ``R[n].sum() == f_target(x[n])`` up to the stabiliser
        (conservation, paper Sec. 2 and Propositions 1-3).

    Raises
    ------
    TypeError
        Unsupported modules (each module path listed).
    ValueError
        Model in training mode, target out of range, inputs outside the first rule's domain,
        non-finite inputs, a module called twice in one forward.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> R = deep_taylor(net.eval(), torch.rand(5, 4))
    >>> R.shape
    torch.Size([5, 4])
    """
    config = config or DTDConfig()
    where = "deep_taylor"
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {where} must be a torch.nn.Module. "
                        f"Got {type(model).__name__} instead.")
    check_tensor(x, "x", where=where)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"The 'x' parameter of {where} must be a non-empty batch (N, ...). "
                         f"Got shape {tuple(x.shape)} instead.")
    if model.training and any(isinstance(m, (nn.Dropout, *_BN)) for m in model.modules()):
        raise ValueError("deep_taylor: the model is in training mode (dropout/batch-norm would "
                         "change the explained function); call model.eval() first.")
    unsupported = find_unsupported(model, SUPPORTED_MODULES)
    if unsupported:
        raise TypeError(
            "deep_taylor has no rule for these modules: " + ", ".join(unsupported) +
            ". Supported: " + ", ".join(t.__name__ for t in SUPPORTED_MODULES) +
            ". Replace them (e.g. tanh -> ReLU, LayerNorm -> none) or extend "
            "dnnkit.deep_taylor.decompose.SUPPORTED_MODULES with a rule.")
    folded = _fold_batchnorm(model)
    names = {m: n for n, m in model.named_modules()}
    eps = config.stabilizer
    layers: dict[str, torch.Tensor] = {}
    calls: dict[nn.Module, int] = {}
    state = {"first_done": False}
    positive_bias: list[str] = []

    def make_linear_fn(module: nn.Module, rule: str):
        w, b = folded.get(module, (module.weight.detach(),
                                   None if module.bias is None else module.bias.detach()))
        fmap = layer_map(module)
        name = names[module]

        def fn(a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
            r = propagate(fmap, a, w, b, relevance, rule, low=config.low, high=config.high,
                          eps=eps)
            if return_layers:
                layers[name] = r.detach()
            return r

        return fn

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        calls[module] = calls.get(module, 0) + 1
        if calls[module] > 1:
            raise ValueError(f"deep_taylor: module {names[module]!r} is called more than once "
                             "in one forward pass; give each use its own module instance.")
        a = inputs[0]
        if isinstance(module, _LINEAR):
            rule = config.hidden_rule
            if not state["first_done"]:
                rule = config.first_rule
                state["first_done"] = True
            if config.check_assumptions:
                _check_domain(names[module], a, rule, config)
                b = folded.get(module, (None, module.bias))[1]
                if b is not None and rule in ("zplus", "zb", "w2") and bool((b > 0).any()):
                    positive_bias.append(names[module])
            fn = make_linear_fn(module, rule)
        elif isinstance(module, _PASS + _BN):
            fn = _pass  # ReLU pass-through; BN is folded upstream
        elif isinstance(module, _SUMPOOL):
            fn = _pool_rule(module, eps)
        elif isinstance(module, _MAXPOOL):
            if config.maxpool == "winner_take_all":
                return output  # the gradient routes relevance to the arg-max input
            fn = _proportional_maxpool(module, eps)
        else:
            return output
        return _RuleNode.apply(a, fn, [output.detach()], fn is not _pass)

    xin = x.detach().clone().requires_grad_(True)
    with registered_hooks() as handles, torch.enable_grad():
        for m in model.modules():
            if isinstance(m, SUPPORTED_MODULES) and not isinstance(m, _IDENTITY):
                handles.append(m.register_forward_hook(hook))
        out = model(xin)
        if out.ndim != 2:
            raise ValueError(f"deep_taylor: the model must output (N, classes); got shape "
                             f"{tuple(out.shape)}.")
        if positive_bias:
            warnings.warn(f"deep_taylor: layers {positive_bias} have positive biases; a root "
                          "point may not exist (the rules stay conservative because they ignore "
                          "the bias).", stacklevel=2)
        tgt = _targets(target, out)
        f = out.gather(1, tgt[:, None])
        if config.check_assumptions and bool((f < 0).any()):
            warnings.warn("deep_taylor: some explained outputs f(x) are negative; DTD assumes "
                          "f >= 0 (relevances take the sign of f).", stacklevel=2)
        seed = torch.zeros_like(out).scatter_(1, tgt[:, None], f.detach())
        (R,) = torch.autograd.grad(out, xin, grad_outputs=seed)
    R = R.detach()
    return (R, layers) if return_layers else R


def _pass(a: torch.Tensor | None, relevance: torch.Tensor) -> torch.Tensor:
    return relevance


def _targets(target: int | torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
    n, k = out.shape
    if target is None:
        return out.detach().argmax(1)
    t = torch.as_tensor(target, device=out.device).long()
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"The 'target' parameter of deep_taylor must be an int or a tensor of "
                         f"shape ({n},). Got shape {tuple(t.shape)} instead.")
    if bool(((t < 0) | (t >= k)).any()):
        raise ValueError(f"The 'target' parameter of deep_taylor must index one of {k} outputs. "
                         f"Got {t.tolist() if n <= 10 else 'values'} out of range instead.")
    return t


def _check_domain(name: str, a: torch.Tensor, rule: str, config: DTDConfig) -> None:
    if rule == "zb":
        lo = torch.as_tensor(config.low, dtype=a.dtype, device=a.device)
        hi = torch.as_tensor(config.high, dtype=a.dtype, device=a.device)
        tol = 1e-6 * max(1.0, float((hi - lo).abs().max()))
        n_bad = int(((a < lo - tol) | (a > hi + tol)).sum())
        if n_bad:
            raise ValueError(f"deep_taylor: {n_bad} input entries of layer {name!r} lie outside "
                             f"the z^B box [low, high]; widen low/high or use first_rule='w2'.")
    elif rule == "zplus":
        n_bad = int((a < 0).sum())
        if n_bad:
            raise ValueError(f"deep_taylor: the z+ rule at layer {name!r} needs inputs >= 0 but "
                             f"{n_bad} entries are negative; use first_rule='zb' (bounded) or "
                             "'w2' (unbounded) for the input layer.")
