"""ABR substrate: simulator closed forms, determinism, baselines vs direct re-implementations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dnnkit.netllm import (
    BBA,
    ABREnv,
    RateBased,
    RobustMPC,
    Trace,
    VideoSizes,
    evaluate_abr,
    linear_qoe,
    load_traces,
    synthetic_traces,
)
from dnnkit.netllm.abr import mpc_plans, run_episode

KBPS = (300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0)


def const_env(mbps=2.0, size=500_000.0, chunks=10):
    tr = Trace(np.arange(0, 1000.0), np.full(1000, mbps))
    video = VideoSizes(np.full((6, chunks), size))
    return ABREnv([tr], video), tr, video


def test_constant_trace_closed_form():
    mbps, size = 2.0, 500_000.0
    env, _, _ = const_env(mbps, size)
    obs = env.reset(0, offset=1)
    # delay = size / (bw * 0.95) + RTT, exactly (trace samples are 1 s, bytes split across them)
    delay_ms = size / (mbps * 1e6 / 8 * 0.95) * 1000 + 80.0
    assert obs["buffer_s"] == pytest.approx(4.0)        # first chunk: buffer 0 -> 4 s
    expected_buf = 4.0
    for _ in range(5):
        obs, r, done, info = env.step(1)
        assert info["delay_ms"] == pytest.approx(delay_ms, rel=1e-9)
        rebuf = max(delay_ms / 1000 - expected_buf, 0.0)
        assert info["rebuffer_s"] == pytest.approx(rebuf, abs=1e-9)
        expected_buf = max(expected_buf - delay_ms / 1000, 0.0) + 4.0
        assert info["buffer_s"] == pytest.approx(expected_buf, rel=1e-9)
        assert r == pytest.approx(linear_qoe(750.0, rebuf, 750.0))
        thr = size / delay_ms / 1000
        assert obs["throughput"][-1] == pytest.approx(thr, rel=1e-6)
        assert obs["download_time"][-1] == pytest.approx(delay_ms / 1000 / 10, rel=1e-6)


def test_buffer_capped_at_60s_by_sleeping():
    env, _, _ = const_env(mbps=50.0, size=10_000.0, chunks=40)
    env.reset(0, offset=1)
    sleeps = []
    for _ in range(30):
        _, _, _, info = env.step(0)
        assert info["buffer_s"] <= 60.0 + 1e-9
        sleeps.append(info["sleep_ms"])
    assert max(sleeps) > 0 and all(s % 500 == 0 for s in sleeps)


def test_rebuffer_when_bandwidth_is_low():
    env, _, _ = const_env(mbps=0.3, size=1_000_000.0)
    env.reset(0, offset=1)
    _, r, _, info = env.step(5)
    assert info["rebuffer_s"] > 0
    assert r == pytest.approx(4.3 - 4.3 * info["rebuffer_s"] - (4300 - 750) / 1000)


def test_deterministic_without_noise_and_noisy_with():
    v = VideoSizes.synthetic(seed=7)
    tr = synthetic_traces(3, seed=1)
    a = evaluate_abr(RobustMPC(v), ABREnv(tr, v))
    b = evaluate_abr(RobustMPC(v), ABREnv(tr, v))
    assert a == b
    e1, e2 = ABREnv(tr, v, train_noise=True, seed=0), ABREnv(tr, v, train_noise=True, seed=1)
    l1, l2 = run_episode(BBA(), e1, 0, offset=1), run_episode(BBA(), e2, 0, offset=1)
    assert l1.rewards != l2.rewards


def test_trace_wraps_around():
    tr = Trace(np.array([0.0, 5.0, 10.0]), np.array([1.0, 1.0, 1.0]))
    env = ABREnv([tr], VideoSizes(np.full((6, 48), 400_000.0)))
    log = run_episode(BBA(), env, 0, offset=1)
    assert len(log.levels) == 47 and all(np.isfinite(log.rewards))


def bba_rule(buf):
    if buf < 5:
        return 0
    if buf >= 15:
        return 5
    return int(5 * (buf - 5) / 10)


def test_bba_matches_rule_on_random_buffers():
    rng = np.random.default_rng(0)
    p = BBA()
    for b in np.concatenate([rng.uniform(0, 30, 500), [0, 5, 15, 4.999, 14.999]]):
        assert p.act({"buffer_s": float(b)}) == bba_rule(b)


def mpc_reference(hist, buffer_s, last_level, chunk, sizes, errors, ests, max_jump=None):
    """Direct loop re-implementation of Pensieve's robust MPC (spec 2.5)."""
    cur = hist[-1]
    err = abs(ests[-1] - cur) / cur if ests else 0.0
    errors.append(err)
    past = hist[-5:]
    hm = len(past) / sum(1 / x for x in past)
    ests.append(hm)
    bw = hm / (1 + max(errors[-5:]))
    h = min(5, sizes.shape[1] - chunk)
    best, best_r = None, -math.inf
    for plan in itertools.product(range(6), repeat=h):
        if max_jump is not None and any(abs(plan[i + 1] - plan[i]) > max_jump
                                        for i in range(h - 1)):
            continue
        buf, rebuf, br, sm, last = buffer_s, 0.0, 0.0, 0.0, last_level
        for k, q in enumerate(plan):
            dl = sizes[q, chunk + k] / 1e6 / bw
            rebuf += max(dl - buf, 0)
            buf = max(buf - dl, 0) + 4
            br += KBPS[q]
            sm += abs(KBPS[q] - KBPS[last])
            last = q
        r = br / 1000 - 4.3 * rebuf - sm / 1000
        if r > best_r:
            best, best_r = plan, r
    return best, best_r


@pytest.mark.parametrize("max_jump", [None, 1])
def test_robust_mpc_matches_direct_enumeration(max_jump):
    rng = np.random.default_rng(1)
    video = VideoSizes.synthetic(seed=3)
    p = RobustMPC(video, max_jump=max_jump)
    errors, ests = [], []
    hist = []
    for step in range(12):
        hist.append(float(rng.uniform(0.05, 1.0)))
        obs = {"throughput_hist": list(hist), "buffer_s": float(rng.uniform(0, 20)),
               "last_level": int(rng.integers(6)), "chunk_index": 40 + step % 8}
        a = p.act(obs)
        plan, best_r = mpc_reference(hist, obs["buffer_s"], obs["last_level"],
                                     obs["chunk_index"], video.sizes, errors, ests, max_jump)
        # same bandwidth state; chosen plan has the maximal value (ties may pick another plan)
        plans, r = p.plan_rewards(ests[-1] / (1 + max(errors[-5:])), obs["buffer_s"],
                                  obs["last_level"], obs["chunk_index"])
        assert r.max() == pytest.approx(best_r, abs=1e-9)
        assert a == plan[0] or r[[i for i, q in enumerate(plans) if q[0] == a]].max() \
            == pytest.approx(best_r, abs=1e-9)


def test_mpc_plans_max_jump_rule():
    full = mpc_plans(6, 3)
    assert len(full) == 216
    j1 = mpc_plans(6, 3, max_jump=1)
    ref = [p for p in itertools.product(range(6), repeat=3)
           if all(abs(p[i + 1] - p[i]) <= 1 for i in range(2))]
    assert [tuple(x) for x in j1] == ref


def test_rate_based_picks_highest_sustainable_level():
    p = RateBased()
    # 2000 kbps = 0.25 kB/ms
    assert p.act({"throughput_hist": [0.25] * 5}) == 3
    assert p.act({"throughput_hist": [0.01] * 5}) == 0


def test_baselines_order_on_synthetic_traces():
    v = VideoSizes.synthetic(seed=7)
    env = ABREnv(synthetic_traces(8, seed=2), v)
    q = {type(p).__name__: evaluate_abr(p, env)["qoe"] for p in (BBA(), RobustMPC(v))}
    assert q["RobustMPC"] > q["BBA"]


def test_trace_validation():
    with pytest.raises(ValueError, match="times_s"):
        Trace(np.array([0.0, 2.0, 1.0, 8.0]), np.ones(4))
    with pytest.raises(ValueError, match="mbps"):
        Trace(np.arange(10.0), np.zeros(10))
    with pytest.raises(ValueError, match="times_s"):
        Trace(np.array([0.0, 1.0]), np.ones(2))
    with pytest.raises(ValueError, match="sizes"):
        VideoSizes(np.ones((5, 48)))


def test_load_cooked_and_mahimahi(tmp_path):
    (tmp_path / "a_cooked").write_text("0.0 1.5\n1.0 2.5\n2.0 3.0\n6.0 1.0\n")
    # Mahimahi: 1500-byte opportunities; 100 per second for 6 s -> 1.2 Mbps
    ms = [int(i * 10) for i in range(600)]
    (tmp_path / "b_mahimahi").write_text("\n".join(map(str, ms)) + "\n")
    trs = load_traces(tmp_path)
    assert [t.name for t in trs] == ["a_cooked", "b_mahimahi"]
    np.testing.assert_allclose(trs[0].mbps, [1.5, 2.5, 3.0, 1.0])
    np.testing.assert_allclose(trs[1].mbps, np.full(6, 1.2))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x").write_text("0 1\n1 2\n0.5 1\n")
    with pytest.raises(ValueError, match="strictly increasing"):
        load_traces(tmp_path / "bad")


def test_video_sizes_from_files(tmp_path):
    paths = []
    for i, b in enumerate(KBPS):
        p = tmp_path / f"video_size_{i}"
        p.write_text("\n".join(str(int(b * 500 + k)) for k in range(5)))
        paths.append(p)
    v = VideoSizes.from_files(paths)
    assert v.sizes.shape == (6, 5) and v.sizes[2, 1] == 1200 * 500 + 1
    (tmp_path / "video_size_5").write_text("1\n2\n")
    with pytest.raises(ValueError, match="paths"):
        VideoSizes.from_files(paths)
