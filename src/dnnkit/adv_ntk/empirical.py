"""Finite-width counterparts: an NTK-parametrised MLP and the empirical NTK of any torch model.

The analytic kernel of :func:`~dnnkit.adv_ntk.ntk_kernel` is the width -> ∞ limit of the empirical
NTK ``J(x) J(x')ᵀ`` of :func:`ntk_mlp` at random initialisation (Jacot et al. 2018, Theorem 1),
which tests check within Monte-Carlo tolerance.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from dnnkit.adv_ntk.kernels import KernelSpec
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import check_choice, check_int, check_tensor, param_error

__all__ = ["NTKLinear", "empirical_ntk", "ntk_mlp"]


class NTKLinear(nn.Module):
    """Dense layer in NTK parametrisation: ``y = w_std / sqrt(fan_in) · x Wᵀ + b_std · b``,
    with ``W, b ~ N(0, 1)`` (neural-tangents ``stax.Dense`` convention)."""

    def __init__(self, fan_in: int, fan_out: int, w_std: float, b_std: float,
                 generator: torch.Generator, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in, generator=generator, dtype=dtype))
        self.bias = nn.Parameter(torch.randn(fan_out, generator=generator, dtype=dtype))
        self.w_scale = w_std / math.sqrt(fan_in)
        self.b_scale = b_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_scale * (x @ self.weight.T) + self.b_scale * self.bias


def ntk_mlp(in_features: int, width: int, out_features: int, spec: KernelSpec | None = None, *,
            seed: int | torch.Generator | None = 0, dtype: torch.dtype = torch.float64
            ) -> nn.Sequential:
    """Finite MLP whose NTK converges to ``ntk_kernel(..., spec)`` as ``width`` grows.

    Flatten, ``spec.depth - 1`` x [NTKLinear(width), ReLU/erf], NTKLinear(out_features).
    """
    where = "ntk_mlp"
    spec = KernelSpec() if spec is None else spec
    if spec.arch != "mlp":
        raise ValueError(param_error("spec", where, "an MLP KernelSpec", spec.arch))
    check_int(in_features, "in_features", 1, where=where)
    check_int(width, "width", 1, where=where)
    check_int(out_features, "out_features", 1, where=where)
    g = make_generator(seed)
    act = nn.ReLU if spec.activation == "relu" else _Erf
    layers: list[nn.Module] = [nn.Flatten()]
    fan = in_features
    for _ in range(spec.depth - 1):
        layers += [NTKLinear(fan, width, spec.w_std, spec.b_std, g, dtype), act()]
        fan = width
    layers.append(NTKLinear(fan, out_features, spec.w_std, spec.b_std, g, dtype))
    return nn.Sequential(*layers)


class _Erf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                  mode: str = "trace", batch_size: int = 64) -> torch.Tensor:
    """Empirical NTK ``Θ̂(x, x') = J(x) J(x')ᵀ`` of a finite model at its current parameters.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, ...)`` to ``(N, c)`` (or ``(N,)``). Not modified.
    x1, x2 : torch.Tensor
        Inputs; ``x2=None`` means ``x1``.
    mode : {"trace", "full"}
        ``"trace"``: ``(N1, N2)``, the average over outputs of the diagonal blocks (comparable with
        the analytic kernel, which is ``Θ ⊗ I_c``); ``"full"``: ``(N1, N2, c, c)``.
    batch_size : int
        Points whose Jacobians are held at once.

    Returns
    -------
    torch.Tensor
        The kernel, dtype of the model's parameters.

    References
    ----------
    Jacot, Gabriel & Hongler (2018), Definition of the NTK; Novak et al. (2022), "Fast Finite
    Width Neural Tangent Kernel" (Jacobian-contraction method).
    """
    where = "empirical_ntk"
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", where, "a torch.nn.Module", type(model).__name__))
    check_choice(mode, "mode", ("trace", "full"), where=where)
    batch_size = check_int(batch_size, "batch_size", 1, where=where)
    x1 = check_tensor(x1, "x1", where=where, floating=True)
    x2 = x1 if x2 is None else check_tensor(x2, "x2", where=where, floating=True)
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(param_error("x2", where, f"inputs shaped like x1 {tuple(x1.shape[1:])}",
                                     f"shape {tuple(x2.shape)}"))
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def f(p: dict, x: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (x.unsqueeze(0),))
        return out.reshape(-1)

    def jac(x: torch.Tensor) -> torch.Tensor:
        rows = []
        for i in range(0, x.shape[0], batch_size):
            j = vmap(jacrev(f), (None, 0))(params, x[i:i + batch_size])
            rows.append(torch.cat([t.flatten(2) for t in j.values()], 2))  # (b, c, P)
        return torch.cat(rows, 0)

    j1 = jac(x1)
    j2 = j1 if x2 is x1 else jac(x2)
    if mode == "full":
        return torch.einsum("icp,jdp->ijcd", j1, j2)
    return torch.einsum("icp,jcp->ij", j1, j2) / j1.shape[1]
