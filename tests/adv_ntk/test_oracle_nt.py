"""Oracle: neural-tangents 0.6.5 (own venv .venv-nt, see mk/adv_ntk.mk) on the same inputs.

One subprocess call runs every request (JAX start-up is the dominant cost); the comparisons are
here, the computation is in tests/oracles/adv_ntk_nt.py (which does not import dnnkit).
"""

import json
import math
import subprocess

import pytest
import torch

from dnnkit.adv_ntk import AdvNTK, KernelSpec, ntk_kernel
from dnnkit.core.process import isolated_python_env
from tests.conftest import ROOT, oracle_python

SCRIPT = ROOT / "tests" / "oracles" / "adv_ntk_nt.py"

KERNEL_CASES = [
    ("mlp", 1, "relu"), ("mlp", 2, "relu"), ("mlp", 3, "relu"), ("mlp", 5, "relu"),
    ("mlp", 8, "relu"), ("mlp", 2, "erf"), ("mlp", 3, "erf"),
    ("conv", 1, "relu"), ("conv", 2, "relu"), ("conv", 3, "relu"),
]
W_STD, B_STD = 1.76, 0.18
TIMES = [0.5, 20.0, 500.0, None]


def _inputs(arch, seed):
    g = torch.Generator().manual_seed(seed)
    if arch == "conv":
        return (torch.rand(5, 2, 6, 6, generator=g, dtype=torch.float64) - 0.5,
                torch.rand(3, 2, 6, 6, generator=g, dtype=torch.float64) - 0.5)
    return (torch.randn(7, 9, generator=g, dtype=torch.float64),
            torch.randn(4, 9, generator=g, dtype=torch.float64))


def _predict_problem():
    g = torch.Generator().manual_seed(42)
    x = torch.rand(30, 12, generator=g, dtype=torch.float64) - 0.5
    y = torch.arange(30) % 4
    xt = torch.rand(9, 12, generator=g, dtype=torch.float64) - 0.5
    return x, y, xt


@pytest.fixture(scope="module")
def nt():
    py = oracle_python(".venv-nt")
    reqs = []
    for i, (arch, depth, act) in enumerate(KERNEL_CASES):
        x1, x2 = _inputs(arch, i)
        base = {"task": "kernel", "arch": arch, "depth": depth, "w_std": W_STD, "b_std": B_STD,
                "activation": act, "x1": x1.tolist()}
        reqs.append({**base, "x2": x2.tolist()})
        reqs.append({**base, "x2": None})
    x, y, xt = _predict_problem()
    spec = KernelSpec(depth=3)
    ktt, kte = ntk_kernel(x, None, spec), ntk_kernel(xt, x, spec)
    onehot = torch.nn.functional.one_hot(y, 4).double()
    for t in TIMES:
        reqs.append({"task": "predict", "k_train_train": ktt.tolist(),
                     "y_train": onehot.tolist(), "k_test_train": kte.tolist(), "t": t, "lr": 1.0})
    proc = subprocess.run([str(py), str(SCRIPT)], input=json.dumps({"requests": reqs}),
                          capture_output=True, text=True, timeout=600, check=False,
                          env=isolated_python_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)["results"]


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


@pytest.mark.parametrize("case", range(len(KERNEL_CASES)),
                         ids=[f"{a}{d}-{act}" for a, d, act in KERNEL_CASES])
def test_kernels_equal_neural_tangents(nt, case):
    arch, depth, act = KERNEL_CASES[case]
    spec = KernelSpec(arch=arch, depth=depth, w_std=W_STD, b_std=B_STD, activation=act)
    x1, x2 = _inputs(arch, case)
    cross, sym = nt[2 * case], nt[2 * case + 1]
    ours = ntk_kernel(x1, x2, spec, get=("nngp", "ntk"), batch_size=3)
    ours_sym = ntk_kernel(x1, None, spec, get=("nngp", "ntk"), batch_size=3)
    off = ~torch.eye(x1.shape[0], dtype=torch.bool)
    for name in ("nngp", "ntk"):
        assert float((ours[name] - _t(cross[name])).abs().max()) <= 1e-10
        # neural-tangents takes arccos of a self-correlation of 1 - 1e-16 on the diagonal, which
        # moves its NTK diagonal by up to ~1e-7 relative; ours uses the exact 1 there.
        diff = (ours_sym[name] - _t(sym[name])).abs()
        assert float(diff[off].max()) <= 1e-10
        assert float((diff.diagonal() / ours_sym[name].diagonal()).max()) <= 1e-6
    # float32 inputs: relative agreement 1e-5
    ours32 = ntk_kernel(x1.float(), x2.float(), spec, get="ntk")
    ref = _t(cross["ntk"])
    assert float(((ours32.double() - ref).abs() / ref.abs().max()).max()) <= 1e-5


@pytest.mark.parametrize("k", range(len(TIMES)), ids=[str(t) for t in TIMES])
def test_predictor_equals_gradient_descent_mse(nt, k):
    x, y, xt = _predict_problem()
    t = TIMES[k]
    ref = _t(nt[2 * len(KERNEL_CASES) + k]["f"])
    # nt normalises the loss by Y.size, so its time t is our ϖ = t / (M c)
    varpi = math.inf if t is None else t / (30 * 4)
    with torch.no_grad():
        ours = AdvNTK(x, y, KernelSpec(depth=3), varpi=varpi, trainable=False)(xt)
    assert float((ours - ref).abs().max()) <= 1e-10
