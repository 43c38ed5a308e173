"""Reproduction: a Heston surrogate (accuracy, no-arbitrage, speed), an architecture sweep,
calibration to a QuantLib-generated market (surrogate-in-the-loop and inverse map), and a
Black-Scholes up-and-out barrier surrogate (spec section 5, experiments P1 and P3)."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from dnnkit.core.registry import RunContext, register
from dnnkit.core.report import Claim, Result, Table
from dnnkit.options import ql_reference as qlr
from dnnkit.options.calibration import InverseCalibrator, calibrate
from dnnkit.options.data import Box, PricingDataset, Quotes, default_box, generate_dataset
from dnnkit.options.exotics import barrier_price
from dnnkit.options.pricers import price_european
from dnnkit.options.surrogate import SurrogatePricer, evaluate, sweep

log = logging.getLogger("dnnkit")

TRUE_PARAMS = (0.04, 1.5, 0.06, 0.5, -0.6)      # synthetic market (v0, kappa, theta, sigma, rho)
MARKET_M = tuple(np.round(np.linspace(0.85, 1.15, 9), 4).tolist())
MARKET_DAYS = (30, 91, 182, 365, 730)
MARKET_R = 0.02


@dataclass(frozen=True)
class Config:
    n_train: int = 100_000
    n_val: int = 10_000
    n_test: int = 20_000
    label_terms: int = 384          # COS terms for training labels (test labels: 768)
    label_L: float = 20.0
    depth: int = 4
    width: int = 64
    activation: str = "elu"
    baseline: str = "heston_bs"
    lr: float = 3e-3
    batch_size: int = 512
    train_budget_s: float = 45.0
    sweep_train: int = 30_000
    sweep_budget_s: float = 2.5
    sweep_activations: tuple[str, ...] = ("relu", "elu", "softplus", "tanh")
    n_speed: int = 10_000
    n_speed_ql: int = 500
    oracle_draws: int = 50
    calib_starts: int = 8
    inverse_surfaces: int = 1500
    inverse_budget_s: float = 6.0
    barrier_n: int = 30_000
    barrier_budget_s: float = 8.0
    vg_n: int = 30_000
    vg_budget_s: float = 8.0
    r2_min: float = 0.9999
    rmse_max: float = 1e-3
    arb_min: float = 0.99
    speed_min: float = 100.0
    v0_tol: float = 0.005
    rho_tol: float = 0.1
    reprice_mult: float = 3.0

    @classmethod
    def quick(cls) -> Config:
        return cls(n_train=10_000, n_val=2_000, n_test=3_000, label_terms=256, label_L=16.0,
                   train_budget_s=3.5, sweep_train=4_000, sweep_budget_s=0.4,
                   sweep_activations=("relu", "elu"), n_speed=1_000, n_speed_ql=30,
                   oracle_draws=5, calib_starts=4, inverse_surfaces=200, inverse_budget_s=0.7,
                   barrier_n=3_000, barrier_budget_s=0.6, vg_n=3_000, vg_budget_s=0.6,
                   r2_min=0.999, rmse_max=3e-3, arb_min=0.95, speed_min=10.0, v0_tol=0.02,
                   rho_tol=0.4, reprice_mult=5.0)


def _market(pricer_available: bool):
    """45 call quotes (9 strikes x 5 maturities, spot 100) from QuantLib's analytic Heston
    engine, or from our COS pricer when QuantLib is missing."""
    m = np.tile(np.array(MARKET_M), len(MARKET_DAYS))
    d = np.repeat(np.array(MARKET_DAYS), len(MARKET_M))
    contracts = torch.tensor(np.c_[m, d / 365.0, np.full(m.size, MARKET_R), np.zeros(m.size)])
    if pricer_available:
        px = qlr.ql_heston(100.0, m * 100.0, d, MARKET_R, 0.0, np.array(TRUE_PARAMS)) / (m * 100)
        src = "QuantLib AnalyticHestonEngine"
    else:
        px = price_european("heston", torch.tensor([TRUE_PARAMS]), contracts).numpy()
        src = "dnnkit COS (QuantLib not installed)"
    return Quotes(contracts, torch.tensor(px)), m, d, src


def _arbitrage_fraction(net: SurrogatePricer, box: Box, n_sets: int, seed: int) -> dict:
    """Share of adjacent grid pairs where the surrogate call is non-increasing in strike and
    non-decreasing in maturity (q = 0), over random in-box parameter sets."""
    p = box.sample(n_sets, "sobol", seed)[:, :5]
    ms = torch.linspace(0.8, 1.2, 41, dtype=torch.float64)
    ts = torch.linspace(0.05, 2.0, 20, dtype=torch.float64)
    M, T = torch.meshgrid(ms, ts, indexing="ij")
    ok_k = ok_t = tot_k = tot_t = 0
    with torch.no_grad():
        for i in range(n_sets):
            r = float(box.low[7] + 0.5 * (box.high[7] - box.low[7]))
            c = torch.stack([M.flatten(), T.flatten(), torch.full_like(M.flatten(), r),
                             torch.zeros_like(M.flatten())], 1)
            X = torch.cat([p[i].expand(c.shape[0], -1), c], 1)
            C = (net(X) * M.flatten()).reshape(M.shape)   # C / S: monotone in K and tau
            dk = C[1:] - C[:-1]
            dt = C[:, 1:] - C[:, :-1]
            ok_k += int((dk <= 0).sum())
            ok_t += int((dt >= 0).sum())
            tot_k += dk.numel()
            tot_t += dt.numel()
    return {"strike": ok_k / tot_k, "maturity": ok_t / tot_t,
            "all": (ok_k + ok_t) / (tot_k + tot_t), "pairs": tot_k + tot_t}


def _median_time(fn, repeat: int = 5) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _barrier_pricer(params: torch.Tensor, contracts: torch.Tensor) -> torch.Tensor:
    return barrier_price(params[:, 0], contracts, params[:, 1], "up-out", "call")


@register("options", paper="Karatas, Oskoui, Hirsa 2019, Supervised DNNs for Pricing/Calibration "
          "of Vanilla/Exotic Options Under Various Different Processes (arXiv:1902.05810)",
          claim="an MLP trained on reference prices reprices Heston calls with R^2 >= 0.9999 and "
                "C/K RMSE < 1e-3, orders of magnitude faster than the pricer, and calibrates",
          config=Config)
def run(cfg: Config, ctx: RunContext) -> Result:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = ctx.seed
    have_ql = qlr.available()
    metrics: dict = {"threads": torch.get_num_threads(), "quantlib": have_ql}
    tables: list[Table] = []
    claims: list[Claim] = []
    deviations = [
        ("The paper's tables, parameter ranges and architectures were not available (spec "
         "section 0); boxes, sizes and the 4x64 ELU network are our CPU-scale choices."),
        (f"The network predicts a correction to a Black-Scholes price at the Heston mean "
         f"variance (baseline='{cfg.baseline}', a control variate); the direct price map of the "
         "paper is the 'none' row of the sweep table."),
        (f"Training labels use COS with fewer terms (N={cfg.label_terms}, L={cfg.label_L}); "
         "test labels use the default N=768, L=24 (the spec's N=512 left up to 1.1e-6 per unit "
         "spot vs QuantLib on 10,000 random draws; N=768 gives 4e-8)."),
        ("Timings are wall-clock on a shared 2-core machine; speed ratios compare both sides in "
         "the same process. QuantLib's per-option time is measured on a subset and scaled."),
        ("Time budgets are wall-clock: on a loaded machine training gets fewer epochs, so the "
         "accuracy printed here is a lower bound of what the same config reaches alone."),
    ]
    box = default_box("heston")

    # ---- oracle spot check: COS labels vs QuantLib ------------------------------------------
    oracle_txt = "QuantLib not installed: oracle check skipped."
    if have_ql and cfg.oracle_draws > 0:
        X = box.sample(cfg.oracle_draws, "uniform", seed + 7)
        d = qlr.days(X[:, 6].numpy())
        X[:, 6] = torch.tensor(d / 365.0)
        ours = price_european("heston", X[:, :5], X[:, 5:]).numpy() * X[:, 5].numpy()
        ref = qlr.ql_heston(1.0, X[:, 5].numpy(), d, X[:, 7].numpy(), X[:, 8].numpy(),
                            X[:, :5].numpy())
        err = float(np.abs(ours - ref).max())
        metrics["oracle_max_abs_per_spot"] = err
        oracle_txt = (f"COS (N=768, L=24) vs QuantLib AnalyticHestonEngine on {cfg.oracle_draws} "
                      f"random in-box draws: max |diff| = {err:.2e} per unit spot.")
        claims.append(Claim.at_most("COS label pricer vs QuantLib (per unit spot)", err, 1e-6))

    # ---- data ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    full = generate_dataset("heston", cfg.n_train + cfg.n_val, box=box, seed=seed,
                            n_terms=cfg.label_terms, L=cfg.label_L)
    train, val = full.split((cfg.n_train / len(full), 1 - cfg.n_train / len(full)), seed=seed)
    test = generate_dataset("heston", cfg.n_test, box=box, seed=seed + 1)
    metrics["label_seconds"] = time.perf_counter() - t0
    metrics["n_clipped"] = full.meta["n_clipped"] + test.meta["n_clipped"]

    # ---- main surrogate -----------------------------------------------------------------------
    net = SurrogatePricer(box, depth=cfg.depth, width=cfg.width, activation=cfg.activation,
                          baseline=cfg.baseline)
    hist = net.fit(train, val, lr=cfg.lr, batch_size=cfg.batch_size, epochs=100_000,
                   time_budget_s=cfg.train_budget_s, early_stopping=100_000, seed=seed)
    ev = evaluate(net, test)
    metrics.update({"train_epochs": hist["epochs"], "train_seconds": hist["seconds"],
                    "test": {k: v for k, v in ev.items() if not isinstance(v, list)}})
    claims.append(Claim("Heston surrogate test R^2", f">= {cfg.r2_min}", f"{ev['r2']:.7f}",
                        bool(ev["r2"] >= cfg.r2_min),
                        paper="MSE and R^2 reported; values unreadable"))
    claims.append(Claim.at_most("Heston surrogate test RMSE of C/K", ev["rmse"], cfg.rmse_max))
    rows = [["all", ev["rmse"], ev["mae"], ev["max_abs"], f"{ev['r2']:.7f}", ev["n"]]]
    rows += [[lab, r, "", "", "", n] for lab, r, n in ev["rmse_by_moneyness"]]
    rows += [[lab, r, "", "", "", n] for lab, r, n in ev["rmse_by_maturity"]]
    tables.append(Table("Heston surrogate accuracy on the fresh test set (C/K)",
                        ["slice", "RMSE", "MAE", "max abs", "R^2", "n"], rows))

    # persistence round trip
    path = ctx.path("heston_surrogate.safetensors")
    net.save(path)
    back = SurrogatePricer.load(path)
    with torch.no_grad():
        same = float((back(test.X[:1000]) - net(test.X[:1000])).abs().max())
    claims.append(Claim.holds("saved surrogate (safetensors) reloads to identical prices",
                              same == 0.0, measured=same, expected="max diff 0"))

    # error vs moneyness figure
    with torch.no_grad():
        err = (net(test.X) - test.y).numpy()
    m_col, tau_col = test.X[:, 5].numpy(), test.X[:, 6].numpy()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    sc = ax[0].scatter(m_col, err, c=tau_col, s=2, cmap="viridis", alpha=0.5)
    fig.colorbar(sc, ax=ax[0], label="tau (years)")
    ax[0].set_xlabel("moneyness K/S")
    ax[0].set_ylabel("surrogate - COS (C/K)")
    ax[0].set_title("Error vs moneyness")
    edges = np.linspace(0.8, 1.2, 17)
    for lo_t, hi_t, lab in ((0.05, 0.25, "tau<0.25"), (0.25, 1.0, "0.25-1"), (1.0, 2.0, ">1")):
        sel = (tau_col >= lo_t) & (tau_col < hi_t + 1e-9)
        rm = [np.sqrt(np.mean(err[sel & (m_col >= a) & (m_col < b)] ** 2))
              if np.any(sel & (m_col >= a) & (m_col < b)) else np.nan
              for a, b in itertools.pairwise(edges)]
        ax[1].plot(0.5 * (edges[:-1] + edges[1:]), rm, marker="o", label=lab)
    ax[1].set_xlabel("moneyness K/S")
    ax[1].set_ylabel("RMSE (C/K)")
    ax[1].set_title("Binned RMSE by maturity")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(ctx.path("error_vs_moneyness.png"), dpi=110)
    plt.close(fig)
    figures = ["error_vs_moneyness.png"]

    # ---- no-arbitrage sanity ------------------------------------------------------------------
    arb = _arbitrage_fraction(net, box, 50 if cfg.n_train >= 50_000 else 10, seed)
    metrics["no_arbitrage"] = arb
    claims.append(Claim.at_least("monotone in strike and maturity (share of grid pairs)",
                                 arb["all"], cfg.arb_min))

    # ---- architecture sweep (the paper's empirical search) -----------------------------------
    sub = PricingDataset(train.X[:cfg.sweep_train], train.y[:cfg.sweep_train], box, train.meta)
    vsub = PricingDataset(val.X[:5000], val.y[:5000], box, val.meta)
    grid = {"activation": list(cfg.sweep_activations), "depth": [2, 4]}
    rows_sw = sweep(sub, vsub, grid, time_budget_s=cfg.sweep_budget_s, baseline=cfg.baseline,
                    seed=seed)
    direct = sweep(sub, vsub, {"activation": [cfg.activation], "depth": [cfg.depth]},
                   time_budget_s=cfg.sweep_budget_s, baseline="none", seed=seed)[0]
    same_cfg = next(r for r in rows_sw if r["activation"] == cfg.activation
                    and r["depth"] == cfg.depth)
    tables.append(Table(f"Sweep: {cfg.sweep_budget_s:g} s per run, {len(sub)} training rows, "
                        "validation RMSE (C/K)",
                        ["activation", "depth", "baseline", "val RMSE", "epochs"],
                        [[r["activation"], r["depth"], cfg.baseline, r["val_rmse"], r["epochs"]]
                         for r in rows_sw]
                        + [[direct["activation"], direct["depth"], "none (direct map)",
                            direct["val_rmse"], direct["epochs"]]]))
    metrics["sweep"] = rows_sw
    metrics["sweep_direct"] = direct
    metrics["sweep_ranking"] = [f"{r['activation']}/{r['depth']}" for r in rows_sw]
    top = rows_sw[0]
    deviations.append(
        f"Sweep at {cfg.sweep_budget_s:g} s per run: best was {top['activation']}/depth "
        f"{top['depth']} ({top['epochs']} epochs). The spec expected smooth activations to win "
        "at equal budget; with budgets this short the ranking mostly reflects epochs per second "
        "and is not a claim about the paper's (unreadable) ranking.")
    claims.append(Claim.holds(
        "BS control-variate head beats the direct price map at equal budget",
        same_cfg["val_rmse"] < direct["val_rmse"],
        measured=f"{same_cfg['val_rmse']:.2e} vs {direct['val_rmse']:.2e}",
        expected="lower val RMSE"))

    # ---- speed --------------------------------------------------------------------------------
    Xs = box.sample(cfg.n_speed, "uniform", seed + 3)
    Xs[:, 6] = torch.tensor(qlr.days(Xs[:, 6].numpy()) / 365.0)
    Xs32 = Xs.float()
    with torch.no_grad():
        t_nn = _median_time(lambda: net(Xs))
        t_nn32 = _median_time(lambda: net(Xs32))
    t0 = time.perf_counter()
    ref_cos = price_european("heston", Xs[:, :5], Xs[:, 5:])
    t_cos = time.perf_counter() - t0
    speed_rows = [[f"surrogate {cfg.depth}x{cfg.width}, float64 features", t_nn,
                   cfg.n_speed / t_nn],
                  ["surrogate, float32 features", t_nn32, cfg.n_speed / t_nn32],
                  ["dnnkit COS (vectorised, N=768)", t_cos, cfg.n_speed / t_cos]]
    metrics["speed"] = {"n": cfg.n_speed, "surrogate_s": t_nn, "surrogate32_s": t_nn32,
                        "cos_s": t_cos}
    if have_ql:
        k = cfg.n_speed_ql
        t0 = time.perf_counter()
        qlp = qlr.ql_heston(1.0, Xs[:k, 5].numpy(), qlr.days(Xs[:k, 6].numpy()),
                            Xs[:k, 7].numpy(), Xs[:k, 8].numpy(), Xs[:k, :5].numpy())
        t_ql = (time.perf_counter() - t0) * cfg.n_speed / k
        speed_rows.append([(f"QuantLib AnalyticHestonEngine, one engine per parameter set "
                            f"(timed on {k}, scaled)"), t_ql, cfg.n_speed / t_ql])
        metrics["speed"]["quantlib_s_scaled"] = t_ql
        metrics["speed"]["ratio_vs_quantlib"] = t_ql / t_nn
        metrics["speed"]["cos_vs_quantlib_max_abs"] = float(np.abs(
            ref_cos[:k].numpy() * Xs[:k, 5].numpy() - qlp).max())
        claims.append(Claim.at_least("surrogate speed-up over QuantLib (x)", t_ql / t_nn,
                                     cfg.speed_min, paper="'exponentially faster'"))
    metrics["speed"]["ratio_vs_cos"] = t_cos / t_nn
    tables.append(Table(f"Pricing {cfg.n_speed} Heston calls (threads={torch.get_num_threads()})",
                        ["pricer", "seconds", "options / s"], speed_rows))

    # ---- calibration (route A through the surrogate; QuantLib LM as anchor) ------------------
    quotes, mk, dk, src = _market(have_ql)
    res = calibrate(net, quotes, method="lm", n_starts=cfg.calib_starts, seed=seed,
                    reference="heston")
    rep_rmse = float(res.reference_rmse)
    truth = torch.tensor(TRUE_PARAMS, dtype=torch.float64)
    perr = (res.params - truth).abs()
    cal_rows = [["truth", *TRUE_PARAMS, 0.0, "", ""],
                ["surrogate + LM (8 starts)" if cfg.calib_starts == 8 else
                 f"surrogate + LM ({cfg.calib_starts} starts)", *res.params.tolist(), rep_rmse,
                 res.wall_s, res.n_evals]]
    metrics["calibration"] = {**res.as_dict(), "market": src,
                              "param_abs_err": dict(zip(res.names, perr.tolist()))}
    claims.append(Claim.at_most("calibrated surface repriced by COS: RMSE / surrogate test RMSE",
                                rep_rmse / ev["rmse"], cfg.reprice_mult))
    claims.append(Claim.at_most("|v0 - true v0|", float(perr[0]), cfg.v0_tol))
    claims.append(Claim.at_most("|rho - true rho|", float(perr[4]), cfg.rho_tol))
    if have_ql:
        qres = qlr.ql_heston_calibrate(100.0, mk * 100, dk, np.full(mk.size, MARKET_R),
                                       np.zeros(mk.size), quotes.prices.numpy() * mk * 100)
        q_rep = price_european("heston", torch.tensor([qres["params"]]), quotes.contracts)
        q_rmse = float(torch.sqrt(torch.mean((q_rep - quotes.prices) ** 2)))
        cal_rows.append(["QuantLib HestonModel + LevenbergMarquardt", *qres["params"], q_rmse,
                         qres["wall_s"], ""])
        metrics["calibration"]["quantlib"] = {**qres, "reprice_rmse_cos": q_rmse}

    # ---- route B: inverse map -------------------------------------------------------------------
    pbox = Box(box.names[:5], box.low[:5], box.high[:5])
    inv = InverseCalibrator(quotes.contracts, pbox, depth=3, width=128)
    t0 = time.perf_counter()
    ih = inv.fit(lambda p, c: price_european("heston", p, c, n_terms=cfg.label_terms,
                                             L=cfg.label_L),
                 cfg.inverse_surfaces, time_budget_s=cfg.inverse_budget_s, seed=seed)
    t_inv_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    pinv = inv.predict(quotes.prices)[0]
    t_inv = time.perf_counter() - t0
    rep_inv = price_european("heston", pinv.unsqueeze(0), quotes.contracts)
    inv_rmse = float(torch.sqrt(torch.mean((rep_inv - quotes.prices) ** 2)))
    cal_rows.append([f"inverse network ({ih['n_surfaces']} surfaces)", *pinv.tolist(), inv_rmse,
                     t_inv, 1])
    metrics["inverse"] = {"params": pinv.tolist(), "reprice_rmse_cos": inv_rmse,
                          "predict_s": t_inv, "train_s": t_inv_train, "epochs": ih["epochs"]}
    tables.append(Table(f"Calibration to 45 quotes from {src} (repricing RMSE under COS, C/K)",
                        ["route", *box.names[:5], "reprice RMSE", "wall s", "pricer calls"],
                        cal_rows))

    # ---- P3: BS up-and-out barrier surrogate --------------------------------------------------
    if cfg.barrier_n > 0:
        bbox = Box(("sigma", "h", "m", "tau", "r", "q"),
                   torch.tensor([0.05, 1.05, 0.8, 0.05, 0.0, 0.0]),
                   torch.tensor([0.5, 1.5, 1.2, 2.0, 0.05, 0.0]))
        bds = generate_dataset(_barrier_pricer, cfg.barrier_n, box=bbox, seed=seed + 5)
        btr, bva, bte = bds.split((0.8, 0.1, 0.1), seed=seed)
        bnet = SurrogatePricer(bbox, depth=cfg.depth, width=cfg.width, activation=cfg.activation)
        bnet.fit(btr, bva, lr=cfg.lr, batch_size=cfg.batch_size, epochs=100_000,
                 time_budget_s=cfg.barrier_budget_s, early_stopping=100_000, seed=seed)
        bev = evaluate(bnet, bte, m_edges=(1.0,))
        metrics["barrier"] = {k: v for k, v in bev.items() if not isinstance(v, list)}
        tables.append(Table("BS up-and-out call surrogate (closed-form labels, C/K)",
                            ["n train", "RMSE", "MAE", "max abs", "R^2"],
                            [[len(btr), bev["rmse"], bev["mae"], bev["max_abs"],
                              f"{bev['r2']:.5f}"]]))
        if have_ql:
            xs = bte.X[:20]
            qb = [qlr.ql_barrier(1.0, float(x[2]), float(x[1]), int(qlr.days(float(x[3]))),
                                 float(x[4]), float(x[5]), float(x[0]), "up-out")
                  for x in xs]
            xs2 = xs.clone()
            xs2[:, 3] = torch.tensor(qlr.days(xs[:, 3].numpy()) / 365.0)
            ob = _barrier_pricer(xs2[:, :2], xs2[:, 2:]).numpy() * xs2[:, 2].numpy()
            bdiff = float(np.abs(ob - np.array(qb)).max())
            metrics["barrier"]["closed_form_vs_quantlib"] = bdiff
            oracle_txt += (f" Barrier closed form vs QuantLib AnalyticBarrierEngine on 20 test "
                           f"rows: max |diff| = {bdiff:.1e} per unit spot.")

    # ---- P2: Variance Gamma surrogate (gamma-mixture labels) ---------------------------------
    if cfg.vg_n > 0:
        vbox = default_box("vg")
        vds = generate_dataset("vg", cfg.vg_n, box=vbox, seed=seed + 6)
        vtr, vva, vte = vds.split((0.8, 0.1, 0.1), seed=seed)
        vnet = SurrogatePricer(vbox, depth=cfg.depth, width=cfg.width, activation=cfg.activation,
                               baseline="vg_bs")
        vnet.fit(vtr, vva, lr=cfg.lr, batch_size=cfg.batch_size, epochs=100_000,
                 time_budget_s=cfg.vg_budget_s, early_stopping=100_000, seed=seed)
        vev = evaluate(vnet, vte)
        metrics["vg"] = {k: v for k, v in vev.items() if not isinstance(v, list)}
        tables.append(Table("Variance Gamma surrogate (gamma-mixture labels, vg_bs baseline, C/K)",
                            ["n train", "RMSE", "MAE", "max abs", "R^2"],
                            [[len(vtr), vev["rmse"], vev["mae"], vev["max_abs"],
                              f"{vev['r2']:.6f}"]]))

    summary = (f"Heston surrogate ({cfg.depth}x{cfg.width} {cfg.activation}, {cfg.baseline} "
               f"baseline) trained {hist['seconds']:.0f} s on {len(train)} COS-labelled calls: "
               f"test RMSE {ev['rmse']:.2e}, R^2 {ev['r2']:.6f}; "
               f"{metrics['speed'].get('ratio_vs_quantlib', float('nan')):.0f}x faster than "
               "QuantLib's analytic engine; calibration to a QuantLib market through the "
               f"surrogate reprices at RMSE {rep_rmse:.2e}.")
    setup = (f"Box: {box.as_dict()}. Labels: COS N={cfg.label_terms} (train/val), N=768 (test). "
             f"Adam lr {cfg.lr} decayed to 1% over a {cfg.train_budget_s:g} s budget, batch "
             f"{cfg.batch_size}. Synthetic market: true parameters {TRUE_PARAMS}, strikes "
             f"K/S {MARKET_M}, maturities {MARKET_DAYS} days, r={MARKET_R}.")
    return Result(summary=summary, claims=claims, metrics=metrics, tables=tables,
                  figures=figures, setup=setup, deviations=deviations, oracle=oracle_txt)
