"""Bandwidth estimator, deadline-aware controller and closed-loop simulation."""

from __future__ import annotations

import numpy as np
import pytest

from dnnkit.slimsplit import (
    BandwidthEstimator,
    ModeController,
    ModeStats,
    bandwidth_trace,
    simulate_stream,
)

TABLE = {(k, b): ModeStats(0.5 + 0.1 * b + 0.01 * k, 100 * b, 10.0 * k)
         for k in range(1, 5) for b in range(1, 5)}


def _brute(table, bw, deadline, safety=0.8, server=0.0):
    t = {m: s.encoder_ms + 1e3 * s.payload_bytes / bw + server for m, s in table.items()}
    ok = [m for m in table if t[m] < safety * deadline]
    if ok:
        return max(ok, key=lambda m: (table[m].accuracy, -table[m].encoder_ms)), True
    return min(table, key=lambda m: t[m]), False


@pytest.mark.parametrize("bw", [2e3, 1e4, 4e4, 1e5, 1e6])
@pytest.mark.parametrize("deadline", [20.0, 60.0, 100.0])
def test_select_matches_brute_force(bw, deadline):
    c = ModeController(TABLE, server_ms=3.0)
    ch = c.select(bw, deadline)
    mode, feasible = _brute(TABLE, bw, deadline, server=3.0)
    assert ch.mode == mode and ch.feasible == feasible
    assert ch.predicted_ms == pytest.approx(c.predict_ms(mode, bw))
    if feasible:
        assert ch.predicted_ms < 0.8 * deadline


def test_nothing_fits_gives_cheapest_and_flag():
    ch = ModeController(TABLE).select(100.0, 5.0)
    assert not ch.feasible and ch.mode == (1, 1)


def test_ema_estimator():
    est = BandwidthEstimator(alpha=0.4, initial_Bps=1000.0)
    assert est.update(500, 0.25) == pytest.approx(0.4 * 2000 + 0.6 * 1000)
    for _ in range(60):
        est.update(300, 1.0)
    assert est.estimate == pytest.approx(300.0)


def test_closed_loop_tracks_phases_and_meets_deadlines():
    bw = bandwidth_trace(400, high_Bps=1e5, low_Bps=1.5e4, period=50, noise=0.05, seed=0)
    c = ModeController(TABLE)
    tr = simulate_stream(c, bw, 60.0)
    high = (np.arange(400) // 50) % 2 == 0
    assert tr.hit_rate >= 0.9
    assert tr.accuracy[high].mean() > tr.accuracy[~high].mean()
    assert np.all(tr.latency_ms[tr.met] <= 60.0)
    tr2 = simulate_stream(c, bw, 60.0)
    assert np.array_equal(tr.k, tr2.k) and np.array_equal(tr.bits, tr2.bits)


def test_trace_is_seeded_square_wave():
    a = bandwidth_trace(100, high_Bps=10.0, low_Bps=1.0, period=10, noise=0.0)
    assert np.all(a[:10] == 10.0) and np.all(a[10:20] == 1.0)
    assert np.array_equal(bandwidth_trace(50, high_Bps=2.0, low_Bps=1.0, seed=4),
                          bandwidth_trace(50, high_Bps=2.0, low_Bps=1.0, seed=4))


def test_bad_input():
    c = ModeController(TABLE)
    with pytest.raises(ValueError, match="'bandwidth_Bps' parameter"):
        c.select(0.0, 10.0)
    with pytest.raises(ValueError, match="'deadline_ms' parameter"):
        c.select(1e3, -1.0)
    with pytest.raises(ValueError, match="'table' parameter.*non-empty"):
        ModeController({})
    missing = {m: s for m, s in TABLE.items() if m != (2, 3)}
    with pytest.raises(ValueError, match=r"'table' parameter.*missing \[\(2, 3\)\]"):
        ModeController(missing, required_modes=list(TABLE))
    with pytest.raises(TypeError, match="'table' parameter"):
        ModeController({(1, 1): (0.5, 10, 1.0)})
    with pytest.raises(ValueError, match="'safety' parameter"):
        ModeController(TABLE, safety=1.5)
    with pytest.raises(ValueError, match="'alpha' parameter"):
        BandwidthEstimator(alpha=0.0)
    with pytest.raises(ValueError, match="'seconds' parameter"):
        BandwidthEstimator().update(10, 0.0)
    with pytest.raises(ValueError, match="'bandwidth_Bps' parameter"):
        simulate_stream(c, [1e3, -1.0], 10.0)
    with pytest.raises(ValueError, match="'deadline_ms' parameter"):
        simulate_stream(c, [1e3], float("nan"))
