"""Side-by-side timings for ``dnnkit bench interactions``.

1. Exact Harsanyi transform: our O(n 2**n) butterfly vs a dense 2**n x 2**n matrix (the official
   code's approach; O(4**n) memory) vs shapiq's ``ExactComputer`` Moebius (O(3**n) Python loop),
   n = 8, 10, 12, 14.
2. Masked forwards: all 2**n masked inputs batched vs one forward per mask.
3. Extraction per sample at n = 10: projected Adam (3,000 steps, fast transforms) vs the
   official recipe (SGD on dense matrices, 20,000 iterations; timed on a slice, extrapolated).
"""

from __future__ import annotations

import time

import torch

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.registry import register_bench
from dnnkit.interactions.extraction import extract_interactions
from dnnkit.interactions.masking import masked_outputs, patch_players
from dnnkit.interactions.subsets import subset_sizes
from dnnkit.interactions.transforms import harsanyi_and

#: Memory allowed for one dense 2**n x 2**n float64 matrix in the benchmark.
DENSE_BUDGET_BYTES = 1 << 30


def dense_moebius_matrix(n: int, dtype=torch.float64) -> torch.Tensor:
    """M[S, T] = (-1)^{|S|-|T|} [T <= S], built from the definition (vectorised)."""
    k = 1 << n
    idx = torch.arange(k)
    sub = (idx[:, None] & idx[None, :]) == idx[None, :]
    size = subset_sizes(n)
    sign = 1.0 - 2.0 * ((size[:, None] - size[None, :]) % 2).to(dtype)
    return torch.where(sub, sign, torch.zeros((), dtype=dtype))


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:  # pragma: no cover
        return "?"


def _transform_rows(ns, repeat) -> list[Timing]:
    rows = []
    try:
        import shapiq
    except ImportError:  # pragma: no cover - oracle extra missing
        shapiq = None
    for n in ns:
        g = torch.Generator().manual_seed(n)
        v = torch.randn(1 << n, dtype=torch.float64, generator=g)
        ours = time_call(lambda v=v: harsanyi_and(v), repeat=repeat)
        need = (1 << (2 * n)) * 8
        if need <= DENSE_BUDGET_BYTES:
            t0 = time.perf_counter()
            mat = dense_moebius_matrix(n)
            build = time.perf_counter() - t0
            dense = time_call(lambda m=mat, v=v: m @ v, repeat=repeat)
            err = float((mat @ v - harsanyi_and(v)).abs().max())
            rows.append(Timing(f"Harsanyi transform n={n} (one sample)", ours,
                               "dense 2^n x 2^n mat-vec (official approach)", dense,
                               note=f"matrix {need / 2**20:.0f} MiB, built in {build:.2f} s; "
                                    f"max diff {err:.1e}"))
            del mat
        else:
            rows.append(Timing(f"Harsanyi transform n={n} (one sample)", ours,
                               "dense 2^n x 2^n mat-vec (official approach)", float("nan"),
                               note=f"not run: the matrix needs {need / 2**30:.1f} GiB "
                                    f"(> {DENSE_BUDGET_BYTES / 2**30:.0f} GiB budget; the "
                                    f"official code builds two)"))
        if shapiq is not None:
            vals = v.numpy()
            shifts = torch.arange(n).numpy()

            def game(coal, vals=vals, shifts=shifts):
                return vals[(coal.astype("int64") << shifts).sum(1)]

            def run_shapiq(game=game, n=n):
                return shapiq.ExactComputer(game, n_players=n)("Moebius", order=n)

            t0 = time.perf_counter()
            iv = run_shapiq()
            sq = time.perf_counter() - t0
            ref = torch.zeros_like(v)
            for players, val in iv.dict_values.items():
                ref[sum(1 << p for p in players)] = val
            err = float((ref - harsanyi_and(v)).abs().max())
            rows.append(Timing(f"Harsanyi transform n={n} (one sample)", ours,
                               "shapiq ExactComputer('Moebius')", sq,
                               note=f"shapiq {_version('shapiq')}; one run; "
                                    f"max diff {err:.1e}"))
    return rows


def _masking_rows(n: int, repeat: int) -> list[Timing]:
    from dnnkit.core.models import small_cnn

    torch.manual_seed(0)
    model = small_cnn(1, 10, width=8, input_size=8).eval()
    x = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    groups = patch_players(8, 8, 2)[:n]
    ours = time_call(lambda: masked_outputs(model, x, players=groups, target=0,
                                            batch_size=1 << n), repeat=repeat)

    @torch.no_grad()
    def naive():
        out = []
        flat = x.reshape(-1)
        for mask in range(1 << n):
            xt = flat.clone()
            for i, grp in enumerate(groups):
                if not mask >> i & 1:
                    xt[grp] = 0.0
            out.append(torch.log_softmax(model(xt.reshape(1, 1, 8, 8)), -1)[0, 0])
        return torch.stack(out)

    loop = time_call(naive, repeat=1, warmup=0)
    k = 1 << n
    return [Timing(f"masked forwards n={n} ({k} inputs, small CNN on 8x8)", ours,
                   "one forward per mask (Python loop)", loop,
                   note=f"{k / ours:,.0f} vs {k / loop:,.0f} masked inputs/s")]


def _official_sgd(v: torch.Tensor, iters: int, lr: float = 1e-5) -> None:
    """SGD (momentum 0.9) on gamma and eps through dense AND / OR matrices, as in the official
    code (written here from the paper's definitions)."""
    n = v.shape[-1].bit_length() - 1
    a = dense_moebius_matrix(n)
    o = -a.flip(1)  # OR map: -M applied to the complement game, I_or(empty) = v(empty)
    o[0] = 0.0
    o[0, 0] = 1.0
    g = torch.zeros_like(v, requires_grad=True)
    e = torch.zeros_like(v, requires_grad=True)
    opt = torch.optim.SGD([g, e], lr=lr, momentum=0.9)
    tau = 0.02 * float((v[-1] - v[0]).abs())
    for _ in range(iters):
        with torch.no_grad():
            e.clamp_(-tau, tau)
        half = 0.5 * (v + e)
        loss = (a @ (half + g)).abs().sum() + (o @ (half - g)).abs().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _extraction_rows(quick: bool) -> list[Timing]:
    n = 10
    steps = 3000
    g = torch.Generator().manual_seed(0)
    v1 = torch.randn(1 << n, dtype=torch.float64, generator=g)
    vb = torch.randn(50, 1 << n, dtype=torch.float64, generator=g)
    ours = time_call(lambda: extract_interactions(v1, steps=steps), repeat=1, warmup=0)
    batched = time_call(lambda: extract_interactions(vb, steps=steps if not quick else 300),
                        repeat=1, warmup=0) / 50 * (1 if not quick else steps / 300)
    iters = 100 if quick else 400
    t0 = time.perf_counter()
    _official_sgd(v1, iters)
    official = (time.perf_counter() - t0) * 20000 / iters
    note = f"official: {iters} iterations timed, scaled to 20,000"
    return [Timing(f"extraction n={n}, 1 sample, Adam {steps} steps", ours,
                   "dense-matrix SGD, 20,000 iterations (official recipe)", official, note=note),
            Timing(f"extraction n={n}, per sample in a batch of 50", batched,
                   "dense-matrix SGD, 20,000 iterations (official recipe)", official,
                   note=note + ("; batch timed with 300 steps, scaled" if quick else ""))]


@register_bench("interactions")
def bench(quick: bool = False) -> list[Timing]:
    ns = (8, 10) if quick else (8, 10, 12, 14)
    rows = _transform_rows(ns, repeat=3 if quick else 5)
    rows += _masking_rows(8 if quick else 10, repeat=3)
    rows += _extraction_rows(quick)
    return rows
