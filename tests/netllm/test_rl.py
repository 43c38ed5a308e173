"""Experience pool, returns-to-go, dataset windows, policy mechanics and the resumable trainer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from dnnkit.netllm import (
    BBA,
    ABREnv,
    ExperiencePool,
    MLPEncoder,
    MultimodalEncoder,
    NetLLMAgent,
    NetLLMPolicy,
    NetworkingHead,
    ReturnConditionedDataset,
    RobustMPC,
    ScalarEncoder,
    SeriesConv1dEncoder,
    Trajectory,
    VideoSizes,
    add_lora,
    discount_returns,
    evaluate_abr,
    load_backbone,
    synthetic_traces,
    train_offline_rl,
)
from dnnkit.netllm.abr import run_episode
from tests.conftest import need

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def official_discount_returns(rewards, gamma, scale):
    """The loop of the official NetLLM ``discount_returns`` (reference semantics)."""
    returns = [0.0] * len(rewards)
    returns[-1] = rewards[-1]
    for i in reversed(range(len(rewards) - 1)):
        returns[i] = rewards[i] + gamma * returns[i + 1]
    return [r / scale for r in returns]


@pytest.mark.parametrize("gamma,scale", [(1.0, 1000.0), (0.9, 1.0), (0.0, 10.0)])
def test_returns_to_go_reference(gamma, scale):
    r = np.random.default_rng(0).normal(size=37)
    ours = discount_returns(r, gamma, scale)
    np.testing.assert_allclose(ours.numpy(), official_discount_returns(list(r), gamma, scale),
                               rtol=1e-12)
    if gamma == 1.0:  # reverse cumulative sum
        np.testing.assert_allclose(ours.numpy(), np.cumsum(r[::-1])[::-1] / scale, rtol=1e-12)


@pytest.fixture(scope="module")
def pool():
    v = VideoSizes.synthetic(seed=7)
    env = ABREnv(synthetic_traces(4, seed=1), v, train_noise=True, seed=0)
    return ExperiencePool.collect(env, [RobustMPC(v), BBA()], 2, state_keys=["flat", "buffer"])


def test_pool_collect_save_load(pool, tmp_path):
    assert len(pool) == 4 and pool.steps == 4 * 47
    p = pool.save(tmp_path / "pool.safetensors")
    assert p.read_bytes()[:8]  # a safetensors file, no pickle
    back = ExperiencePool.load(p)
    assert len(back) == len(pool) and back.n_actions == 6
    for a, b in zip(pool.trajectories, back.trajectories):
        assert torch.equal(a.actions, b.actions) and torch.equal(a.rewards, b.rewards)
        assert torch.equal(a.states["flat"], b.states["flat"])


def test_dataset_normalisation_and_windows(pool):
    ds = ReturnConditionedDataset(pool, window=10, return_scale=10.0)
    allr = torch.cat([t.rewards for t in pool.trajectories]).double()
    lo, hi = allr.min(), allr.max()
    assert len(ds) == 4 * (47 - 10 + 1)
    item = ds[5]
    t0 = pool.trajectories[0]
    r = (t0.rewards.double() - lo) / (hi - lo)
    rtg = torch.flip(torch.cumsum(torch.flip(r, [0]), 0), [0]) / 10.0
    torch.testing.assert_close(item["returns_to_go"].double(), rtg[5:15], atol=1e-5, rtol=0)
    assert torch.equal(item["actions"], t0.actions[5:15])
    assert torch.equal(item["timesteps"], torch.arange(5, 15))
    assert item["mask"].all()
    short = ReturnConditionedDataset(pool, window=60)
    it = short[0]
    assert it["mask"].sum() == 47 and it["actions"].shape == (60,)


def test_bad_pools_are_refused():
    with pytest.raises(ValueError, match="empty"):
        ReturnConditionedDataset(ExperiencePool(6))
    with pytest.raises(ValueError, match="rewards"):
        Trajectory({"s": torch.zeros(3, 2)}, [0, 1, 2], [0.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        Trajectory({"s": torch.zeros(2, 2)}, [0, 1], [0.0, float("nan")])
    pool = ExperiencePool(3)
    with pytest.raises(ValueError, match=r"actions in \[0, 3\)"):
        pool.add(Trajectory({"s": torch.zeros(2, 2)}, [0, 3], [0.0, 1.0]))
    pool.add(Trajectory({"s": torch.zeros(2, 2)}, [0, 1], [1.0, 1.0]))
    with pytest.raises(ValueError, match="all rewards"):
        ReturnConditionedDataset(pool)


def tiny_policy(window=10, n_embd=32, keys=("flat",), n_positions=256, lora=True, seed=0):
    need("peft")
    bb, d = load_backbone(None, config={"n_layer": 1, "n_embd": n_embd, "n_head": 2,
                                        "n_positions": n_positions}, seed=seed)
    if lora:
        bb = add_lora(bb, rank=4)
    torch.manual_seed(seed)
    encs = {"flat": MLPEncoder(21, 16), "buffer": ScalarEncoder(8)}
    enc = MultimodalEncoder({k: encs[k] for k in keys}, d, max_steps=64)
    return NetLLMPolicy(bb, enc, NetworkingHead.categorical(d, 6), window=window)


def test_encoders_shapes_and_timestep_embedding():
    torch.manual_seed(0)
    enc = MultimodalEncoder({"a": ScalarEncoder(8), "b": SeriesConv1dEncoder(6, 8, kernel=4),
                             "c": MLPEncoder(5, 8)}, 16, max_steps=10)
    x = {"a": torch.randn(2, 3, 1), "b": torch.randn(2, 3, 6), "c": torch.randn(2, 3, 5)}
    ts = torch.tensor([[0, 1, 2], [4, 5, 6]])
    out = enc(x, ts)
    assert out.shape == (2, 9, 16)
    tok = enc.tokens(x, ts)
    # the same timestep embedding is added to every component of a step
    diff = tok - enc.tokens(x, ts + 1)
    torch.testing.assert_close(diff[:, :, 0], diff[:, :, 2])
    with pytest.raises(KeyError, match="'c'"):
        enc({"a": x["a"], "b": x["b"]}, ts)


def test_policy_is_causal_in_actions_and_act_matches_forward(pool):
    pol = tiny_policy(keys=("flat", "buffer")).eval()
    ds = ReturnConditionedDataset(pool, window=5, return_scale=10.0)
    b = ds.batch([3])
    logits = pol(b["states"], b["actions"], b["returns_to_go"], b["timesteps"])
    a2 = b["actions"].clone()
    a2[0, 2] = (a2[0, 2] + 1) % 6
    logits2 = pol(b["states"], a2, b["returns_to_go"], b["timesteps"])
    torch.testing.assert_close(logits[0, :3], logits2[0, :3])   # a_t unseen by its own logits
    assert not torch.allclose(logits[0, 3:], logits2[0, 3:])
    # act() with the same history reproduces forward's greedy action at each step
    pol.reset()
    for t in range(5):
        st = {k: b["states"][k][0, t] for k in ("flat", "buffer")}
        greedy = pol.act(st, float(b["returns_to_go"][0, t]), int(b["timesteps"][0, t]))
        assert greedy == int(logits[0, t].argmax())
        pol._context[-1] = pol._context[-1].clone()
        # force the pool's action into the context so the histories stay identical
        a_tok = pol.action_embedding(b["actions"][0, t]) + pol.encoder.time_embedding(
            b["timesteps"][0, t])
        pol._context[-1][-1] = a_tok


def test_context_truncation_warns_and_refuses():
    with pytest.warns(UserWarning, match="truncated from the left"):
        pol = tiny_policy(window=20, n_positions=30)
    assert pol.window == 10
    with pytest.raises(ValueError, match="window"):
        tiny_policy(window=2, keys=("flat", "buffer"), n_positions=2)


def test_lockstep_evaluation_equals_sequential():
    pol = tiny_policy().eval()
    v = VideoSizes.synthetic(seed=7)
    env = ABREnv(synthetic_traces(3, seed=2), v)
    agent = NetLLMAgent(pol, 1.0)

    class Seq:
        reset, act = agent.reset, agent.act

    a = evaluate_abr(agent, env)
    b = evaluate_abr(Seq(), env)
    assert a == b and a["valid_fraction"] == 1.0


def test_target_return_far_above_pool_warns():
    pol = tiny_policy()
    with pytest.warns(UserWarning, match="far above"):
        NetLLMAgent(pol, 50.0, max_return=1.0)


def test_training_learns_resumes_and_keeps_user_mode(pool, tmp_path):
    ds = ReturnConditionedDataset(pool, window=5, return_scale=10.0)
    kw = dict(lr=3e-3, warmup_steps=2, batch_size=8, grad_accum=2, steps=12, seed=0)
    pol = tiny_policy().eval()
    base = {k: v.clone() for k, v in pol.backbone.get_base_model().state_dict().items()
            if "lora_" not in k}
    h = train_offline_rl(pol, ds, **kw)
    assert not pol.training                              # mode restored
    assert np.mean(h["loss"][-3:]) < np.mean(h["loss"][:3])
    for k, v in pol.backbone.get_base_model().state_dict().items():
        if k in base:
            assert torch.equal(v, base[k]), k            # frozen backbone untouched
    # interrupted at step 6, resumed to 12 == straight run
    p1 = tiny_policy()
    ck = tmp_path / "ck.safetensors"
    train_offline_rl(p1, ds, **{**kw, "steps": 6}, checkpoint=ck, checkpoint_every=6)
    p2 = tiny_policy()
    h2 = train_offline_rl(p2, ds, **kw, checkpoint=ck, checkpoint_every=6)
    p3 = tiny_policy()
    h3 = train_offline_rl(p3, ds, **kw)
    assert h2["steps"] == 12
    np.testing.assert_allclose(h2["loss"], h3["loss"], rtol=1e-5)
    for (k, a), b in zip(p2.state_dict().items(), p3.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_best_checkpoint_by_evaluation(pool):
    ds = ReturnConditionedDataset(pool, window=5, return_scale=10.0)
    pol = tiny_policy()
    scores = iter([3.0, 1.0, 2.0])
    snap = {}

    def ev(p):
        s = next(scores)
        snap[s] = {k: v.clone() for k, v in p.head.state_dict().items()}
        return s

    h = train_offline_rl(pol, ds, lr=1e-2, warmup_steps=0, batch_size=4, grad_accum=1,
                         steps=3, eval_fn=ev, eval_every=1)
    assert h["best_score"] == 3.0
    for k, v in pol.head.state_dict().items():
        assert torch.equal(v, snap[3.0][k])


def test_agent_plays_valid_episodes():
    pol = tiny_policy().eval()
    v = VideoSizes.synthetic(seed=7)
    env = ABREnv(synthetic_traces(1, seed=2), v)
    log = run_episode(NetLLMAgent(pol, 1.0, sample=True, seed=0), env, 0, offset=1)
    assert len(log.levels) == 47 and all(0 <= a < 6 for a in log.levels)


def test_trained_policy_remembers_pool_best_return(pool):
    ds = ReturnConditionedDataset(pool, window=5, return_scale=10.0)
    pol = tiny_policy()
    train_offline_rl(pol, ds, steps=1, batch_size=2, grad_accum=1, warmup_steps=0)
    assert float(pol.reward_stats[4]) == pytest.approx(ds.max_return)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NetLLMAgent(pol, ds.max_return)
    with pytest.warns(UserWarning, match="far above"):
        NetLLMAgent(pol, 3 * ds.max_return)


def test_paper_layout_six_component_tokens():
    """Official ABR encoder layout: one token per state component (scalars, conv1d series)."""
    need("peft")
    v = VideoSizes.synthetic(seed=7)
    env = ABREnv(synthetic_traces(1, seed=1), v)
    keys = ["last_bitrate", "buffer", "throughput", "download_time", "next_sizes", "chunks_left"]
    p6 = ExperiencePool.collect(env, [BBA()], 1, state_keys=keys)
    ds = ReturnConditionedDataset(p6, window=4, return_scale=10.0)
    bb, d = load_backbone(None, config={"n_layer": 1, "n_embd": 32, "n_head": 2}, seed=0)
    torch.manual_seed(0)
    encs = {"last_bitrate": ScalarEncoder(16), "buffer": ScalarEncoder(16),
            "throughput": SeriesConv1dEncoder(6, 16, kernel=4),
            "download_time": SeriesConv1dEncoder(6, 16, kernel=4),
            "next_sizes": SeriesConv1dEncoder(6, 16, kernel=6), "chunks_left": ScalarEncoder(16)}
    pol = NetLLMPolicy(add_lora(bb, rank=4), MultimodalEncoder(encs, d, max_steps=64),
                       NetworkingHead.categorical(d, 6), window=4).eval()
    assert pol.per_step == 8
    b = ds.batch([0, 1])
    assert pol(b["states"], b["actions"], b["returns_to_go"], b["timesteps"]).shape == (2, 4, 6)
    log = run_episode(NetLLMAgent(pol, ds.max_return), env, 0, offset=1)
    assert len(log.levels) == 47
