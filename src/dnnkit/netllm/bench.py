"""`dnnkit bench netllm`: decision latency (networking head vs RobustMPC vs text answers) and
LoRA vs full fine-tuning of the same backbone (step time, trainable parameters, memory)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.registry import register_bench


def _state_bytes(params, opt) -> int:
    n = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    for st in opt.state.values():
        n += sum(v.numel() * v.element_size() for v in st.values() if isinstance(v, torch.Tensor))
    return n


@register_bench("netllm")
def bench(quick: bool = False) -> list[Timing]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        return _bench(quick)


def _bench(quick: bool) -> list[Timing]:
    from dnnkit.netllm import (
        BBA,
        ABREnv,
        ExperiencePool,
        MLPEncoder,
        MultimodalEncoder,
        NetLLMPolicy,
        NetworkingHead,
        ReturnConditionedDataset,
        RobustMPC,
        TextAnswerPolicy,
        VideoSizes,
        add_lora,
        load_backbone,
        synthetic_traces,
    )

    cfg = {"n_layer": 2, "n_embd": 64, "n_head": 4}
    video = VideoSizes.synthetic(seed=7)
    env = ABREnv(synthetic_traces(2, seed=1), video, train_noise=True, seed=0)
    pool = ExperiencePool.collect(env, [RobustMPC(video), BBA()], 2, state_keys=["flat"])
    data = ReturnConditionedDataset(pool, window=10, return_scale=10.0)
    obs = ABREnv(synthetic_traces(1, seed=2), video).reset(0, offset=1)
    repeat = 5 if quick else 20

    def policy(lora: bool, seed: int = 0) -> NetLLMPolicy:
        bb, d = load_backbone(None, config=cfg, seed=seed)
        if lora:
            bb = add_lora(bb, rank=8)
        torch.manual_seed(seed)
        enc = MultimodalEncoder({"flat": MLPEncoder(21, d)}, d, max_steps=64)
        return NetLLMPolicy(bb, enc, NetworkingHead.categorical(d, 6), window=10)

    pol = policy(True).eval()
    text = TextAnswerPolicy(policy(True), video.bitrates_kbps).eval()
    state = {"flat": obs["flat"]}

    def fill(p):  # a full context of window - 1 previous steps
        p.reset()
        for t in range(9):
            p.act(state, 1.0, t)

    fill(pol)

    def head_decision():
        pol.act(state, 1.0, 9)
        pol._context.pop()

    fill(text.core)

    passes = []

    def text_decision():
        passes.append(text.act_text(state, 1.0, 9, 1)[2])
        text.core._context.pop()

    mpc = RobustMPC(video)
    hist = list(np.random.default_rng(0).uniform(0.1, 1.0, 8))
    mpc_obs = {"throughput_hist": hist, "buffer_s": 8.0, "last_level": 2, "chunk_index": 10}

    def mpc_decision():
        mpc.reset()
        mpc.act(mpc_obs)

    t_head = time_call(head_decision, repeat=repeat, warmup=2)
    t_mpc = time_call(mpc_decision, repeat=repeat, warmup=2)
    t_text = time_call(text_decision, repeat=max(3, repeat // 2), warmup=1)
    rows = [
        Timing("ABR decision, batch 1, 39-token context: networking head (1 pass)", t_head,
               "RobustMPC, numpy, 6^5 plans", t_mpc,
               note="ratio < 1: MPC is cheaper on CPU than a transformer pass"),
        Timing("ABR decision: networking head (1 pass)", t_head,
               "same backbone answering as text tokens (greedy, no KV cache)", t_text,
               note=f"text: one pass per generated token; this untrained digit head used "
                    f"{np.mean(passes):.1f} (a trained one: 4-5, see the reproduction)"),
    ]

    # LoRA vs full fine-tuning of the same backbone, one optimizer step on 32 windows
    batch = data.batch(torch.arange(min(32, len(data))))
    res = {}
    for lora in (True, False):
        p = policy(lora)
        params = [q for q in p.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3)

        def step(p=p, opt=opt):
            logits = p(batch["states"], batch["actions"], batch["returns_to_go"],
                       batch["timesteps"])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                     batch["actions"].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t = time_call(step, repeat=max(3, repeat // 2), warmup=1)
        res[lora] = (t, sum(q.numel() for q in params), sum(q.numel() for q in p.parameters()),
                     _state_bytes(params, opt))
    (tl, nl, tot, ml), (tf, nf, _, mf) = res[True], res[False]
    rows.append(Timing("offline-RL step (32 windows x 30 tokens): LoRA r=8 on c_attn", tl,
                       "full fine-tuning of the same backbone", tf,
                       note=f"trainable {nl:,} vs {nf:,} of {tot:,}; grad+Adam state "
                            f"{ml / 2**10:.0f} KiB vs {mf / 2**10:.0f} KiB"))
    return rows
