"""Bad-input table of dnnkit.netllm for the conformance suite (one valid cheap call each)."""

from __future__ import annotations

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
    Trace,
    Trajectory,
    VideoSizes,
    add_lora,
    discount_returns,
    evaluate_abr,
    load_backbone,
    synthetic_traces,
    synthetic_viewports,
    train_offline_rl,
    train_supervised,
    viewport_mae,
    viewport_windows,
)


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
    return [
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
