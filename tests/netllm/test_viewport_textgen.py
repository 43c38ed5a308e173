"""Viewport prediction (metric, baselines, predictor) and the text-answer baseline."""

from __future__ import annotations

import pytest
import torch

from dnnkit.netllm import (
    LinearRegressionPredictor,
    NetLLMPredictor,
    VelocityPredictor,
    add_lora,
    load_backbone,
    synthetic_viewports,
    train_supervised,
    viewport_mae,
    viewport_windows,
)
from tests.conftest import need

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_mae_wraps_yaw():
    a = torch.tensor([[[0.0, 0.0, 179.0]]])
    b = torch.tensor([[[0.0, 0.0, -179.0]]])
    assert viewport_mae(a, b) == pytest.approx(2.0 / 3)
    assert viewport_mae(a, b, wrap_yaw=False) == pytest.approx(358.0 / 3)


def test_synthetic_viewports_ranges_and_seed():
    v = synthetic_viewports(3, 20, seed=0)
    assert v.shape == (3, 100, 3)
    assert v[..., 2].min() >= -180 and v[..., 2].max() < 180
    assert v[..., 1].abs().max() <= 90
    assert torch.equal(v, synthetic_viewports(3, 20, seed=0))
    assert not torch.equal(v, synthetic_viewports(3, 20, seed=1))


def test_baselines_exact_on_linear_motion_across_the_seam():
    t = torch.arange(30, dtype=torch.float32)
    traj = torch.stack([torch.zeros(30), 0.5 * t - 5, (150 + 7 * t + 180) % 360 - 180], -1)
    x, y = traj[None, :10], traj[None, 10:30]
    for p in (VelocityPredictor(), VelocityPredictor(3), LinearRegressionPredictor()):
        assert viewport_mae(p(x, 20), y) < 1e-3


def test_windows_shapes():
    v = synthetic_viewports(2, 10, seed=0)
    x, y = viewport_windows(v, history=10, horizon=20, stride=5)
    assert x.shape[1:] == (10, 3) and y.shape[1:] == (20, 3) and len(x) == len(y) == 2 * 5
    torch.testing.assert_close(x[0], v[0, :10])
    torch.testing.assert_close(y[0], v[0, 10:30])
    with pytest.raises(ValueError, match="traces"):
        viewport_windows(v[:, :20])


def test_predictor_learns_and_is_bounded():
    need("peft")
    bb, d = load_backbone(None, config={"n_layer": 1, "n_embd": 32, "n_head": 2}, seed=0)
    torch.manual_seed(0)
    m = NetLLMPredictor(add_lora(bb, rank=4), history=10, horizon=20, features=16)
    x, y = viewport_windows(synthetic_viewports(4, 30, seed=0))
    h = train_supervised(m, x, y, lr=3e-3, steps=40, batch_size=16, seed=0)
    assert sum(h["loss"][-5:]) < sum(h["loss"][:5])
    with torch.no_grad():
        off = m.offsets(x[:4])
    assert off.abs().max() < 1 and off.shape == (4, 20, 3)


def test_text_answers_need_several_passes_and_can_be_invalid():
    need("peft")
    from dnnkit.netllm import (
        BBA,
        ABREnv,
        ExperiencePool,
        MLPEncoder,
        MultimodalEncoder,
        NetLLMPolicy,
        NetworkingHead,
        ReturnConditionedDataset,
        TextAnswerPolicy,
        VideoSizes,
        evaluate_abr,
        synthetic_traces,
        train_text_answers,
    )
    from dnnkit.netllm.textgen import TextAgent

    v = VideoSizes.synthetic(seed=7)
    env = ABREnv(synthetic_traces(2, seed=1), v, train_noise=True, seed=0)
    pool = ExperiencePool.collect(env, [BBA()], 2, state_keys=["flat"])
    ds = ReturnConditionedDataset(pool, window=4, return_scale=10.0)
    bb, d = load_backbone(None, config={"n_layer": 1, "n_embd": 32, "n_head": 2}, seed=0)
    torch.manual_seed(0)
    core = NetLLMPolicy(add_lora(bb, rank=4), MultimodalEncoder({"flat": MLPEncoder(21, 16)}, d),
                        NetworkingHead.categorical(d, 6), window=4)
    text = TextAnswerPolicy(core, v.bitrates_kbps)
    h = train_text_answers(text, ds, steps=3, batch_size=2, seed=0)
    assert h["steps"] == 3
    agent = TextAgent(text.eval(), ds.max_return)
    q = evaluate_abr(agent, ABREnv(synthetic_traces(1, seed=2), v))
    assert agent.decisions == 47
    assert agent.passes / agent.decisions > 1.0       # at least one digit + EOS, or 6 digits
    # what the player saw counts invalid text answers exactly like the agent did
    assert q["valid_fraction"] == 1.0                 # fallback keeps the stream going
    assert 0 <= agent.invalid <= agent.decisions
