"""Analytic NNGP and NTK kernels of infinite-width ReLU / erf MLPs and CNNs (NTK parametrisation).

The recursions follow the conventions of ``neural_tangents.stax`` (Novak et al. 2020) so that the
two libraries agree to round-off: a Dense layer with weight std ``w_std`` and bias std ``b_std``
maps the NNGP kernel ``K`` to ``w_std**2 * K + b_std**2``, and the NTK ``Θ`` to
``Σ + w_std**2 * K̇ ⊙ Θ`` where ``K̇`` is the kernel of the activation's derivative (Jacot et al.
2018, Theorem 1; Fu & Wang 2024, Section 3, eq. (2)-(3)).

Gram matrices are computed in blocks of rows/columns, so memory stays bounded for thousands of
points; the output size is checked against the machine's memory before anything is allocated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dnnkit.core.validation import (
    AnyOf,
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
    validate_params,
)

__all__ = ["KernelSpec", "check_memory", "ntk_kernel"]

_GETS = ("nngp", "ntk")
_ARCHS = ("mlp", "conv")
_ACTS = ("relu", "erf")
# Working-set budget of one block of pair computations (bytes); blocks are sized to fit it.
# Cache-sized blocks: 4 MiB ran the CNN kernel 1.7-2x and the MLP kernel ~1.5x faster than 64 MiB
# (one core, 200-1797 digits), at the price of more, smaller operations.
_BLOCK_BYTES = 4 * 2**20
# arccos has an infinite derivative at +-1: gradients are taken at c clipped to this margin.
_CLIP = 1e-12


@validate_params({"arch": Options("mlp", "conv"), "depth": Int(1, 1_000),
                  "w_std": Real(0.0, 1e6, closed="right"), "b_std": Real(0.0, 1e6),
                  "activation": Options("relu", "erf")})
@dataclass(frozen=True)
class KernelSpec:
    """An infinite-width architecture, as in the official Adv-NTK code.

    Parameters
    ----------
    arch : {"mlp", "conv"}
        ``"mlp"``: Flatten, ``depth - 1`` x [Dense, activation], Dense (official ``GeneralMLP``).
        ``"conv"``: ``depth`` x [Conv 3x3 SAME, activation], Flatten, Dense (official
        ``GeneralCNN``); inputs are ``(N, C, H, W)``.
    depth : int
        Number of Dense layers (MLP, >= 1) or of conv layers (CNN, >= 1).
    w_std, b_std : float
        Weight and bias standard deviations (NTK parametrisation). Paper defaults 1.76 and 0.18.
    activation : {"relu", "erf"}
        Hidden activation (erf only for the MLP).
    """

    arch: str = "mlp"
    depth: int = 3
    w_std: float = 1.76
    b_std: float = 0.18
    activation: str = "relu"

    def __post_init__(self) -> None:
        where = "KernelSpec"
        check_choice(self.arch, "arch", _ARCHS, where=where)
        check_int(self.depth, "depth", 1, where=where)
        w = check_interval(self.w_std, "w_std", 0.0, None, closed="neither", where=where)
        b = check_interval(self.b_std, "b_std", 0.0, None, closed="left", where=where)
        if math.isinf(w) or math.isinf(b):
            raise ValueError(param_error("w_std/b_std", where, "finite", (self.w_std, self.b_std)))
        check_choice(self.activation, "activation", _ACTS, where=where)
        if self.arch == "conv" and self.activation != "relu":
            raise ValueError(param_error("activation", where, "'relu' when arch='conv'",
                                         self.activation))


def check_memory(nbytes: float, what: str) -> None:
    """Refuse (``ValueError``) an allocation of ``nbytes`` that exceeds 80% of physical memory.

    Called before any large tensor is created, so an infeasible request fails fast with a hint
    instead of swapping or being killed.
    """
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = 16 * 2**30
    if nbytes > 0.8 * total:
        raise ValueError(
            f"{what} needs about {nbytes / 2**30:.1f} GiB but this machine has "
            f"{total / 2**30:.1f} GiB of memory. Use fewer points (compute the Gram matrix in "
            f"pieces with x1/x2 subsets) or a smaller dtype."
        )


# --- activations: (Σ12, sqrt Σ11, sqrt Σ22) -> (K12, K̇12); Σ -> K on the diagonal ------------------
#
# Blocks of pairs are large (up to N1 x N2 x H x W), so without autograd the pair functions work in
# place and consume their ``s12`` argument; with autograd they build new tensors.

_INV_2PI = 1.0 / (2 * math.pi)


def _set_diag_one(c: torch.Tensor, inplace: bool) -> torch.Tensor:
    """Correlation of a point with itself is exactly 1 (``x @ x.T`` and ``(x * x).sum(1)`` round
    differently; 1 - 1e-16 would move arccos by 1e-8 and K̇ by 1e-9)."""
    if inplace:
        torch.diagonal(c, 0, 0, 1).fill_(1.0)
        return c
    ones = torch.ones_like(torch.diagonal(c, 0, 0, 1))
    return torch.diagonal_scatter(c, ones, 0, 0, 1)


def _relu_pair(s12: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, need_dot: bool,
               same: bool, inplace: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    norm = r1 * r2
    if inplace:
        c = s12.div_(norm).clamp_(-1.0, 1.0)
        if same:
            _set_diag_one(c, True)
        pt = torch.arccos(c).neg_().add_(math.pi)                 # π - θ
        # sin(π - θ) = sin θ = sqrt(1 - c²): one transcendental fewer than torch.sin
        k = torch.mul(c, c).neg_().add_(1.0).clamp_(min=0.0).sqrt_()
        k = k.addcmul_(pt, c).mul_(norm).mul_(_INV_2PI)
        return k, (pt.mul_(_INV_2PI) if need_dot else None)
    c = (s12 / norm).clamp(-1.0, 1.0)
    if same:
        c = _set_diag_one(c, False)
    # exact value; the gradient of arccos is taken just inside (-1, 1) so it stays finite
    cg = c.clamp(-1.0 + _CLIP, 1.0 - _CLIP)
    theta = torch.arccos(cg) + (torch.arccos(c) - torch.arccos(cg)).detach()
    k = norm * (torch.sin(theta) + (math.pi - theta) * c) * _INV_2PI
    kdot = (math.pi - theta) * _INV_2PI if need_dot else None
    return k, kdot


def _erf_pair(s12: torch.Tensor, s11: torch.Tensor, s22: torch.Tensor, need_dot: bool,
              same: bool, inplace: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    a = (1 + 2 * s11) * (1 + 2 * s22)
    k = (2 / math.pi) * torch.arcsin((2 * s12 / torch.sqrt(a)).clamp(-1.0, 1.0))
    kdot = (4 / math.pi) / torch.sqrt(a - 4 * s12**2) if need_dot else None
    return k, kdot


def _relu_diag(s: torch.Tensor) -> torch.Tensor:
    return s / 2


def _erf_diag(s: torch.Tensor) -> torch.Tensor:
    return (2 / math.pi) * torch.arcsin(2 * s / (1 + 2 * s))


def _affine(t: torch.Tensor, a: float, b: float, inplace: bool) -> torch.Tensor:
    return t.mul_(a).add_(b) if inplace else t * a + b


# --- one block of pairs -----------------------------------------------------------------------


def _mlp_block(x1: torch.Tensor, x2: torch.Tensor, d1: list[torch.Tensor],
               d2: list[torch.Tensor], spec: KernelSpec, want_ntk: bool, same: bool
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """NNGP and NTK for a block; ``d1``/``d2`` are the per-layer diagonal variances (square roots
    for ReLU); ``same`` means a diagonal block of a symmetric Gram matrix."""
    w2, b2 = spec.w_std**2, spec.b_std**2
    ip = not (torch.is_grad_enabled() and (x1.requires_grad or x2.requires_grad))
    relu = spec.activation == "relu"
    pair = _relu_pair if relu else _erf_pair
    sig = _affine(x1 @ x2.T, w2 / x1.shape[1], b2, ip)
    ntk = (sig.clone() if ip else sig) if want_ntk else None
    for layer in range(spec.depth - 1):
        if same and not relu:
            sig = _exact_diag(sig, d1[layer], ip)
        k, kdot = pair(sig, d1[layer][:, None], d2[layer][None, :], want_ntk, same, ip)
        sig = _affine(k, w2, b2, ip)
        if want_ntk:
            ntk = ntk.mul_(kdot).mul_(w2).add_(sig) if ip else sig + w2 * kdot * ntk
    return sig, ntk


def _exact_diag(sig: torch.Tensor, d: torch.Tensor, inplace: bool) -> torch.Tensor:
    """Put the per-point variances on the diagonal of a same-points block (erf activation)."""
    if inplace:
        torch.diagonal(sig).copy_(d)
        return sig
    return torch.diagonal_scatter(sig, d)


def _mlp_diag(x: torch.Tensor, spec: KernelSpec) -> list[torch.Tensor]:
    """Σˡ(x, x) for l = 1..depth (cheap, per point); square roots of them for ReLU."""
    w2, b2 = spec.w_std**2, spec.b_std**2
    relu = spec.activation == "relu"
    diag = _relu_diag if relu else _erf_diag
    s = w2 * (x * x).sum(1) / x.shape[1] + b2
    out = [s]
    for _ in range(spec.depth - 1):
        s = w2 * diag(s) + b2
        out.append(s)
    return [torch.sqrt(v) for v in out] if relu else out


def _pool(t: torch.Tensor) -> torch.Tensor:
    """Mean over the 3x3 neighbourhood with zero padding (always divided by 9) on (..., H, W).

    A separable box sum of shifted slices: on the (N1 N2, 1, H, W) pair tensors this is several
    times faster than ``F.avg_pool2d`` (single-channel planes take its slow path)."""
    if t.requires_grad and torch.is_grad_enabled():
        shape = t.shape
        flat = t.reshape(-1, 1, shape[-2], shape[-1])
        return F.avg_pool2d(flat, 3, stride=1, padding=1, count_include_pad=True).reshape(shape)
    out = t.clone()
    out[..., 1:, :] += t[..., :-1, :]
    out[..., :-1, :] += t[..., 1:, :]
    rows = out.clone()
    out[..., :, 1:] += rows[..., :, :-1]
    out[..., :, :-1] += rows[..., :, 1:]
    return out.div_(9.0)


def _conv_diag(x: torch.Tensor, spec: KernelSpec) -> list[torch.Tensor]:
    """Square roots of the per-position Σˡ(x, x) maps (N, H, W) after each conv layer."""
    w2, b2 = spec.w_std**2, spec.b_std**2
    k = (x * x).mean(1)
    out = []
    for _ in range(spec.depth):
        s = w2 * _pool(k) + b2
        out.append(torch.sqrt(s))
        k = _relu_diag(s)
    return out


def _box_sum_hw(t: torch.Tensor) -> torch.Tensor:
    """3x3 box sum with zero padding over the first two dims of ``(H, W, ...)`` maps: shifted
    slices of the outer dims, so every add runs over long contiguous rows of pairs."""
    v = torch.empty_like(t)
    torch.add(t[1:], t[:-1], out=v[1:])
    v[0] = t[0]
    v[:-1] += t[1:]
    out = torch.empty_like(t)
    torch.add(v[:, 1:], v[:, :-1], out=out[:, 1:])
    out[:, 0] = v[:, 0]
    out[:, :-1] += v[:, 1:]
    return out


def _relu_pair_2pi(s12: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor, need_dot: bool,
                   same: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``2 pi`` times the ReLU pair kernel and its derivative kernel, in place on ``s12``
    (``(H, W, N1, N2)`` maps; ``r1 = sqrt Σ11 (H, W, N1, 1)``, ``r2 = sqrt Σ22 (H, W, 1, N2)``):
    ``k = r1 r2 (sin θ + (π - θ) c)`` and ``k̇ = π - θ = arccos(-c)``, with
    ``sin θ = sqrt(1 - c²)``; no pair-sized ``r1 r2`` is formed."""
    nc = s12.mul_(-1.0 / r1).mul_(1.0 / r2).clamp_(-1.0, 1.0)     # -c
    if same:
        torch.diagonal(nc, 0, -2, -1).fill_(-1.0)
    pt = torch.arccos(nc)                                         # π - θ
    k = torch.addcmul(nc.new_ones(()), nc, nc, value=-1.0).sqrt_()
    k = k.addcmul_(pt, nc, value=-1.0).mul_(r1).mul_(r2)
    return k, (pt if need_dot else None)


def _conv_block_fast(x1: torch.Tensor, x2: torch.Tensor, d1: list[torch.Tensor],
                     d2: list[torch.Tensor], spec: KernelSpec, want_ntk: bool, same: bool
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_conv_block` without autograd: pair maps laid out ``(H, W, N1, N2)`` (the 3x3 mean
    shifts outer dims), worked in place, constants folded (the 1/9 of the mean, the 1/(2 pi) of
    the ReLU kernels), and the last layer's position means taken without a product temporary."""
    w2, b2 = spec.w_std**2, spec.b_std**2
    hw = x1.shape[2] * x1.shape[3]
    sig = torch.einsum("ichw,jchw->hwij", x1, x2).contiguous()
    scale = w2 / (9.0 * x1.shape[1])
    theta = pt = k = None
    for layer in range(spec.depth):
        sig = _box_sum_hw(sig).mul_(scale).add_(b2)
        if want_ntk:
            theta = (sig.clone() if theta is None
                     else _box_sum_hw(theta.mul_(pt)).mul_(w2 / (18 * math.pi)).add_(sig))
        r1 = d1[layer].permute(1, 2, 0)[:, :, :, None]
        r2 = d2[layer].permute(1, 2, 0)[:, :, None, :]
        k, pt = _relu_pair_2pi(sig, r1, r2, want_ntk, same)
        sig = k
        scale = w2 / (18 * math.pi)
    c = w2 / (2 * math.pi * hw)
    nngp = k.sum((0, 1)).mul_(c).add_(b2)
    ntk = nngp + theta.mul_(pt).sum((0, 1)).mul_(c) if want_ntk else None
    return nngp, ntk


def _conv_block(x1: torch.Tensor, x2: torch.Tensor, d1: list[torch.Tensor],
                d2: list[torch.Tensor], spec: KernelSpec, want_ntk: bool, same: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    w2, b2 = spec.w_std**2, spec.b_std**2
    ip = not (torch.is_grad_enabled() and (x1.requires_grad or x2.requires_grad))
    if ip:
        return _conv_block_fast(x1, x2, d1, d2, spec, want_ntk, same)
    k = torch.einsum("ichw,jchw->ijhw", x1, x2).div_(x1.shape[1]) if ip else \
        torch.einsum("ichw,jchw->ijhw", x1, x2) / x1.shape[1]
    theta = None
    kdot = None
    for layer in range(spec.depth):
        sig = _affine(_pool(k), w2, b2, ip)
        if want_ntk:
            if theta is None:
                theta = sig.clone() if ip else sig
            elif ip:
                theta = _pool(theta.mul_(kdot)).mul_(w2).add_(sig)
            else:
                theta = sig + w2 * _pool(theta * kdot)
        k, kdot = _relu_pair(sig, d1[layer][:, None], d2[layer][None, :], want_ntk, same, ip)
    nngp = w2 * k.mean((-2, -1)) + b2
    ntk = nngp + w2 * (theta * kdot).mean((-2, -1)) if want_ntk else None
    return nngp, ntk


# --- public -------------------------------------------------------------------------------------


def _prepare(x: torch.Tensor, name: str, spec: KernelSpec) -> torch.Tensor:
    x = check_tensor(x, name, where="ntk_kernel")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if spec.arch == "conv":
        if x.ndim != 4:
            raise ValueError(param_error(name, "ntk_kernel", "a 4-D (N, C, H, W) tensor for "
                                         "arch='conv'", f"shape {tuple(x.shape)}"))
        return x
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(param_error(name, "ntk_kernel", "a tensor of shape (N, ...) with N >= 1",
                                     f"shape {tuple(x.shape)}"))
    return x.reshape(x.shape[0], -1)


@validate_params({"x1": Tensor(ndim=(2, 3, 4, 5)), "x2": Optional_(Tensor(ndim=(2, 3, 4, 5))),
                  "spec": Optional_(Instance(KernelSpec)),
                  "get": AnyOf(Str(), Sequence_(Str())), "batch_size": Int(1, 10_000_000)})
def ntk_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    spec: KernelSpec | None = None,
    *,
    get: str | Sequence[str] = "ntk",
    batch_size: int = 2048,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Analytic NNGP / NTK Gram matrix of an infinite-width network, in bounded memory.

    Parameters
    ----------
    x1 : torch.Tensor
        ``(N1, ...)`` inputs (flattened for the MLP; ``(N1, C, H, W)`` for the CNN). The kernel is
        differentiable with respect to ``x1`` (used by PGD on kernel predictors).
    x2 : torch.Tensor, optional
        ``(N2, ...)`` inputs with the same feature shape; ``None`` means ``x1``.
    spec : KernelSpec, optional
        Architecture, depth, ``w_std``, ``b_std`` and activation (default ``KernelSpec()``).
    get : str or sequence of str
        ``"ntk"`` (default), ``"nngp"``, or a sequence of both.
    batch_size : int
        Edge of the square blocks of pairs computed at once (reduced automatically so one block's
        working set stays under about 4 MiB, cache-sized: e.g. 32 x 32 pairs of 8x8 position
        maps for the CNN kernel, 256 x 256 pairs for the MLP).

    Returns
    -------
    torch.Tensor or dict
        ``(N1, N2)`` kernel (one scalar per pair; the kernel of the ``c``-output net is
        ``Θ ⊗ I_c``) when ``get`` is a string, else a dict keyed by the requested names.
        Dtype and device follow ``x1`` (integer inputs become the default float dtype).

    Raises
    ------
    ValueError
        Non-finite inputs, feature shapes that differ, a non-4-D input for ``arch="conv"``, an
        all-zero input row with ``b_std == 0`` (the ReLU kernel is 0/0 there), unknown ``get``,
        or an output that does not fit in memory.

    References
    ----------
    Jacot, Gabriel & Hongler (2018), NTK recursion (Theorem 1); Fu & Wang (2024), "Theoretical
    Analysis of Robust Overfitting for Wide DNNs: An NTK Approach", ICLR, Section 3 eq. (2)-(3);
    conventions of neural-tangents ``stax`` (Novak et al. 2020).

    Examples
    --------
    >>> import torch
    >>> from dnnkit.adv_ntk import KernelSpec, ntk_kernel
    >>> x = torch.randn(5, 8, dtype=torch.float64)
    >>> k = ntk_kernel(x, None, KernelSpec(depth=3), get=("nngp", "ntk"))
    >>> k["ntk"].shape, bool(torch.allclose(k["ntk"], k["ntk"].T))
    (torch.Size([5, 5]), True)
    """
    spec = KernelSpec() if spec is None else spec
    if not isinstance(spec, KernelSpec):
        raise TypeError(param_error("spec", "ntk_kernel", "a KernelSpec", type(spec).__name__))
    single = isinstance(get, str)
    gets = (get,) if single else tuple(get)
    if not gets:
        raise ValueError(param_error("get", "ntk_kernel", f"a non-empty subset of {list(_GETS)}",
                                     get))
    for g in gets:
        check_choice(g, "get", _GETS, where="ntk_kernel")
    batch_size = check_int(batch_size, "batch_size", 1, where="ntk_kernel")
    a = _prepare(x1, "x1", spec)
    b = a if x2 is None else _prepare(x2, "x2", spec)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(param_error("x2", "ntk_kernel", f"inputs with the same feature shape as "
                                     f"x1 {tuple(x1.shape[1:])}", f"shape {tuple(x2.shape)}"))
    if b.dtype != a.dtype or b.device != a.device:
        b = b.to(device=a.device, dtype=a.dtype)
    n1, n2 = a.shape[0], b.shape[0]
    item = a.element_size()
    check_memory(n1 * n2 * len(gets) * item, f"ntk_kernel output ({n1} x {n2}, {len(gets)} "
                 f"kernel(s), {a.dtype})")
    if spec.b_std == 0.0:
        for t, name in ((a, "x1"), (b, "x2")):
            zero = t.reshape(t.shape[0], -1).abs().sum(1) == 0
            if bool(zero.any()):
                raise ValueError(f"{name} has {int(zero.sum())} all-zero row(s) and b_std == 0: the "
                                 f"ReLU kernel is 0/0 there. Use b_std > 0 or drop those rows.")

    want_ntk = "ntk" in gets
    if spec.arch == "mlp":
        diag, block = _mlp_diag, _mlp_block
        per_pair = 1
    else:
        diag, block = _conv_diag, _conv_block
        per_pair = a.shape[2] * a.shape[3]
    d1 = diag(a, spec)
    d2 = d1 if x2 is None else diag(b, spec)
    # about 8 live pair-sized tensors per block (more when autograd keeps intermediates)
    live = (8 + 6 * spec.depth * a.requires_grad) * per_pair * item
    edge = max(1, min(batch_size, int(math.sqrt(_BLOCK_BYTES / live))))

    grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    names = [g for g in _GETS if g in gets]
    if not grad:
        # fill a preallocated output; for x2=None only blocks on or above the diagonal are
        # computed and mirrored (the Gram matrix is symmetric)
        out = {g: torch.empty(n1, n2, dtype=a.dtype, device=a.device) for g in names}
        for i in range(0, n1, edge):
            a_i = a[i:i + edge]
            d1_i = [d[i:i + edge] for d in d1]
            for j in range(i if x2 is None else 0, n2, edge):
                res = dict(zip(_GETS, block(a_i, b[j:j + edge], d1_i, [d[j:j + edge] for d in d2],
                                            spec, want_ntk, x2 is None and i == j)))
                for g in names:
                    out[g][i:i + edge, j:j + edge] = res[g]
                    if x2 is None and j != i:
                        out[g][j:j + edge, i:i + edge] = res[g].T
        return out[gets[0]] if single else {g: out[g] for g in gets}

    rows: dict[str, list[torch.Tensor]] = {g: [] for g in names}
    for i in range(0, n1, edge):
        cols: dict[str, list[torch.Tensor]] = {g: [] for g in names}
        a_i = a[i:i + edge]
        d1_i = [d[i:i + edge] for d in d1]
        for j in range(0, n2, edge):
            res = dict(zip(_GETS, block(a_i, b[j:j + edge], d1_i, [d[j:j + edge] for d in d2],
                                        spec, want_ntk, x2 is None and i == j)))
            for g in names:
                cols[g].append(res[g])
        for g in names:
            rows[g].append(torch.cat(cols[g], 1))
    out = {g: torch.cat(rows[g], 0) for g in names}
    return out[gets[0]] if single else {g: out[g] for g in gets}
