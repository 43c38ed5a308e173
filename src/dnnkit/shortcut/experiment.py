"""Reproduction of WCST-ML on generated coloured dSprites (Scimeca et al. 2022) at CPU scale.

Parts: (A) cue preference with colour, shape, scale, orientation over several seeds; (B) the
order among the black-and-white cues (colour fixed to white), reported with its seed spread;
(C) colour- and orientation-forced solutions and the sphere test; (D) the complexity proxy;
(E) protocol checks with a hand-written colour reader (exact chance references).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dnnkit.core.registry import RunContext, register
from dnnkit.core.report import Claim, Result, Table
from dnnkit.core.training import fit
from dnnkit.shortcut.measures import basin_rerun, cue_preference, kc_proxy, sphere_flatness
from dnnkit.shortcut.protocol import WCSTSplits, augmented_training_set, make_wcst_ml
from dnnkit.shortcut.sources import DSpritesSource

CUES = ("color", "shape", "scale", "orientation")
BW_CUES = ("shape", "scale", "orientation")


@dataclass(frozen=True)
class Config:
    size: int = 32
    n_train: int = 2000
    n_test: int = 600
    seeds: int = 3
    epochs: int = 4
    bw_epochs: int = 6
    bw_seeds: int = 5
    forced_epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    width: int = 16
    sphere_radii: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
    sphere_dirs: int = 20
    sphere_samples: int = 500
    kc_bases: int = 60
    mlp_seeds: int = 3
    mlp_epochs: int = 3
    rerun_radii: tuple[float, ...] = (4.0, 12.0, 24.0)
    rerun_dirs: int = 2
    rerun_epochs: int = 1

    @classmethod
    def quick(cls) -> Config:
        return cls(n_train=600, n_test=300, seeds=2, epochs=3, bw_epochs=2, bw_seeds=1,
                   forced_epochs=3, sphere_radii=(2.0, 6.0, 12.0, 24.0), sphere_dirs=4,
                   sphere_samples=200, kc_bases=8, mlp_seeds=2, mlp_epochs=2,
                   rerun_radii=(12.0,), rerun_dirs=1)


def cnn(n_levels: int = 3, width: int = 16, in_channels: int = 3) -> nn.Sequential:
    """The reproduction's small CNN: strided 5x5 conv, two 3x3 convs, global average pool."""
    w = width
    return nn.Sequential(
        nn.Conv2d(in_channels, w, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4 * w, n_levels))


def mlp(n_levels: int = 3, size: int = 32, hidden: int = 128) -> nn.Sequential:
    """A second architecture: a two-layer perceptron on the flattened RGB image."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_levels))


def color_reader(x: torch.Tensor) -> torch.Tensor:
    """Hand-written colour cue reader: argmax of the per-channel pixel sums (R, G, B = 0, 1, 2)."""
    return x.sum((2, 3)).argmax(1)


def reader_scores(splits: WCSTSplits) -> dict[str, float]:
    """Accuracy of :func:`color_reader` on every off-diagonal set (colour levels = R, G, B)."""
    return {c: float((color_reader(d.x) == d.y).float().mean()) for c, d in splits.offdiag.items()}


def _pref_table(title: str, res, splits: WCSTSplits) -> Table:
    fin = res.final()
    ranking = res.ranking()
    rows = []
    for c in res.cues:
        ch = splits.chance[c]
        rows.append([c, ranking.index(c) + 1, float(fin[c].mean()), float(fin[c].min()),
                     float(fin[c].max()), ", ".join(f"{v:.3f}" for v in fin[c]),
                     f"{ch[0]:.3f} / {ch[1]:.3f}", res.adoption()[c]])
    rows.sort(key=lambda r: r[1])
    return Table(title, ["cue", "rank", "mean final off-diag acc", "min over seeds",
                         "max over seeds", "per seed", "chance (1/L / other cue)",
                         "adoption rate"], rows)


def _plot_curves(ax, res, title: str) -> None:
    ep = np.arange(1, res.acc[res.cues[0]].shape[1] + 1)
    for c in res.cues:
        a = res.acc[c]
        line = ax.plot(ep, a.mean(0), marker="o", label=c)[0]
        ax.fill_between(ep, a.min(0), a.max(0), color=line.get_color(), alpha=0.2)
    ch = res.chance[res.cues[0]]
    ax.axhline(ch[0], ls="--", c="gray", lw=1, label="1/L")
    ax.axhline(ch[1], ls=":", c="black", lw=1, label="other-cue chance")
    ax.set(title=title, xlabel="epoch", ylabel="off-diagonal accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7)


@register("shortcut",
          paper="Scimeca, Oh, Chun, Poli, Yun 2022, 'Which Shortcut Cues Will DNNs Choose? A Study "
                "from the Parameter-Space Perspective', ICLR (arXiv:2110.03095)",
          claim="On WCST-ML dSprites a CNN adopts colour first in every seed; the colour solution "
                "is flatter than the orientation solution and colour has the lowest complexity",
          config=Config)
def run(cfg: Config, ctx: RunContext) -> Result:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_start = time.perf_counter()
    src = DSpritesSource(size=cfg.size)
    seeds = tuple(ctx.seed + i for i in range(cfg.seeds))
    model_fn = lambda: cnn(3, cfg.width).to(ctx.device)

    # (E) protocol check on a larger test set whose size is a multiple of L^K - L = 78
    check = make_wcst_ml(src, CUES, n_train=3, n_val=0, n_test=780, seed=ctx.seed + 100)
    rs = reader_scores(check)
    other_chance = check.chance["shape"][1]
    reader_err = max(abs(rs[c] - other_chance) for c in CUES if c != "color")

    # (A) cue preference with colour
    splits = make_wcst_ml(src, CUES, n_train=cfg.n_train, n_val=cfg.n_test // 2,
                          n_test=cfg.n_test, seed=ctx.seed)
    pref = cue_preference(model_fn, splits, epochs=cfg.epochs, lr=cfg.lr,
                          batch_size=cfg.batch_size, seeds=seeds, progress=ctx.progress)
    mlp_seeds = tuple(ctx.seed + 40 + i for i in range(cfg.mlp_seeds))
    pref_mlp = cue_preference(lambda: mlp(3, cfg.size).to(ctx.device), splits,
                              epochs=cfg.mlp_epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                              seeds=mlp_seeds, progress=ctx.progress)
    fin = pref.final()
    fin_mlp = pref_mlp.final()
    orders = pref.orders() + pref_mlp.orders()
    color_first = sum(o[0] == "color" for o in orders)
    color_min = min(float(fin["color"].min()), float(fin_mlp["color"].min()))
    others_max = max(max(float(fin[c].max()), float(fin_mlp[c].max())) for c in CUES
                     if c != "color")

    # (B) order among black-and-white cues (colour fixed to white)
    bw = make_wcst_ml(src, BW_CUES, n_train=cfg.n_train, n_val=cfg.n_test // 2,
                      n_test=cfg.n_test, fixed={"color": [3]}, seed=ctx.seed + 1)
    bw_seeds = tuple(ctx.seed + 10 + i for i in range(cfg.bw_seeds))
    pref_bw = cue_preference(model_fn, bw, epochs=cfg.bw_epochs, lr=cfg.lr,
                             batch_size=cfg.batch_size, seeds=bw_seeds, progress=ctx.progress)
    bw_orders = pref_bw.orders()
    bw_order_counts: dict[str, int] = {}
    for o in bw_orders:
        key = " > ".join(o)
        bw_order_counts[key] = bw_order_counts.get(key, 0) + 1

    # (C) forced solutions and the sphere test
    sphere, forced_acc, forced_loss, reruns = {}, {}, {}, {}
    radii = np.asarray(cfg.sphere_radii)
    for cue in ("color", "orientation"):
        aug = augmented_training_set(splits, cue, n=cfg.n_train, seed=ctx.seed + 7)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed + 20)
            model = model_fn()
        hist = fit(model, aug.x, aug.y, epochs=cfg.forced_epochs, lr=cfg.lr,
                   batch_size=cfg.batch_size, seed=ctx.seed + 20)
        forced_loss[cue] = hist.loss[-1]
        d = splits.offdiag[cue]
        with torch.no_grad():
            forced_acc[cue] = float((model(d.x.to(ctx.device)).argmax(1).cpu() == d.y)
                                    .float().mean())
        sub = (splits.train.x[: cfg.sphere_samples], splits.train.y[: cfg.sphere_samples])
        sphere[cue] = sphere_flatness(model, sub, radii, n_dirs=cfg.sphere_dirs,
                                      seed=ctx.seed + 30)
        reruns[cue] = basin_rerun(model, splits, cfg.rerun_radii, n_dirs=cfg.rerun_dirs,
                                  epochs=cfg.rerun_epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                                  seed=ctx.seed + 50)
    mc, mo = sphere["color"].mean(1), sphere["orientation"].mean(1)
    mid = (np.maximum(mc, mo) >= 0.05) & (np.minimum(mc, mo) <= 2.0)
    ratio_mid = float(np.median(mc[mid] / mo[mid])) if mid.any() else float("nan")
    n_lower = int((mc[mid] < mo[mid]).sum())
    flatter = bool(mid.any() and ratio_mid < 1.0)

    # (D) complexity proxy
    kc = {comp: kc_proxy(splits, compressor=comp, n_bases=cfg.kc_bases, seed=ctx.seed)
          for comp in ("lzma", "zlib", "bz2")}
    kc_lowest = {comp: min(v, key=v.get) for comp, v in kc.items()}

    # figures
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    _plot_curves(axes[0], pref, "CNN: colour, shape, scale, orientation")
    _plot_curves(axes[1], pref_mlp, "MLP: colour, shape, scale, orientation")
    _plot_curves(axes[2], pref_bw, "CNN: black-and-white cues (colour fixed)")
    fig.tight_layout()
    fig.savefig(ctx.path("offdiag_curves.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for cue, dl in sphere.items():
        q1, q3 = np.percentile(dl, [25, 75], axis=1)
        line = ax.plot(radii, np.maximum(dl.mean(1), 1e-9), marker="o",
                       label=f"{cue}-forced solution")[0]
        ax.fill_between(radii, np.maximum(q1, 1e-9), np.maximum(q3, 1e-9),
                        color=line.get_color(), alpha=0.2)
    ax.axhspan(0.05, 2.0, color="gray", alpha=0.1, label="mid band [0.05, 2]")
    ax.set(xscale="log", yscale="log", xlabel="radius r", ylabel="mean loss increase",
           title="sphere test (loss on diagonal training data)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ctx.path("sphere_test.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.8))
    wbar = 0.27
    for i, comp in enumerate(kc):
        ax.bar(np.arange(len(CUES)) + (i - 1) * wbar, [kc[comp][c] for c in CUES], wbar,
               label=comp)
    ax.set(xticks=range(len(CUES)), xticklabels=CUES, ylabel="extra compressed bytes",
           title="complexity proxy per cue")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ctx.path("complexity.png"), dpi=110)
    plt.close(fig)

    seconds = time.perf_counter() - t_start
    claims = [
        Claim.holds("hand-written colour reader: 1.0 on O_color, other-cue chance on the rest",
                    rs["color"] == 1.0 and reader_err < 1e-6,
                    measured=f"O_color {rs['color']:.3f}; max |acc - {other_chance:.4f}| on others"
                             f" {reader_err:.2e}", expected="1.0 and exact chance",
                    paper="protocol (Sec. 2)"),
        Claim.holds("colour adopted first in every seed (CNN and MLP)",
                    color_first == len(orders),
                    measured=f"{color_first}/{len(orders)} runs", expected="all runs",
                    paper="colour preferred on DSprites, across architectures"),
        Claim.at_least("colour off-diagonal accuracy (min over seeds and architectures)",
                       color_min, 0.85, paper="near-perfect (recalled)"),
        Claim.at_most("other cues' off-diagonal accuracy (max over seeds, cues, architectures)",
                      others_max, 0.45, paper="near chance (recalled)"),
        Claim.holds("colour-forced solution flatter than orientation-forced at mid radii",
                    flatter, measured=f"median ratio {ratio_mid:.3g}; colour lower at {n_lower}"
                                      f"/{int(mid.sum())} mid radii",
                    expected="median delta-loss ratio colour/orientation < 1 over the radii "
                             "where a delta-loss lies in [0.05, 2]",
                    paper="easy cues: flatter minima"),
        Claim.holds("colour has the lowest complexity proxy (lzma)", kc_lowest["lzma"] == "color",
                    measured=", ".join(f"{c} {v:.1f}" for c, v in kc["lzma"].items()),
                    expected="colour lowest", paper="preferred cues have low KC"),
    ]
    tables = [
        _pref_table("Cue preference with colour, CNN (final-epoch off-diagonal accuracy)", pref,
                    splits),
        _pref_table("Cue preference with colour, MLP (final-epoch off-diagonal accuracy)",
                    pref_mlp, splits),
        _pref_table("Order among black-and-white cues (colour fixed to white)", pref_bw, bw),
        Table("Orders of the black-and-white cues over seeds", ["order", "seeds"],
              [[k, v] for k, v in sorted(bw_order_counts.items(), key=lambda kv: -kv[1])]),
        Table("Sphere test: mean loss increase (std) at radius r",
              ["r", "colour-forced", "orientation-forced", "mid radius"],
              [[float(r), f"{mc[i]:.4g} ({sphere['color'][i].std():.2g})",
                f"{mo[i]:.4g} ({sphere['orientation'][i].std():.2g})", bool(mid[i])]
               for i, r in enumerate(radii)]),
        Table("Forced solutions", ["forced cue", "final train loss", "own off-diag accuracy"],
              [[c, forced_loss[c], forced_acc[c]] for c in forced_loss]),
        Table("Radius re-run: fraction of re-trained solutions adopting each cue "
              f"({cfg.rerun_dirs} directions, {cfg.rerun_epochs} epoch on the diagonal set)",
              ["start", "r", *CUES],
              [[f"{c}-forced", r, *(fr[k] for k in CUES)] for c, rr in reruns.items()
               for r, fr in rr.items()]),
        Table("Complexity proxy (extra compressed bytes)", ["cue", *kc],
              [[c, *(kc[comp][c] for comp in kc)] for c in CUES]),
        Table("Colour reader on off-diagonal sets (780 samples each)", ["cue", "accuracy",
                                                                          "expected"],
              [[c, rs[c], 1.0 if c == "color" else other_chance] for c in CUES]),
    ]
    metrics = {
        "offdiag_final": {c: fin[c].tolist() for c in CUES},
        "offdiag_final_mlp": {c: fin_mlp[c].tolist() for c in CUES},
        "offdiag_curves": {c: pref.acc[c].tolist() for c in CUES},
        "val_acc": pref.val_acc.tolist(),
        "ranking": pref.ranking(), "orders": orders,
        "bw_final": {c: v.tolist() for c, v in pref_bw.final().items()},
        "bw_orders": bw_orders, "bw_ranking": pref_bw.ranking(),
        "bw_val_acc": pref_bw.val_acc[:, -1].tolist(),
        "sphere_radii": radii.tolist(),
        "sphere_mean": {c: v.mean(1).tolist() for c, v in sphere.items()},
        "rerun": {c: {str(r): fr for r, fr in rr.items()} for c, rr in reruns.items()},
        "forced_offdiag_acc": forced_acc, "forced_train_loss": forced_loss,
        "kc": kc, "reader": rs, "chance": splits.chance["shape"], "seconds": seconds,
    }
    return Result(
        summary=("WCST-ML on procedurally generated coloured dSprites: a CNN trained on the "
                 "diagonal set (every cue predicts the label) and tested on one off-diagonal set "
                 "per cue; parameter-space explanations via the sphere test on cue-forced "
                 "solutions and a compressor-based complexity proxy."),
        setup=(f"{cfg.size}x{cfg.size} RGB dSprites, cues {', '.join(CUES)}, L = 3 levels "
               f"(balanced binning), {cfg.n_train} diagonal training images, {cfg.n_test} per "
               f"off-diagonal set (uniform non-diagonal level combinations); small CNN "
               f"(width {cfg.width}), Adam lr {cfg.lr}, batch {cfg.batch_size}, {cfg.epochs} "
               f"epochs x {cfg.seeds} seeds, and an MLP (hidden 128) {cfg.mlp_epochs} epochs x "
               f"{cfg.mlp_seeds} seeds; BW order: {cfg.bw_epochs} epochs x {cfg.bw_seeds} "
               f"seeds; forced solutions: diagonal + {cfg.n_train} off-diagonal samples, "
               f"{cfg.forced_epochs} epochs; sphere test {cfg.sphere_dirs} directions x "
               f"{len(radii)} radii on {cfg.sphere_samples} training images; radius re-run "
               f"{cfg.rerun_dirs} directions x {len(cfg.rerun_radii)} radii; KC proxy over "
               f"{cfg.kc_bases} bases."),
        claims=claims, metrics=metrics, tables=tables,
        figures=["offdiag_curves.png", "sphere_test.png", "complexity.png"],
        deviations=[
            ("Paper: ResNet-20 / ViT / FFNet on 64x64 dSprites, batch 500, 120 epochs, seed 123; "
            "here a small CNN and a two-layer MLP on 32x32 generated sprites for a few epochs "
            "(CPU budget)."),
            ("The real dSprites file cannot be downloaded here; sprites are rendered procedurally "
            "(our rasteriser, not DeepMind's). Loaders for the real .npz and UTKFace exist in "
            "dnnkit.shortcut.loaders."),
            ("Off-diagonal sets use uniform non-diagonal level combinations (exact chance "
            "references), not the official code's dataset-weighted sampling."),
            ("The order among shape, scale and orientation is reported with its seed spread, not "
            "asserted: at this budget it is noisy (the paper recalls scale > shape > orientation)."),
            ("Sphere test with few directions and radii scaled to this small CNN (paper: 100 "
            "directions, r = 6..300 for ResNet-20); KC is our compressor proxy, not the paper's "
            "estimator."),
            ("The orientation-forced solution does not converge at this budget (orientation is "
            "only identifiable on hearts; its final training loss and own off-diagonal accuracy "
            "are in the 'Forced solutions' table), so the sphere test compares a converged colour "
            "solution with an unconverged orientation one; at the largest radii, where the "
            "colour solution's loss leaves its near-zero minimum, the per-radius order can flip "
            "(see the sphere table). The claim uses the median ratio over mid radii."),
            ("Abundance: adoption rate over the few seeds of part A, and a small radius re-run "
            "(few directions, one epoch of re-training) instead of the paper's 100 random "
            "initialisations and 30 radii; reported, not asserted."),
        ],
        oracle=(f"hand-written colour reader: {rs['color']:.3f} on O_color and "
                f"{min(v for c, v in rs.items() if c != 'color'):.4f}-"
                f"{max(v for c, v in rs.items() if c != 'color'):.4f} on the others (analytic "
                f"{other_chance:.4f}); KC from stdlib lzma/zlib/bz2"),
    )
