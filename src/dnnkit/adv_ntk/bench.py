"""Benchmark: NTK Gram matrices vs neural-tangents' jitted kernel_fn; seconds per Adv-NTK step.

neural-tangents lives in its own venv (``.venv-nt``, made by ``make test`` / ``mk/adv_ntk.mk``),
so its time is measured inside the oracle script ``tests/oracles/adv_ntk_nt.py`` (same machine,
same inputs, float64, jitted, compile call excluded) during this same run; when that venv is
missing the anchor time is reported as NaN.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import torch

from dnnkit.adv_ntk.attacks import pgd_attack
from dnnkit.adv_ntk.kernels import KernelSpec, ntk_kernel
from dnnkit.adv_ntk.predict import AdvNTK, signed_abs
from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.data import load_digits_split
from dnnkit.core.process import isolated_python_env
from dnnkit.core.registry import register_bench

ROOT = Path(__file__).resolve().parents[3]
NT_PYTHON = ROOT / ".venv-nt" / "bin" / "python"
NT_SCRIPT = ROOT / "tests" / "oracles" / "adv_ntk_nt.py"


def _nt_times(requests: list[dict]) -> list[float]:
    if not (NT_PYTHON.is_file() and NT_SCRIPT.is_file()):
        return [float("nan")] * len(requests)
    env = isolated_python_env()
    env.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    proc = subprocess.run([str(NT_PYTHON), str(NT_SCRIPT)], input=json.dumps({"requests": requests}),
                          capture_output=True, text=True, env=env, timeout=1800, check=False)
    if proc.returncode != 0:
        return [float("nan")] * len(requests)
    return [r["seconds"] for r in json.loads(proc.stdout)["results"]]


def _step_seconds(m: int, *, official: bool, repeat: int) -> float:
    """One Adv-NTK step (PGD-10 on 128 validation points + loss + gradient w.r.t. ϖ)."""
    split = load_digits_split(test_fraction=0.3, seed=0, flat=True)
    x = split.x_train.double() - 0.5
    y = split.y_train
    spec = KernelSpec(depth=3)
    model = AdvNTK(x[:m], y[:m], spec, varpi=0.01, num_classes=10)
    xv, yv = x[m:m + 128], torch.nn.functional.one_hot(y[m:m + 128], 10).double()
    gen = torch.Generator().manual_seed(0)
    if official:  # the official code's form: Θ⁻¹ from an eigendecomposition, then expm(-Θ D)
        evals, evecs = torch.linalg.eigh(model.gram)
        inv = (evecs / evals) @ evecs.T
        eye = torch.eye(m, dtype=torch.float64)

        def weights() -> torch.Tensor:
            d = signed_abs(model.varpi)
            return inv @ ((eye - torch.linalg.matrix_exp(-model.gram * d[None, :])) @ model.y_train)
    else:
        weights = model.weights

    class _Fixed(torch.nn.Module):
        def __init__(self, p: torch.Tensor) -> None:
            super().__init__()
            self.p = p

        def forward(self, xx: torch.Tensor) -> torch.Tensor:
            return ntk_kernel(xx, model.x_train, spec) @ self.p

    def step() -> None:
        with torch.no_grad():
            p = weights()
        xa = pgd_attack(_Fixed(p), xv, yv, eps=0.2, steps=10, alpha=0.05, clip=(-0.5, 0.5),
                        generator=gen)
        with torch.no_grad():
            k = ntk_kernel(xa, model.x_train, spec)
        loss = ((k @ weights() - yv) ** 2).sum() / (2 * len(xv))
        torch.autograd.grad(loss, model.varpi)

    return time_call(step, repeat=repeat, warmup=1)


@register_bench("adv_ntk")
def bench(quick: bool = False) -> list[Timing]:
    split = load_digits_split(test_fraction=0.3, seed=0, flat=True)
    x = torch.cat([split.x_train, split.x_test]).double() - 0.5  # all 1,797 digits
    if quick:
        x = x[:600]
    n = x.shape[0]
    repeat = 3 if quick else 5
    mlp = KernelSpec(depth=3)
    conv = KernelSpec(arch="conv", depth=2)
    xc = x[:200 if quick else 400].reshape(-1, 1, 8, 8)
    ours_mlp = time_call(lambda: ntk_kernel(x, None, mlp, get=("nngp", "ntk")), repeat=repeat)
    ours_conv = time_call(lambda: ntk_kernel(xc, None, conv, get=("nngp", "ntk")), repeat=repeat)
    base = {"w_std": 1.76, "b_std": 0.18, "activation": "relu", "task": "bench", "repeat": repeat}
    nt_mlp, nt_conv = _nt_times([
        {**base, "arch": "mlp", "depth": 3, "x": x.tolist()},
        {**base, "arch": "conv", "depth": 2, "x": xc.tolist()},
    ])
    where = ("neural-tangents timed in its own venv by tests/oracles/adv_ntk_nt.py in this run "
             "(jit, compile excluded, median)")
    if math.isnan(nt_mlp):
        where = ".venv-nt missing or failed: run `make test` to create it; anchor not measured"
    threads = f"torch threads {torch.get_num_threads()}, XLA picks its own"
    rows = [
        Timing(f"NNGP+NTK Gram, ReLU MLP-3, {n} digits x {n}, float64", ours_mlp,
               "neural-tangents 0.6.5 jit(kernel_fn)", nt_mlp,
               note=f"{where}; {threads}"),
        Timing(f"NNGP+NTK Gram, ReLU CNN-2 (3x3 SAME), {xc.shape[0]} 8x8 digits, float64",
               ours_conv, "neural-tangents 0.6.5 jit(kernel_fn)", nt_conv, note=f"{where}; {threads}"),
    ]
    for m in ((300,) if quick else (300, 1000)):
        ours = _step_seconds(m, official=False, repeat=1 if quick else 3)
        off = _step_seconds(m, official=True, repeat=1 if quick else 3)
        rows.append(Timing(f"one Adv-NTK step, M = {m} (PGD-10 on 128 val points + grad wrt ϖ)",
                           ours, "official form (eigh inverse + expm), torch", off,
                           note="ours: eigh of Θ^½ D Θ^½ + Daleckii-Krein backward (AdvNTK "
                                "method='eigh'); anchor differentiates expm(-ΘD) as the official "
                                "JAX code does; both O(M³)"))
    return rows
