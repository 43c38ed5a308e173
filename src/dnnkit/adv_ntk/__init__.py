"""Analytic NTK kernels, linearised adversarial-training dynamics, and Adv-NTK.

Paper: Shaopeng Fu and Di Wang, "Theoretical Analysis of Robust Overfitting for Wide DNNs: An NTK
Approach", ICLR 2024 (arXiv:2310.06112). Official code: github.com/fshp971/adv-ntk (JAX).

Wide nets trained by gradient descent stay close to their linearisation, and in the infinite-width
limit their mean output is a kernel predictor built from the neural tangent kernel (NTK). Under
squared loss the linearised adversarial-training (AT) dynamics have a closed form whose
robustness-carrying term fades with training time ("AT degeneration"): a very long AT run ends at
the plain kernel-regression predictor, which explains robust overfitting. Adv-NTK keeps the closed
form ``f(x) = Θ(x, X) Θ⁻¹ (I - exp(-Θ diag|ϖ|)) Y`` and learns ϖ on PGD examples of a validation
split: adversarial training of an infinite-width net.

Public API
----------
- :class:`KernelSpec` - infinite-width ReLU/erf MLP or ReLU CNN (depth, ``w_std``, ``b_std``).
- :func:`ntk_kernel` - analytic NNGP / NTK Gram matrices in bounded memory (agrees with
  neural-tangents' ``kernel_fn`` to 1e-14 in float64), differentiable in the inputs.
- :class:`AdvNTK` - the kernel predictor: gradient flow at time t (``varpi = lr * t``), the
  t -> ∞ limit (``varpi = math.inf``) or a learned ϖ (Adv-NTK).
- :func:`fit_adv_ntk` - Adv-NTK training (Algorithm 1 of the paper).
- :func:`pgd_attack`, :func:`robust_accuracy` - L∞/L2 PGD for any classifier ``nn.Module``.

More in the sub-modules: ``dnnkit.adv_ntk.empirical`` (empirical NTK of a finite torch model and an
NTK-parametrised MLP), ``dnnkit.adv_ntk.predict.phi_times`` (inverse-free ``A⁻¹(I - e^{-A}) B``),
``dnnkit.adv_ntk.data.load_paper_data`` (CIFAR-10 binary / SVHN .mat files, 12,000-image subsets in
[-0.5, 0.5], as in the paper; nothing is downloaded).

Example
-------
>>> import math, torch
>>> from dnnkit.adv_ntk import AdvNTK, KernelSpec, robust_accuracy
>>> x = torch.rand(60, 16, dtype=torch.float64) - 0.5; y = (x[:, 0] > 0).long()
>>> f_inf = AdvNTK(x[:40], y[:40], KernelSpec(depth=3), varpi=math.inf)   # t = inf
>>> f_t = AdvNTK(x[:40], y[:40], KernelSpec(depth=3), varpi=0.1)          # lr * t = 0.1
>>> clean, robust = robust_accuracy(f_t, x[40:], y[40:], eps=0.05, clip=(-0.5, 0.5), generator=0)
>>> 0.0 <= robust <= clean <= 1.0
True
"""

from dnnkit.adv_ntk.attacks import pgd_attack, robust_accuracy
from dnnkit.adv_ntk.kernels import KernelSpec, ntk_kernel
from dnnkit.adv_ntk.predict import AdvNTK
from dnnkit.adv_ntk.train import fit_adv_ntk

__all__ = ["AdvNTK", "KernelSpec", "fit_adv_ntk", "ntk_kernel", "pgd_attack", "robust_accuracy"]
