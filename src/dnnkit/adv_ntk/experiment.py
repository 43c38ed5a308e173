"""Reproduction: AT degeneration along the kernel-GD path and Adv-NTK on 8x8 digits (CPU scale)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from dnnkit.adv_ntk.attacks import robust_accuracy
from dnnkit.adv_ntk.kernels import KernelSpec
from dnnkit.adv_ntk.predict import AdvNTK
from dnnkit.adv_ntk.train import fit_adv_ntk
from dnnkit.core.data import load_digits_split
from dnnkit.core.progress import track
from dnnkit.core.registry import RunContext, register
from dnnkit.core.report import Claim, Result, Table
from dnnkit.core.seeding import make_rng


@dataclass(frozen=True)
class Config:
    n_opt: int = 300              # D_opt: the kernel predictors' training set
    n_val: int = 100              # D_val: Adv-NTK learns varpi on PGD examples of it
    n_test: int = 500
    depth: int = 3                # ReLU MLP-3, as MLP-x in the paper
    w_std: float = 1.76
    b_std: float = 0.18
    eps: float = 0.2              # L-inf radius on [-0.5, 0.5] pixels (~3 of 16 grey levels)
    pgd_steps: int = 10
    path: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
    adv_steps: int = 30
    adv_batch: int = 64
    adv_lr: float = 0.1
    eval_every: int = 10
    n_seeds: int = 2              # data permutations ctx.seed, ctx.seed + 1, ...

    @classmethod
    def quick(cls) -> Config:
        return cls(n_test=300, path=(1e-3, 1e-2, 0.1, 1.0, 10.0), adv_steps=30, eval_every=30,
                   n_seeds=1)


def _data(seed: int, cfg: Config, device: torch.device):
    split = load_digits_split(test_fraction=0.3, seed=seed, flat=True)
    rng = make_rng(seed)
    tr = torch.from_numpy(rng.permutation(len(split.y_train)))
    te = torch.from_numpy(rng.permutation(len(split.y_test)))
    if cfg.n_opt + cfg.n_val > len(tr) or cfg.n_test > len(te):
        raise ValueError(f"n_opt + n_val must be <= {len(tr)} and n_test <= {len(te)} on digits.")
    x = (split.x_train.double() - 0.5).to(device)   # pixels in [-0.5, 0.5], as the paper's data
    y = split.y_train.to(device)
    xt = (split.x_test.double() - 0.5).to(device)
    yt = split.y_test.to(device)
    o, v, t = tr[:cfg.n_opt], tr[cfg.n_opt:cfg.n_opt + cfg.n_val], te[:cfg.n_test]
    return x[o], y[o], x[v], y[v], xt[t], yt[t]


def _one_seed(seed: int, cfg: Config, ctx: RunContext) -> dict:
    spec = KernelSpec(depth=cfg.depth, w_std=cfg.w_std, b_std=cfg.b_std)
    xo, yo, xv, yv, xt, yt = _data(seed, cfg, ctx.device)
    alpha = 2.5 * cfg.eps / cfg.pgd_steps
    attack = {"eps": cfg.eps, "steps": cfg.pgd_steps, "alpha": alpha, "clip": (-0.5, 0.5)}

    def evaluate(model: AdvNTK, tag: int) -> tuple[float, float]:
        return robust_accuracy(model, xt, yt, generator=1000 * seed + tag, **attack)

    out: dict = {"seed": seed}
    both = AdvNTK(torch.cat([xo, xv]), torch.cat([yo, yv]), spec, varpi=math.inf, num_classes=10)
    out["inf_all"] = evaluate(both, 1)
    out["inf_opt"] = evaluate(AdvNTK(xo, yo, spec, varpi=math.inf, num_classes=10), 2)
    out["path"] = []
    for i, s in enumerate(track(cfg.path, enabled=ctx.progress, description=f"GD path {seed}")):
        model = AdvNTK(xo, yo, spec, varpi=float(s), num_classes=10, trainable=False)
        out["path"].append((float(s), *evaluate(model, 10 + i)))

    curve = []

    def on_step(step: int, model: AdvNTK) -> dict | None:
        if step % cfg.eval_every and step != cfg.adv_steps:
            return None
        model.varpi.requires_grad_(False)
        try:
            clean, robust = evaluate(model, 100 + step)
        finally:
            model.varpi.requires_grad_(True)
        curve.append((step, clean, robust))
        return {"test_clean": clean, "test_robust": robust}

    t0 = time.perf_counter()
    model, hist = fit_adv_ntk(xo, yo, spec, x_val=xv, y_val=yv, num_classes=10,
                              steps=cfg.adv_steps, batch_size=cfg.adv_batch, lr=cfg.adv_lr,
                              eps=cfg.eps, pgd_steps=cfg.pgd_steps, pgd_alpha=alpha,
                              clip=(-0.5, 0.5), seed=seed, on_step=on_step)
    out["adv_seconds"] = time.perf_counter() - t0
    out["adv_curve"] = curve
    out["adv_final"] = curve[-1][1:] if curve else (float("nan"), float("nan"))
    out["varpi_norm"] = hist[-1]["varpi_norm"] if hist else 0.0
    out["varpi_mean_abs"] = hist[-1]["varpi_mean_abs"] if hist else 0.0
    return out


def _figure(runs: list[dict], cfg: Config, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    for k, r in enumerate(runs):
        s = [p[0] for p in r["path"]]
        ax.plot(s, [p[2] for p in r["path"]], "o-", color=f"C{k}", label=f"robust, seed {r['seed']}")
        ax.plot(s, [p[1] for p in r["path"]], "s--", color=f"C{k}", alpha=0.5,
                label=f"clean, seed {r['seed']}")
        ax.axhline(r["inf_opt"][1], color=f"C{k}", ls=":", lw=1)
        ax.axhline(r["adv_final"][1], color=f"C{k}", ls="-.", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("ϖ = lr · t (kernel gradient-flow time)")
    ax.set_ylabel(f"test accuracy (PGD-{cfg.pgd_steps}, ε={cfg.eps})")
    ax.set_title("AT degeneration along the NTK training path\n(dotted: t=∞, dash-dot: Adv-NTK)")
    ax.legend(fontsize=7)
    ax = axes[1]
    for k, r in enumerate(runs):
        st = [c[0] for c in r["adv_curve"]]
        ax.plot(st, [c[2] for c in r["adv_curve"]], "o-", color=f"C{k}", label=f"robust, seed {r['seed']}")
        ax.plot(st, [c[1] for c in r["adv_curve"]], "s--", color=f"C{k}", alpha=0.5,
                label=f"clean, seed {r['seed']}")
        ax.axhline(r["inf_all"][1], color=f"C{k}", ls=":", lw=1)
    ax.set_xlabel("Adv-NTK step")
    ax.set_title("Adv-NTK (dotted: NTK t=∞ on D_opt ∪ D_val, robust)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@register("adv_ntk",
          paper="Fu & Wang 2024, ICLR (arXiv:2310.06112), 'Theoretical Analysis of Robust "
                "Overfitting for Wide DNNs: An NTK Approach'",
          claim="Robust accuracy of the infinite-width net peaks then decays along the training "
                "path (AT degeneration); Adv-NTK makes the infinite-width net robust",
          config=Config, num_threads=1)
def run(cfg: Config, ctx: RunContext) -> Result:
    # num_threads=1: the work is many small element-wise kernels and <= 400 x 400 linear algebra;
    # OpenMP threads spinning on a shared 2-core machine made it 6x slower (measured).
    runs = [_one_seed(ctx.seed + i, cfg, ctx) for i in range(cfg.n_seeds)]

    def mean(f) -> float:
        return float(np.mean([f(r) for r in runs]))

    mean_curve = np.mean([[p[2] for p in r["path"]] for r in runs], axis=0)
    peak_at = int(np.argmax(mean_curve))
    tail = mean_curve[peak_at:]
    max_rise = float(np.max(np.diff(tail))) if len(tail) > 1 else 0.0
    first = sum(int(np.argmax([p[2] for p in r["path"]])) == 0 for r in runs)
    peak, end = float(mean_curve[peak_at]), float(mean_curve[-1])
    inf_opt_rob = mean(lambda r: r["inf_opt"][1])
    inf_all_rob = mean(lambda r: r["inf_all"][1])
    inf_all_clean = mean(lambda r: r["inf_all"][0])
    adv_clean = mean(lambda r: r["adv_final"][0])
    adv_rob = mean(lambda r: r["adv_final"][1])
    best_early = peak
    ratio = adv_rob / max(inf_all_rob, 1e-12)

    claims = [
        Claim.at_least("GD path: peak robust acc - robust acc at largest ϖ", peak - end, 0.10,
                       paper="robust accuracy decays with training time (AT degeneration)"),
        Claim.at_most("GD path: largest rise of the seed-mean robust curve after its peak "
                      f"(peak at ϖ = {cfg.path[peak_at]:g})", max_rise, 0.02,
                      paper="robustness gained early fades as training goes on"),
        Claim.at_most("|robust acc at largest ϖ - robust acc of NTK t=∞|",
                      abs(end - inf_opt_rob), 0.03,
                      paper="AT solution converges to the no-AT predictor as t -> ∞"),
        Claim.at_least("Adv-NTK robust acc / NTK t=∞ robust acc", ratio, 1.5,
                       paper="plain NTK has very low robust accuracy; Adv-NTK robustifies it"),
        Claim.at_least("Adv-NTK clean accuracy", adv_clean, 0.80,
                       paper="comparable clean accuracy"),
    ]
    rows = []
    for r in runs:
        rows.append([r["seed"], f"NTK t=∞ (D_opt ∪ D_val, {cfg.n_opt + cfg.n_val})",
                     r["inf_all"][0], r["inf_all"][1]])
        rows.append([r["seed"], f"NTK t=∞ (D_opt, {cfg.n_opt})", r["inf_opt"][0], r["inf_opt"][1]])
        for s, c, rb in r["path"]:
            rows.append([r["seed"], f"kernel GD, ϖ = {s:g}·1", c, rb])
        for st, c, rb in r["adv_curve"]:
            rows.append([r["seed"], f"Adv-NTK after {st} steps", c, rb])
    table = Table(f"Clean / PGD-{cfg.pgd_steps} robust test accuracy (ε = {cfg.eps}, "
                  f"{cfg.n_test} test digits)", ["seed", "predictor", "clean", "robust"], rows)
    _figure(runs, cfg, ctx.path("degeneration.png"))
    metrics = {
        "path_peak_robust": peak, "path_end_robust": end,
        "path_mean_robust_curve": [float(v) for v in mean_curve],
        "path_peak_varpi": float(cfg.path[peak_at]),
        "path_seeds_peaking_at_first_point": first,
        "path_peak_varpi_per_seed": [float(cfg.path[int(np.argmax([p[2] for p in r["path"]]))])
                                     for r in runs], "ntk_inf_opt_robust": inf_opt_rob,
        "ntk_inf_all_clean": inf_all_clean, "ntk_inf_all_robust": inf_all_rob,
        "advntk_clean": adv_clean, "advntk_robust": adv_rob, "advntk_over_ntk": ratio,
        "advntk_minus_best_early_stop": adv_rob - best_early,
        "varpi_norm": mean(lambda r: r["varpi_norm"]),
        "varpi_mean_abs": mean(lambda r: r["varpi_mean_abs"]),
        "advntk_seconds_per_step": mean(lambda r: r["adv_seconds"]) / max(cfg.adv_steps, 1),
    }
    return Result(
        summary=("The closed-form infinite-width predictor f_ϖ(x) = Θ(x,X)Θ⁻¹(I − e^{−Θ diag ϖ})Y "
                 "is evaluated along the plain kernel gradient-flow path ϖ = lr·t·1: its PGD robust "
                 "accuracy rises, peaks and decays to that of the t = ∞ (no-AT) kernel regressor. "
                 "Adv-NTK, which learns ϖ on PGD examples of a held-out split, keeps the early-"
                 "stopping robustness at good clean accuracy."),
        setup=(f"scikit-learn digits (8x8, pixels in [-0.5, 0.5]); per seed a fixed permutation: "
               f"D_opt = {cfg.n_opt}, D_val = {cfg.n_val}, test = {cfg.n_test}. Infinite-width ReLU "
               f"MLP-{cfg.depth} (w_std {cfg.w_std}, b_std {cfg.b_std}), NTK in float64. L∞ PGD-"
               f"{cfg.pgd_steps}, ε = {cfg.eps}, step 2.5ε/{cfg.pgd_steps}, random start, squared "
               f"loss. Adv-NTK: {cfg.adv_steps} steps, batch {cfg.adv_batch}, lr {cfg.adv_lr}, "
               f"GradNorm, ϖ₀ = 0 (+1 subgradient of |ϖ|). Seeds: "
               f"{[r['seed'] for r in runs]}; claims use the mean over seeds."),
        claims=claims,
        metrics=metrics,
        tables=[table],
        figures=["degeneration.png"],
        deviations=[
            ("Digits (1,797 8x8 images, 300 + 100 training points) instead of CIFAR-10/SVHN with "
             "10,000 + 2,000 points, ε = 0.2 instead of 8/255 (at ε = 0.1 the effect nearly "
             "vanishes on digits), Adv-NTK run for 30 instead of 50 steps."),
            ("Only the MLP-3 kernel is used here; the CNN kernel and other depths are checked "
             "against neural-tangents in the tests, not trained on."),
            ("PGD is the standard one (gradient at the current iterate, projection around the "
             "clean input); the official JAX PGD takes the gradient at the random start on every "
             "iteration, so the paper's NTK numbers come from a weaker attack."),
            ("The paper's numeric tables could not be retrieved; claims are the qualitative "
             "findings with ranges measured by an independent prototype."),
            ("The small-ϖ end of the path is not a chance-level predictor: as ϖ -> 0, "
             "f ≈ ϖ Θ(x, X) Y and argmax is scale-invariant, so it tends to the kernel mean "
             "classifier. Whether robust accuracy first rises along the path is therefore "
             f"seed-dependent (here {first} of {len(runs)} seeds peak at the first point); the "
             "claims check the decay after the peak and its size, not an initial rise."),
            "The finite-width AT curve of a wide MLP (optional in the issue) is not run.",
        ],
        oracle=("Kernels equal neural-tangents 0.6.5 kernel_fn (MLP depth 1-8, ReLU/erf, CNN "
                "depth 1-3) to <= 2e-13 and the closed-form predictor equals "
                "nt.predict.gradient_descent_mse at finite and infinite time to <= 4e-15 "
                "(tests/adv_ntk/test_oracle_nt.py asserts 1e-10)."),
    )
