"""Bad-input table of dnnkit.netllm for the conformance suite (one valid cheap call each)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from dnnkit.core.validation import Example
from dnnkit.netllm import (
    BBA,
    ABREnv,
    ExperiencePool,
    MLPEncoder,
    MultimodalEncoder,
    NetLLMAgent,
    NetLLMPolicy,
    NetLLMPredictor,
    NetworkingHead,
    PrecomputedEmbedding,
    RandomPolicy,
    RateBased,
    ReturnConditionedDataset,
    RobustMPC,
    ScalarEncoder,
    SeriesConv1dEncoder,
    TextAnswerPolicy,
    Trace,
    Trajectory,
    VelocityPredictor,
    VideoSizes,
    add_lora,
    discount_returns,
    evaluate_abr,
    linear_qoe,
    load_backbone,
    load_traces,
    synthetic_traces,
    synthetic_viewports,
    train_offline_rl,
    train_supervised,
    train_text_answers,
    viewport_mae,
    viewport_windows,
)

_TMP = Path(tempfile.mkdtemp(prefix="dnnkit-conformance-netllm-"))


def _files():
    """A cooked trace, two Pensieve video-size files and a saved experience pool."""
    trace = _TMP / "trace.txt"
    trace.write_text("".join(f"{t} {1.0 + (t % 3)}\n" for t in range(12)))
    sizes = []
    for lvl in range(2):
        f = _TMP / f"video_size_{lvl}"
        f.write_text("\n".join(str(1000 * (lvl + 1) + i) for i in range(4)))
        sizes.append(f)
    return trace, sizes


def examples() -> list[Example]:
    video = VideoSizes.synthetic(n_chunks=4, seed=0)
    traces = synthetic_traces(1, duration_s=40.0, seed=0)
    env = ABREnv(traces, video)
    bb, d = load_backbone(None, config={"n_layer": 1, "n_embd": 16, "n_head": 2})
    enc = MultimodalEncoder({"flat": MLPEncoder(21, 8)}, d, max_steps=8)
    head = NetworkingHead.categorical(d, 6)
    policy = NetLLMPolicy(bb, enc, head, window=2)
    traj = Trajectory({"flat": torch.zeros(3, 21)}, [0, 1, 2], [0.0, 1.0, 0.5])
    pool = ExperiencePool(6, [traj])
    data = ReturnConditionedDataset(pool, window=2)
    vp = synthetic_viewports(1, 7, seed=0)
    x, y = viewport_windows(vp, history=10, horizon=20)
    pred = NetLLMPredictor(load_backbone(None, config={"n_layer": 1, "n_embd": 16,
                                                       "n_head": 2})[0])
    trace_file, size_files = _files()
    pool_file = pool.save(_TMP / "pool.safetensors")
    obs = env.reset(0, offset=1)
    mpc = RobustMPC(video, horizon=2)
    agent = NetLLMAgent(policy, 0.001, seed=0)
    agent.act(obs)
    batch_agent = NetLLMAgent(policy, 0.001, seed=0)
    running = NetLLMAgent(policy, 0.001, seed=0)
    running.act_batch([obs, obs])
    text = TextAnswerPolicy(policy, [300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0])
    st1 = {"flat": torch.zeros(21)}
    bt = data.batch([0])
    hist = x[:2]
    return [
        Example(ScalarEncoder(4).forward, args=(torch.zeros(2, 3),)),
        Example(SeriesConv1dEncoder(6, 4, kernel=3).forward, args=(torch.zeros(2, 3, 6),)),
        Example(MLPEncoder(5, 4).forward, args=(torch.zeros(2, 3, 5),)),
        Example(PrecomputedEmbedding(4).forward, args=(torch.zeros(2, 3, 4),)),
        Example(PrecomputedEmbedding(4).forward, args=(torch.zeros(2, 3, 5),), raises=ValueError,
                param="x"),
        Example(enc.tokens, args=({"flat": torch.zeros(1, 3, 21)}, torch.arange(3)[None])),
        Example(enc.forward, args=({"flat": torch.zeros(1, 3, 21)}, torch.arange(3)[None])),
        Example(enc.forward, args=({"other": torch.zeros(1, 3, 21)}, torch.arange(3)[None]),
                raises=KeyError, param="inputs"),
        Example(NetworkingHead.categorical, args=(8, 3)),
        Example(NetworkingHead.regression, args=(8, 3), kwargs={"bounded": False}),
        Example(head.forward, args=(torch.zeros(2, d),)),
        Example(ExperiencePool, args=(6, [traj])),
        Example(ExperiencePool(6).add, args=(traj,)),
        Example(pool.save, args=(_TMP / "pool2.safetensors",)),
        Example(ExperiencePool.load, args=(pool_file,)),
        Example(ExperiencePool.collect, args=(env, [BBA()], 1)),
        Example(ExperiencePool.collect, args=(env, [], 1), raises=ValueError, param="policies"),
        Example(data.normalize_reward, args=(0.5,)),
        Example(data.batch, args=([0],)),
        Example(policy.forward, args=(bt["states"], bt["actions"], bt["returns_to_go"],
                                      bt["timesteps"])),
        Example(policy.act, args=(st1, 0.5, 0), kwargs={"sample": False}),
        Example(policy.act_batch, args=({"flat": torch.zeros(2, 21)}, torch.zeros(2), 0)),
        Example(policy.normalize_reward, args=(1.0,)),
        Example(agent.act, args=(obs,)),
        Example(batch_agent.act_batch, args=([obs, obs],)),
        Example(agent.act_batch, args=([obs, obs],), raises=RuntimeError),
        Example(running.act_batch, args=([obs],), raises=ValueError, param="obs_list"),
        Example(VideoSizes.synthetic, kwargs={"n_chunks": 4, "vbr": 0.1, "chunk_s": 4.0,
                                              "seed": 0}),
        Example(VideoSizes.from_files, args=(size_files,),
                kwargs={"bitrates_kbps": (300.0, 750.0), "chunk_s": 4.0}),
        Example(load_traces, args=(trace_file,)),
        Example(load_traces, args=(_TMP / "missing.txt",), raises=FileNotFoundError,
                param="path"),
        Example(env.reset, args=(0,), kwargs={"offset": 1}),
        Example(env.step, args=(1,)),
        Example(BBA().act, args=(obs,)),
        Example(mpc.predict_bandwidth, args=([1.0, 2.0, 1.5],)),
        Example(mpc.plan_rewards, args=(2.0, 5.0, 1, 0)),
        Example(mpc.act, args=(obs,)),
        Example(RateBased().act, args=(obs,)),
        Example(RandomPolicy(seed=0).act, args=(obs,)),
        Example(linear_qoe, args=(1200.0, 0.5, 750.0), kwargs={"rebuf_penalty": 4.3}),
        Example(VelocityPredictor, kwargs={"k": 2}),
        Example(NetLLMPredictor, args=(bb,), kwargs={"history": 10, "horizon": 20,
                                                     "features": 8}),
        Example(pred.offsets, args=(hist,)),
        Example(pred.forward, args=(hist,)),
        Example(pred.target, args=(hist, y[:2])),
        Example(TextAnswerPolicy, args=(policy, [300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0])),
        Example(TextAnswerPolicy, args=(policy, [300.0]), raises=ValueError,
                param="bitrates_kbps"),
        Example(text.loss, args=(bt,)),
        Example(text.act_text, args=(st1, 0.5, 0, 1)),
        Example(train_text_answers, args=(text, data), kwargs={"steps": 1, "batch_size": 1,
                                                              "lr": 1e-3, "seed": 0}),
        Example(synthetic_traces, args=(1,), kwargs={"duration_s": 20.0, "seed": 0}),
        Example(ABREnv, args=(traces, video), kwargs={"seed": 0}),
        Example(BBA, kwargs={"n_levels": 6, "reservoir": 5.0, "cushion": 10.0}),
        Example(RateBased, kwargs={"window": 5}),
        Example(RandomPolicy, kwargs={"n_levels": 6, "seed": 0}),
        Example(RobustMPC, args=(video,), kwargs={"horizon": 2, "max_jump": 1}),
        Example(evaluate_abr, args=(BBA(), env)),
        Example(load_backbone, args=(None,), kwargs={"config": {"n_layer": 1, "n_embd": 8,
                                                                "n_head": 2}, "seed": 0}),
        Example(ScalarEncoder, kwargs={"features": 4}),
        Example(SeriesConv1dEncoder, args=(6,), kwargs={"features": 4, "kernel": 3}),
        Example(MLPEncoder, args=(5,), kwargs={"features": 4, "hidden": 8}),
        Example(PrecomputedEmbedding, args=(4,)),
        Example(MultimodalEncoder, args=({"s": ScalarEncoder(4)}, 8), kwargs={"max_steps": 4}),
        Example(NetworkingHead, args=(8, 3), kwargs={"kind": "regression"}),
        Example(NetLLMPolicy, args=(bb, enc, head), kwargs={"window": 2}),
        Example(discount_returns, args=(np.array([1.0, 2.0]),), kwargs={"gamma": 1.0,
                                                                       "scale": 10.0}),
        Example(ReturnConditionedDataset, args=(pool,), kwargs={"window": 2, "gamma": 1.0,
                                                               "return_scale": 10.0}),
        Example(train_offline_rl, args=(policy, data), kwargs={"steps": 1, "grad_accum": 1,
                                                               "lr": 1e-3, "seed": 0}),
        Example(NetLLMAgent, args=(policy, 0.001), kwargs={"seed": 0}),
        Example(synthetic_viewports, args=(1, 2.0), kwargs={"hz": 5, "seed": 0}),
        Example(viewport_windows, args=(vp,)),
        Example(viewport_mae, args=(y, y)),
        Example(train_supervised, args=(pred, x, y), kwargs={"steps": 1, "batch_size": 2}),
        # hand-written cross-parameter and data cases
        Example(add_lora, args=(bb,), kwargs={"target_modules": ["q_proj"]}, raises=ValueError,
                param="target_modules"),
        Example(ReturnConditionedDataset, args=(ExperiencePool(6),), raises=ValueError,
                param="pool"),
        Example(Trajectory, args=({"s": torch.zeros(3, 2)}, [0, 1, 2], [0.0, 1.0]),
                raises=ValueError, param="rewards"),
        Example(Trace, args=(np.array([0.0, 2.0, 1.0, 9.0]), np.ones(4)), raises=ValueError,
                param="times_s"),
        Example(Trace, args=(np.arange(10.0), np.zeros(10)), raises=ValueError, param="mbps"),
        Example(VideoSizes, args=(np.ones((5, 48)),), raises=ValueError, param="sizes"),
        Example(viewport_mae, args=(y[:, :3], y), raises=ValueError, param="pred"),
    ]
