"""QuantLib anchors for the oracle tests, the reproduction and the benchmark.

QuantLib (PyPI ``QuantLib``, the ``oracles`` extra) is imported lazily; nothing in the library
proper depends on it. Dates use Actual/365 Fixed and integer day counts, so ``tau = days / 365``
exactly (spec section 6): callers pass maturities that are whole days.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = [
    "available",
    "days",
    "ql_barrier",
    "ql_bs",
    "ql_heston",
    "ql_heston_calibrate",
    "ql_vg",
]


def available() -> bool:
    try:
        import QuantLib  # noqa: F401
    except ImportError:
        return False
    return True


def days(tau: np.ndarray) -> np.ndarray:
    """Whole days for maturities in years (``round(365 tau)``, at least 1)."""
    return np.maximum(1, np.rint(np.asarray(tau) * 365.0)).astype(int)


def _rows(strikes, d, r, q, params, p):
    strikes, d, r, q = np.broadcast_arrays(*(np.atleast_1d(np.asarray(x, dtype=float))
                                             for x in (strikes, d, r, q)))
    d = d.astype(int)
    params = np.broadcast_to(np.atleast_2d(np.asarray(params, dtype=float)), (len(strikes), p))
    return strikes, d, r, q, params


class _Env:
    def __init__(self):
        import QuantLib as ql

        self.ql = ql
        self.today = ql.Date(2, 1, 2024)
        ql.Settings.instance().evaluationDate = self.today
        self.dc = ql.Actual365Fixed()
        self.cal = ql.NullCalendar()

    def curve(self, rate: float):
        ql = self.ql
        return ql.YieldTermStructureHandle(ql.FlatForward(self.today, float(rate), self.dc))

    def option(self, strike: float, d: int, option: str, exercise_cls=None):
        ql = self.ql
        typ = ql.Option.Call if option == "call" else ql.Option.Put
        payoff = ql.PlainVanillaPayoff(typ, float(strike))
        ex = ql.EuropeanExercise(self.today + int(d))
        return payoff, ex


def ql_bs(spot, strikes, d, r, q, sigma, option: str = "call") -> np.ndarray:
    """``ql.blackFormula`` prices (discounted), one row per option."""
    import QuantLib as ql

    typ = ql.Option.Call if option == "call" else ql.Option.Put
    out = []
    for K, dd, rr, qq, s in np.broadcast(strikes, d, r, q, sigma):
        t = dd / 365.0
        fwd = spot * np.exp((rr - qq) * t)
        out.append(ql.blackFormula(typ, float(K), float(fwd), float(s * np.sqrt(t)),
                                   float(np.exp(-rr * t))))
    return np.array(out)


def ql_heston(spot, strikes, d, r, q, params, option: str = "call", *,
              rebuild: bool = True) -> np.ndarray:
    """AnalyticHestonEngine prices; with ``rebuild`` a process, model and engine per row (what a
    user does for a new parameter set). ``params`` rows are (v0, kappa, theta, sigma, rho)."""
    env = _Env()
    ql = env.ql
    strikes, d, r, q, params = _rows(strikes, d, r, q, params, 5)
    n = len(strikes)
    s0 = ql.QuoteHandle(ql.SimpleQuote(float(spot)))
    out = np.empty(n)
    for i in range(n):
        v0, kappa, theta, sigma, rho = map(float, params[i])
        proc = ql.HestonProcess(env.curve(r[i]), env.curve(q[i]), s0, v0, kappa, theta, sigma,
                                rho)
        engine = ql.AnalyticHestonEngine(ql.HestonModel(proc))
        payoff, ex = env.option(strikes[i], d[i], option)
        opt = ql.VanillaOption(payoff, ex)
        opt.setPricingEngine(engine)
        out[i] = opt.NPV()
    return out


def ql_vg(spot, strikes, d, r, q, params, option: str = "call") -> np.ndarray:
    """Analytic VarianceGammaEngine prices; ``params`` rows are (sigma, nu, theta)."""
    env = _Env()
    ql = env.ql
    strikes, d, r, q, params = _rows(strikes, d, r, q, params, 3)
    n = len(strikes)
    s0 = ql.QuoteHandle(ql.SimpleQuote(float(spot)))
    out = np.empty(n)
    for i in range(n):
        sigma, nu, theta = map(float, params[i])
        proc = ql.VarianceGammaProcess(s0, env.curve(q[i]), env.curve(r[i]), sigma, nu, theta)
        payoff, ex = env.option(strikes[i], d[i], option)
        opt = ql.VanillaOption(payoff, ex)
        opt.setPricingEngine(ql.VarianceGammaEngine(proc))
        out[i] = opt.NPV()
    return out


def ql_barrier(spot, strike, barrier, d, r, q, sigma, barrier_type: str,
               option: str = "call") -> float:
    """AnalyticBarrierEngine price (zero rebate); ``barrier_type`` like ``"up-out"``."""
    env = _Env()
    ql = env.ql
    bt = {"up-out": ql.Barrier.UpOut, "down-out": ql.Barrier.DownOut,
          "up-in": ql.Barrier.UpIn, "down-in": ql.Barrier.DownIn}[barrier_type]
    s0 = ql.QuoteHandle(ql.SimpleQuote(float(spot)))
    vol = ql.BlackVolTermStructureHandle(
        ql.BlackConstantVol(env.today, env.cal, float(sigma), env.dc))
    proc = ql.BlackScholesMertonProcess(s0, env.curve(q), env.curve(r), vol)
    payoff, ex = env.option(strike, d, option)
    opt = ql.BarrierOption(bt, float(barrier), 0.0, payoff, ex)
    opt.setPricingEngine(ql.AnalyticBarrierEngine(proc))
    return float(opt.NPV())


def ql_heston_calibrate(spot, strikes, d, r, q, prices, start=(0.05, 1.0, 0.05, 0.4, -0.5)
                        ) -> dict:
    """QuantLib's own Heston calibration (HestonModelHelper + Levenberg-Marquardt) to call
    prices; returns the parameters, the wall time and the repricing RMSE in price units."""
    env = _Env()
    ql = env.ql
    s0 = ql.QuoteHandle(ql.SimpleQuote(float(spot)))
    rc, qc = env.curve(float(np.mean(r))), env.curve(float(np.mean(q)))
    v0, kappa, theta, sigma, rho = map(float, start)
    t0 = time.perf_counter()
    proc = ql.HestonProcess(rc, qc, s0, v0, kappa, theta, sigma, rho)
    model = ql.HestonModel(proc)
    engine = ql.AnalyticHestonEngine(model)
    helpers = []
    for K, dd, p in zip(strikes, d, prices):
        t = dd / 365.0
        fwd = spot * np.exp((np.mean(r) - np.mean(q)) * t)
        disc = np.exp(-np.mean(r) * t)
        try:
            vol = ql.blackFormulaImpliedStdDev(ql.Option.Call, float(K), float(fwd), float(p),
                                               float(disc)) / np.sqrt(t)
        except RuntimeError:
            continue
        h = ql.HestonModelHelper(ql.Period(int(dd), ql.Days), env.cal, float(spot), float(K),
                                 ql.QuoteHandle(ql.SimpleQuote(float(vol))), rc, qc,
                                 ql.BlackCalibrationHelper.PriceError)
        h.setPricingEngine(engine)
        helpers.append(h)
    lm = ql.LevenbergMarquardt(1e-8, 1e-8, 1e-8)
    model.calibrate(helpers, lm, ql.EndCriteria(500, 50, 1e-8, 1e-8, 1e-8))
    wall = time.perf_counter() - t0
    th, ka, si, rh, v = (float(x) for x in model.params())
    err = [h.modelValue() - h.marketValue() for h in helpers]
    return {"params": [v, ka, th, si, rh], "wall_s": wall,
            "rmse": float(np.sqrt(np.mean(np.square(err)))), "n_helpers": len(helpers)}
