"""Kernel predictors of infinite-width nets: gradient flow at time t, its t -> inf limit, Adv-NTK.

All of them are ``f(x) = Θ(x, X) P`` with ``P = Θ⁻¹ (I - exp(-Θ D)) Y`` (f₀ ≡ 0, squared loss
``½ Σᵢ ||f(xᵢ) - yᵢ||²``), where ``D = diag(|ϖ|)``:

- ``ϖ = η t · 1``: the ensemble mean of infinitely wide nets trained by gradient flow with learning
  rate η for time t (Lee et al. 2019, eq. (9); Fu & Wang 2024, Section 3);
- ``ϖ = inf``: the t -> ∞ limit ``Θ(x, X) Θ⁻¹ Y`` (kernel regression), which is also where
  adversarial training of the linearised net degenerates to (Fu & Wang 2024, Section 4, "AT
  degeneration");
- ``ϖ`` learned per sample: Adv-NTK (Fu & Wang 2024, Section 5, Algorithm 1), where ``D`` is the
  diagonalised regularisation matrix that replaces the time-dependent term of the closed-form AT
  dynamics.

Two exact evaluations of ``P`` (``method`` of :class:`AdvNTK`):

- ``"eigh"`` (default when Θ is well conditioned): ΘD is similar to the symmetric
  ``T = Θ^{1/2} D Θ^{1/2}``, so ``P = Θ^{-1/2} (I - e^{-T}) Θ^{-1/2} Y`` from one symmetric
  eigendecomposition ``T = Q Λ Qᵀ`` per step. The gradient in ϖ uses the Daleckii-Krein formula with
  divided differences ``(e^{-λj} - e^{-λi}) / (λi - λj) = e^{-min} φ(|λi - λj|)``, which stay
  exact when eigenvalues coincide (e.g. at ϖ = 0, where ``torch.linalg.eigh``'s own backward is
  NaN). Cost: one eigh and a few M x M products, about 10x cheaper than differentiating an expm.
- ``"expm"`` (fallback for singular / ill-conditioned Θ): ``P = D φ(Θ D) Y`` with
  ``φ(A) = A⁻¹ (I - e^{-A})``, where ``φ(A) Y`` is the top-right block of
  ``expm([[-A, Y], [0, 0]])`` (Van Loan 1978); needs no inverse of Θ at all.
"""

from __future__ import annotations

import logging
import math

import torch

from dnnkit.adv_ntk.kernels import KernelSpec, check_memory, ntk_kernel
from dnnkit.core.validation import (
    AnyOf,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    check_tensor,
    param_error,
    validate_params,
)

__all__ = ["AdvNTK", "one_hot", "phi_times", "signed_abs"]

# largest condition number of Θ for which the "eigh" method (which uses Θ^{-1/2}) is chosen
_MAX_COND = 1e8

log = logging.getLogger("dnnkit")


def one_hot(y: torch.Tensor, num_classes: int | None, *, n: int, name: str, where: str,
            dtype: torch.dtype) -> torch.Tensor:
    """Integer labels ``(n,)`` -> one-hot ``(n, c)``; a float ``(n, c)`` target is checked and kept."""
    y = check_tensor(y, name, where=where)
    if y.shape[0] != n:
        raise ValueError(param_error(name, where, f"a tensor with {n} rows (one per input)",
                                     f"shape {tuple(y.shape)}"))
    if y.ndim == 1:
        if y.is_floating_point():
            if not bool((y == y.round()).all()):
                raise ValueError(param_error(name, where, "integer class labels (n,) or targets "
                                             "(n, c)", "non-integer float labels"))
            y = y.long()
        if bool((y < 0).any()):
            raise ValueError(param_error(name, where, "non-negative class labels",
                                         int(y.min())))
        c = int(y.max()) + 1 if num_classes is None else num_classes
        if int(y.max()) >= c:
            raise ValueError(param_error(name, where, f"labels < num_classes={c}", int(y.max())))
        return torch.nn.functional.one_hot(y.long(), c).to(dtype)
    if y.ndim != 2:
        raise ValueError(param_error(name, where, "labels (n,) or targets (n, c)",
                                     f"shape {tuple(y.shape)}"))
    if num_classes is not None and y.shape[1] != num_classes:
        raise ValueError(param_error(name, where, f"targets with {num_classes} columns",
                                     f"shape {tuple(y.shape)}"))
    return y.to(dtype)


def signed_abs(w: torch.Tensor) -> torch.Tensor:
    """``|w|`` with derivative +1 at 0 (JAX's convention; ``torch.abs`` has derivative 0 there).

    With ϖ₀ = 0 and ``torch.abs`` the Adv-NTK gradient is identically zero and training never
    moves; this is the subgradient the official JAX code gets implicitly.
    """
    return torch.where(w >= 0, w, -w)


def phi_times(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``φ(A) B = A⁻¹ (I - e^{-A}) B`` without inverting ``A`` (top-right block of an expm).

    Parameters
    ----------
    a : (M, M) tensor (need not be invertible or symmetric); b : (M, k) tensor.
    """
    m, k = a.shape[0], b.shape[1]
    top = torch.cat([-a, b], 1)
    bottom = torch.zeros(k, m + k, dtype=a.dtype, device=a.device)
    return torch.linalg.matrix_exp(torch.cat([top, bottom], 0))[:m, m:]


def _phi(x: torch.Tensor) -> torch.Tensor:
    """``(1 - e^{-x}) / x`` with value 1 at 0 (x >= 0)."""
    safe = torch.where(x > 0, x, torch.ones_like(x))
    return torch.where(x > 0, -torch.expm1(-safe) / safe, torch.ones_like(x))


class _EighWeights(torch.autograd.Function):
    """``d -> Θ^{-1/2} (I - exp(-Θ^{1/2} diag(d) Θ^{1/2})) Z`` with ``Z = Θ^{-1/2} y`` (one column
    set), differentiable in ``d`` (Daleckii-Krein, stable divided differences)."""

    @staticmethod
    def forward(d, half, ihalf, z):
        t = (half * d[None, :]) @ half
        lam, q = torch.linalg.eigh((t + t.T) / 2)
        lam = lam.clamp_min(0.0)
        qz = q.T @ z
        p = ihalf @ (q @ (-torch.expm1(-lam))[:, None].mul(qz))
        return p, lam, q, qz

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, half, ihalf, _ = inputs
        _, lam, q, qz = output
        ctx.save_for_backward(half, ihalf, lam, q, qz)
        ctx.mark_non_differentiable(lam, q, qz)

    @staticmethod
    def backward(ctx, grad_p, *_):
        half, ihalf, lam, q, qz = ctx.saved_tensors
        qa = q.T @ (ihalf @ grad_p)                        # Qᵀ Θ^{-1/2} G
        lo = torch.minimum(lam[:, None], lam[None, :])
        f = torch.exp(-lo) * _phi((lam[:, None] - lam[None, :]).abs())
        k = q @ (f * (qa @ qz.T)) @ q.T                    # adjoint Fréchet derivative
        grad_d = ((half @ k) * half).sum(1)               # diag(Θ^{1/2} K Θ^{1/2})
        return grad_d, None, None, None


@validate_params({"x_train": Tensor(ndim=(2, 3, 4, 5)), "y_train": Tensor(),
                  "spec": Optional_(Instance(KernelSpec)), "varpi": AnyOf(Real(allow_inf=True), Tensor(finite=False)),
                  "per_class": Instance(bool), "num_classes": Optional_(Int(2, 1_000_000)),
                  "diag_reg": Real(0.0, 1e12), "dtype": Instance(torch.dtype),
                  "trainable": Instance(bool), "method": Options("auto", "eigh", "expm")})
class AdvNTK(torch.nn.Module):
    """Kernel predictor ``f(x) = Θ(x, X) Θ⁻¹ (I - exp(-Θ diag|ϖ|)) Y`` of an infinite-width net.

    Parameters
    ----------
    x_train : torch.Tensor
        ``(M, ...)`` training inputs (the optimisation set ``D_opt`` for Adv-NTK).
    y_train : torch.Tensor
        ``(M,)`` integer labels (one-hot encoded) or ``(M, c)`` regression targets.
    spec : KernelSpec, optional
        The infinite-width architecture whose NTK is used (default ``KernelSpec()``: ReLU MLP-3,
        w_std 1.76, b_std 0.18).
    varpi : float or torch.Tensor
        ϖ: a scalar (broadcast to every training sample), an ``(M,)`` vector, or ``(M, c)`` with
        ``per_class=True``. ``lr * t`` gives gradient flow at time t; ``math.inf`` gives the t -> ∞
        kernel-regression predictor (not trainable); 0 gives f ≡ 0 (Adv-NTK's start).
    per_class : bool
        Learn one ϖ per sample and class (``(M, c)``) instead of one per sample (official code).
    num_classes : int, optional
        Number of classes when ``y_train`` holds integer labels (default: ``max + 1``).
    diag_reg : float
        Added to Θ's diagonal (ridge). Needed for t = ∞ when Θ is singular (duplicate points).
    dtype : torch.dtype
        Computation dtype (float64 by default; float32 is warned about for M > 2000).
    trainable : bool
        Whether ϖ is a trainable ``nn.Parameter`` (ignored for ``varpi = inf``).
    method : {"auto", "eigh", "expm"}
        How ``P`` is evaluated (see the module docstring): ``"auto"`` picks ``"eigh"`` when
        cond(Θ) <= 1e8, else ``"expm"`` (inverse-free, about 10x slower).

    Attributes
    ----------
    varpi : torch.nn.Parameter
        The learnable vector; the predictor uses ``|ϖ|`` (with derivative +1 at 0).

    Raises
    ------
    ValueError
        Label/input count mismatch, non-finite inputs, wrong ϖ shape or negative/NaN ϖ, a kernel
        too ill-conditioned for t = ∞ (hint: ``diag_reg``), or a size that cannot fit in memory.

    References
    ----------
    Fu & Wang (2024), ICLR, Section 3 (closed-form linearised dynamics) and Algorithm 1
    (Adv-NTK); Lee et al. (2019), "Wide Neural Networks of Any Depth Evolve as Linear Models Under
    Gradient Descent", eq. (9).

    Examples
    --------
    >>> import math, torch
    >>> from dnnkit.adv_ntk import AdvNTK, KernelSpec
    >>> x = torch.randn(20, 5, dtype=torch.float64); y = torch.arange(20) % 3
    >>> f_inf = AdvNTK(x, y, KernelSpec(depth=2), varpi=math.inf)
    >>> bool((f_inf(x).argmax(1) == y).all())       # kernel regression interpolates
    True
    >>> AdvNTK(x, y, KernelSpec(depth=2), varpi=0.0)(x).abs().max().item()
    0.0
    """

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor,
                 spec: KernelSpec | None = None, *, varpi: float | torch.Tensor = 0.0,
                 per_class: bool = False, num_classes: int | None = None,
                 diag_reg: float = 0.0, dtype: torch.dtype = torch.float64,
                 trainable: bool = True, method: str = "auto") -> None:
        super().__init__()
        where = "AdvNTK"
        spec = KernelSpec() if spec is None else spec
        if not isinstance(spec, KernelSpec):
            raise TypeError(param_error("spec", where, "a KernelSpec", type(spec).__name__))
        x_train = check_tensor(x_train, "x_train", where=where)
        if x_train.ndim < 2 or x_train.shape[0] < 1:
            raise ValueError(param_error("x_train", where, "a tensor of shape (M, ...), M >= 1",
                                         f"shape {tuple(x_train.shape)}"))
        if num_classes is not None:
            check_int(num_classes, "num_classes", 1, where=where)
        self.diag_reg = check_interval(diag_reg, "diag_reg", 0.0, None, where=where)
        m = x_train.shape[0]
        if dtype == torch.float32 and m > 2000:
            log.warning("AdvNTK: float32 with M=%d training points; the NTK Gram matrix is "
                        "ill-conditioned at this size, prefer float64.", m)
        y = one_hot(y_train, num_classes, n=m, name="y_train", where=where, dtype=dtype)
        c = y.shape[1]
        # the (M+c)^2 exponential's backward works on a 2(M+c) block matrix: ~24 copies of (M+c)^2
        check_memory(24 * (m + c) ** 2 * torch.finfo(dtype).bits / 8,
                     f"AdvNTK with M={m} training points (matrix exponential and its backward)")
        self.spec = spec
        self.per_class = bool(per_class)
        x = x_train.to(dtype=dtype)
        self.register_buffer("x_train", x)
        self.register_buffer("y_train", y)
        gram = ntk_kernel(x, None, spec)
        if self.diag_reg:
            gram = gram + self.diag_reg * torch.eye(m, dtype=dtype, device=x.device)
        self.register_buffer("gram", gram)
        shape = (m, c) if self.per_class else (m,)
        self.infinite = False
        if isinstance(varpi, torch.Tensor) and varpi.ndim > 0:
            v = check_tensor(varpi, "varpi", where=where, finite=False).to(dtype=dtype,
                                                                          device=x.device)
            if tuple(v.shape) != shape:
                raise ValueError(param_error("varpi", where, f"a scalar or a tensor of shape "
                                             f"{shape}", f"shape {tuple(v.shape)}"))
            if bool(torch.isnan(v).any()) or bool(torch.isinf(v).any()):
                raise ValueError(param_error("varpi", where, "finite (use a scalar inf for the "
                                             "t -> inf limit)", "non-finite entries"))
            v = v.detach().clone()
        else:
            s = float(varpi)
            if math.isnan(s) or s < 0:
                raise ValueError(param_error("varpi", where, "a float in [0, inf]", varpi))
            self.infinite = math.isinf(s)
            v = torch.full(shape, 0.0 if self.infinite else s, dtype=dtype, device=x.device)
        self.varpi = torch.nn.Parameter(v, requires_grad=bool(trainable) and not self.infinite)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.register_buffer("inf_weights", self._solve(gram, y) if self.infinite else None)
        check_choice(method, "method", ("auto", "eigh", "expm"), where=where)
        half = ihalf = None
        if not self.infinite and method != "expm":
            w, u = torch.linalg.eigh(gram)
            ok = float(w[0]) > float(w[-1]) / _MAX_COND
            if method == "eigh" and not ok:
                raise ValueError(f"method='eigh' needs a well-conditioned NTK Gram matrix (cond "
                                 f"<= {_MAX_COND:g}); smallest eigenvalue {float(w[0]):.3e}, "
                                 f"largest {float(w[-1]):.3e}. Use method='expm' or diag_reg > 0.")
            if ok:
                root = w.clamp_min(0).sqrt()
                half = (u * root) @ u.T
                ihalf = (u / root) @ u.T
        self.method = "eigh" if half is not None else ("inf" if self.infinite else "expm")
        self.register_buffer("gram_half", half)
        self.register_buffer("gram_ihalf", ihalf)
        self.register_buffer("z_train", ihalf @ y if ihalf is not None else None)

    @staticmethod
    def _solve(gram: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lam_min = float(torch.linalg.eigvalsh(gram)[0])
        lam_max = float(gram.diagonal().sum())
        tol = lam_max * torch.finfo(gram.dtype).eps * 10
        if lam_min <= tol:
            raise ValueError(f"The NTK Gram matrix of x_train is singular or ill-conditioned "
                             f"(smallest eigenvalue {lam_min:.3e} <= {tol:.3e}; duplicate points?). "
                             f"Pass diag_reg > 0 (e.g. 1e-6 * mean diagonal) or use a finite varpi.")
        chol = torch.linalg.cholesky(gram)
        return torch.cholesky_solve(y, chol)

    def weights(self) -> torch.Tensor:
        """``P = Θ⁻¹ (I - exp(-Θ D)) Y``, ``(M, c)``; differentiable in ϖ when grad is enabled.

        Cached (detached) while ϖ does not require grad or grad is off, so attacks on a frozen
        predictor do not repeat the matrix exponential. The cache is keyed on ϖ's *values* (a
        snapshot compared with ``torch.equal``, O(M c) against the O(M^3) solve), so swapping ϖ by
        ``torch.func.functional_call``, ``param.data = ...`` or ``vector_to_parameters`` never
        returns weights of an old ϖ.
        """
        if self.inf_weights is not None:
            return self.inf_weights
        v = self.varpi
        frozen = not (torch.is_grad_enabled() and v.requires_grad)
        if frozen and self._cache is not None:
            old_v, old_p = self._cache
            if old_v.device == v.device and old_v.dtype == v.dtype and old_v.shape == v.shape \
                    and torch.equal(old_v, v.detach()):
                return old_p
        d = signed_abs(v)
        if self.method == "eigh":
            h, ih, z = self.gram_half, self.gram_ihalf, self.z_train
            if self.per_class:
                p = torch.cat([_EighWeights.apply(d[:, k], h, ih, z[:, k:k + 1])[0]
                               for k in range(d.shape[1])], 1)
            else:
                p = _EighWeights.apply(d, h, ih, z)[0]
        elif self.per_class:
            cols = [d[:, k:k + 1] * phi_times(self.gram * d[:, k][None, :], self.y_train[:, k:k + 1])
                    for k in range(d.shape[1])]
            p = torch.cat(cols, 1)
        else:
            p = d[:, None] * phi_times(self.gram * d[None, :], self.y_train)
        if frozen:
            p = p.detach()
            self._cache = (v.detach().clone(), p)
        return p

    @validate_params({"x": Tensor(ndim=(2, 3, 4, 5))})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, c)`` outputs for ``(N, ...)`` inputs; differentiable in ``x`` (for attacks)."""
        x = check_tensor(x, "x", where="AdvNTK.forward")
        if tuple(x.shape[1:]) != tuple(self.x_train.shape[1:]):
            raise ValueError(param_error("x", "adv_ntk.AdvNTK.forward",
                                         "inputs with the same feature shape as the training "
                                         f"data {tuple(self.x_train.shape[1:])}",
                                         f"shape {tuple(x.shape)}"))
        k = ntk_kernel(x.to(dtype=self.x_train.dtype), self.x_train, self.spec)
        return k @ self.weights()
