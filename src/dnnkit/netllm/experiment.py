"""`dnnkit reproduce netllm`: NetLLM's ABR experiment at CPU scale, the answer-generation
comparison, viewport prediction and (optionally) the backbone ablation (spec section 5)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from dnnkit.core.registry import RunContext, register
from dnnkit.core.report import Claim, Result, Table
from dnnkit.netllm.abr import (
    BBA,
    ABREnv,
    RandomPolicy,
    RateBased,
    RobustMPC,
    VideoSizes,
    evaluate_abr,
    run_episode,
    synthetic_traces,
)
from dnnkit.netllm.backbone import add_lora, load_backbone
from dnnkit.netllm.model import MLPEncoder, MultimodalEncoder, NetLLMPolicy, NetworkingHead
from dnnkit.netllm.rl import ExperiencePool, NetLLMAgent, ReturnConditionedDataset, train_offline_rl
from dnnkit.netllm.textgen import TextAgent, TextAnswerPolicy, train_text_answers
from dnnkit.netllm.viewport import (
    LinearRegressionPredictor,
    NetLLMPredictor,
    VelocityPredictor,
    synthetic_viewports,
    train_supervised,
    viewport_mae,
    viewport_windows,
)

PAPER = ("Wu et al., NetLLM: Adapting Large Language Models for Networking, ACM SIGCOMM 2024 "
         "(arXiv:2402.02338)")
CLAIM = ("A frozen LM adapted with LoRA, a multimodal encoder and a networking head, trained "
         "offline on an experience pool as return-conditioned sequence modelling, beats the "
         "rule-based ABR baselines, answers in one pass and always validly, and beats classic "
         "viewport predictors.")


@dataclass(frozen=True)
class Config:
    n_train_traces: int = 100
    n_test_traces: int = 20
    n_unseen_traces: int = 20
    epsilon: float = 0.2            # epsilon-perturbed RobustMPC in the pool
    window: int = 10
    return_scale: float = 10.0
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    lora_rank: int = 8
    lr: float = 1e-3
    batch_size: int = 32
    train_steps: int = 300          # optimizer steps of the offline-RL training
    train_s: float = 120.0          # wall-clock cap (a safety net; steps decide)
    text_steps: int = 60
    text_train_s: float = 60.0
    text_eval_traces: int = 2
    vp_users: int = 24
    vp_seconds: float = 60.0
    vp_steps: int = 250
    vp_train_s: float = 60.0
    eval_every: int = 100           # best checkpoint by QoE on validation traces
    n_valid_traces: int = 10
    ablation: bool = False          # + MiniLM + LoRA and a fully trained tiny transformer
    ablation_steps: int = 150
    ablation_batch_size: int = 8
    ablation_train_s: float = 900.0  # wall-clock cap per ablation model (steps decide)
    video_seed: int = 7
    check_unseen: bool = True       # claim on the unseen, harder traces (needs the full budget)

    @classmethod
    def quick(cls) -> Config:
        # ~16 CPU-s; 150 steps on 30 traces do not generalise to the harder unseen generator
        # (0.14 x RobustMPC measured), so the quick run reports that ratio without claiming it
        return cls(n_train_traces=30, n_test_traces=6, n_unseen_traces=6, train_steps=150,
                   batch_size=12, text_steps=10, text_eval_traces=1, vp_users=6,
                   vp_seconds=30.0, vp_steps=40, eval_every=30, n_valid_traces=3,
                   ablation_steps=20, check_unseen=False)


class _EpsPolicy:
    def __init__(self, base, n_levels: int, epsilon: float, seed: int):
        self.base, self.eps = base, epsilon
        self.rand = RandomPolicy(n_levels, seed=seed)
        self.rng = np.random.default_rng(seed)

    def reset(self):
        self.base.reset()

    def act(self, obs):
        a = self.base.act(obs)
        return self.rand.act(obs) if self.rng.random() < self.eps else a


def _policy(backbone, d, cfg: Config, seed: int) -> NetLLMPolicy:
    torch.manual_seed(seed)
    enc = MultimodalEncoder({"flat": MLPEncoder(21, d)}, d, max_steps=64)
    return NetLLMPolicy(backbone, enc, NetworkingHead.categorical(d, 6), window=cfg.window)


def _gpt2(cfg: Config, seed: int):
    return load_backbone(None, config={"n_layer": cfg.n_layer, "n_embd": cfg.n_embd,
                                       "n_head": cfg.n_head}, seed=seed)


def _count(m):
    return (sum(p.numel() for p in m.parameters() if p.requires_grad),
            sum(p.numel() for p in m.parameters()))


def _train(policy, data, cfg: Config, steps: int, batch_size: int, seed: int,
           eval_fn=None, cap_s: float = 120.0) -> dict:
    return train_offline_rl(policy, data, lr=cfg.lr, weight_decay=1e-4, warmup_steps=50,
                            batch_size=batch_size, grad_accum=1, clip=0.25, steps=steps,
                            time_budget_s=cap_s, eval_fn=eval_fn,
                            eval_every=cfg.eval_every, seed=seed)


def _decision_rate(agent, env, n_traces: int) -> float:
    t0 = time.perf_counter()
    n = 0
    for i in range(n_traces):
        n += len(run_episode(agent, env, i, offset=1).levels)
    return n / (time.perf_counter() - t0)


@register("netllm", paper=PAPER, claim=CLAIM, config=Config, num_threads=1)
def run(cfg: Config, ctx: RunContext) -> Result:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        return _run(cfg, ctx)


def _run(cfg: Config, ctx: RunContext) -> Result:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = ctx.seed
    t_start = time.perf_counter()
    video = VideoSizes.synthetic(seed=cfg.video_seed)
    train_tr = synthetic_traces(cfg.n_train_traces, seed=seed + 1)
    sets = {"test": synthetic_traces(cfg.n_test_traces, seed=seed + 2),
            "unseen": synthetic_traces(cfg.n_unseen_traces, mbps_range=(0.2, 2.5),
                                       max_hold_steps=2, seed=seed + 3)}
    envs = {k: ABREnv(v, video) for k, v in sets.items()}

    # 1. experience pool from existing policies (train-mode delay noise, random offsets)
    t0 = time.perf_counter()
    env = ABREnv(train_tr, video, train_noise=True, seed=seed)
    teachers = [RobustMPC(video), BBA(), RateBased(),
                _EpsPolicy(RobustMPC(video), 6, cfg.epsilon, seed)]
    pool = ExperiencePool.collect(env, teachers, cfg.n_train_traces, state_keys=["flat"])
    pool_s = time.perf_counter() - t0
    pool.save(ctx.path("pool.safetensors"))
    data = ReturnConditionedDataset(pool, window=cfg.window, return_scale=cfg.return_scale)

    # 2. baselines
    baselines = {"BBA": BBA(), "RateBased": RateBased(), "RobustMPC": RobustMPC(video)}
    qoe: dict[str, dict[str, dict]] = {name: {k: evaluate_abr(p, e) for k, e in envs.items()}
                                       for name, p in baselines.items()}

    # 3. the adapted model: frozen random tiny GPT-2 + LoRA + encoder + head
    models: dict[str, dict] = {}

    valid_env = ABREnv(synthetic_traces(cfg.n_valid_traces, seed=seed + 4), video)

    def valid_qoe(p):
        return evaluate_abr(NetLLMAgent(p, data.max_return), valid_env)["qoe"]

    def fit_eval(name: str, policy: NetLLMPolicy, steps: int, batch_size: int,
                 cap_s: float = cfg.train_s):
        hist = _train(policy, data, cfg, steps, batch_size, seed, valid_qoe, cap_s)
        policy.eval()
        qoe[name] = {k: evaluate_abr(NetLLMAgent(policy, data.max_return), e)
                     for k, e in envs.items()}
        tr, tot = _count(policy)
        models[name] = {"trainable": tr, "total": tot, "steps": hist["steps"],
                        "seconds": hist["seconds"], "final_loss": float(np.mean(hist["loss"][-20:])),
                        "loss": hist["loss"], "evals": hist["evals"]}
        return policy

    main_name = "NetLLM (tiny GPT-2 frozen + LoRA)"
    bb, d = _gpt2(cfg, seed)
    policy = fit_eval(main_name,
                      _policy(add_lora(bb, rank=cfg.lora_rank, seed=seed), d, cfg, seed),
                      cfg.train_steps, cfg.batch_size)
    rate = _decision_rate(NetLLMAgent(policy, data.max_return), envs["test"], 1)
    mpc_rate = _decision_rate(RobustMPC(video), envs["test"], 1)

    if cfg.ablation:
        mb, md = load_backbone("all-MiniLM-L6-v2")
        fit_eval("MiniLM (pre-trained, frozen) + LoRA",
                 _policy(add_lora(mb, rank=cfg.lora_rank, seed=seed), md, cfg, seed),
                 cfg.ablation_steps, cfg.ablation_batch_size, cfg.ablation_train_s)
        fb, fd = _gpt2(cfg, seed)
        fit_eval("tiny GPT-2 fully trained", _policy(fb, fd, cfg, seed), cfg.ablation_steps,
                 cfg.ablation_batch_size, cfg.ablation_train_s)
        if "MiniLM (pre-trained, frozen) + LoRA" in qoe:
            rb, rd = _gpt2(cfg, seed)
            fit_eval("tiny GPT-2 frozen + LoRA (same budget)",
                     _policy(add_lora(rb, rank=cfg.lora_rank, seed=seed), rd, cfg, seed),
                     cfg.ablation_steps, cfg.ablation_batch_size, cfg.ablation_train_s)

    # 4. answer generation: same backbone family, LM head over digits, greedy text
    tb, td = _gpt2(cfg, seed)
    text = TextAnswerPolicy(_policy(add_lora(tb, rank=cfg.lora_rank, seed=seed), td, cfg, seed),
                            video.bitrates_kbps)
    th = train_text_answers(text, data, lr=cfg.lr, steps=cfg.text_steps, batch_size=8,
                            time_budget_s=cfg.text_train_s, seed=seed)
    text.eval()
    tagent = TextAgent(text, data.max_return)
    text_q = evaluate_abr(tagent, envs["test"], range(cfg.text_eval_traces))
    head_agent = NetLLMAgent(policy, data.max_return)
    head_n = 0
    t0 = time.perf_counter()
    for i in range(cfg.text_eval_traces):
        head_n += len(run_episode(head_agent, envs["test"], i, offset=1).levels)
    head_lat = (time.perf_counter() - t0) / head_n
    gen = {"head": {"passes_per_decision": 1.0, "latency_ms": 1000 * head_lat,
                    "invalid_fraction": 0.0, "decisions": head_n},
           "text": {"passes_per_decision": tagent.passes / tagent.decisions,
                    "latency_ms": 1000 * tagent.seconds / tagent.decisions,
                    "invalid_fraction": tagent.invalid / tagent.decisions,
                    "decisions": tagent.decisions, "train_steps": th["steps"],
                    "final_loss": th["final_loss"], "qoe": text_q["qoe"]}}

    # 5. viewport prediction
    vtr = synthetic_viewports(cfg.vp_users, cfg.vp_seconds, seed=seed + 10)
    vte = synthetic_viewports(max(cfg.vp_users // 3, 2), cfg.vp_seconds, seed=seed + 11)
    x, y = viewport_windows(vtr)
    xt, yt = viewport_windows(vte)
    vb, vd = _gpt2(cfg, seed)
    torch.manual_seed(seed)
    vp = NetLLMPredictor(add_lora(vb, rank=cfg.lora_rank, seed=seed), history=10, horizon=20)
    vh = train_supervised(vp, x, y, lr=cfg.lr, steps=cfg.vp_steps, time_budget_s=cfg.vp_train_s,
                          seed=seed)
    vp.eval()
    with torch.no_grad():
        pred_vp = vp(xt)
    preds = {"velocity": VelocityPredictor()(xt, 20), "linear regression":
             LinearRegressionPredictor()(xt, 20), "NetLLM (tiny GPT-2 + LoRA)": pred_vp}
    vp_mae = {k: viewport_mae(p, yt) for k, p in preds.items()}
    vp_step = {k: [viewport_mae(p[:, i:i + 1], yt[:, i:i + 1]) for i in range(20)]
               for k, p in preds.items()}

    # ---------------------------------------------------------------- figures
    names = list(qoe)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    w = 0.38
    for j, k in enumerate(envs):
        ax.bar(np.arange(len(names)) + (j - 0.5) * w, [qoe[n][k]["qoe"] for n in names], w,
               label=k)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([n.replace(" (", "\n(") for n in names], fontsize=7)
    ax.set_ylabel("mean QoE per chunk")
    ax.legend()
    ax.set_title("ABR: QoE per policy and trace set")
    fig.tight_layout()
    fig.savefig(ctx.path("qoe.png"), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
    for lab, pol in (("RobustMPC", RobustMPC(video)), ("NetLLM", NetLLMAgent(policy,
                                                                          data.max_return))):
        lg = run_episode(pol, envs["test"], 0, offset=1)
        axes[0].step(range(len(lg.bitrate_kbps)), lg.bitrate_kbps, where="post", label=lab)
        axes[1].plot(lg.buffer_s, label=lab)
    axes[0].set_ylabel("bitrate (kbps)")
    axes[1].set_ylabel("buffer (s)")
    axes[1].set_xlabel("chunk")
    axes[0].legend()
    axes[0].set_title("One test episode (trace 0)")
    fig.tight_layout()
    fig.savefig(ctx.path("timeline.png"), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for n, m in models.items():
        lo = np.convolve(m["loss"], np.ones(20) / 20, mode="valid") if len(m["loss"]) > 20 \
            else m["loss"]
        axes[0].plot(lo, label=n)
    axes[0].set_xlabel("optimizer step")
    axes[0].set_ylabel("action CE")
    axes[0].legend(fontsize=6)
    for k, v in vp_step.items():
        axes[1].plot(np.arange(1, 21) / 5, v, label=k)
    axes[1].set_xlabel("prediction horizon (s)")
    axes[1].set_ylabel("viewport MAE (deg)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.path("training_vp.png"), dpi=110)
    plt.close(fig)

    # ---------------------------------------------------------------- report
    m_test, m_unseen = qoe[main_name]["test"], qoe[main_name]["unseen"]
    rows = [[n, *(f"{qoe[n][k][f]:.3f}" for k in envs for f in ("qoe", "bitrate_mbps",
                                                                 "rebuffer_ratio",
                                                                 "smoothness_mbps")),
             f"{qoe[n]['test']['valid_fraction']:.3f}"] for n in names]
    cols = ["policy"] + [f"{k} {f}" for k in envs for f in ("QoE", "Mbps", "rebuf", "smooth")] \
        + ["valid"]
    tables = [Table("ABR on synthetic traces (mean QoE per chunk, bitrate, rebuffer ratio, "
                    "smoothness)", cols, rows)]
    if models:
        tables.append(Table("Adapted models (trainable / total parameters, training)",
                            ["model", "trainable", "total", "steps", "seconds", "final CE",
                             "QoE test", "QoE unseen"],
                            [[n, m["trainable"], m["total"], m["steps"], f"{m['seconds']:.0f}",
                              f"{m['final_loss']:.3f}", f"{qoe[n]['test']['qoe']:.3f}",
                              f"{qoe[n]['unseen']['qoe']:.3f}"] for n, m in models.items()]))
    tables.append(Table("Answer generation: networking head vs text tokens (same backbone)",
                        ["answer", "passes/decision", "ms/decision", "invalid fraction"],
                        [[k, f"{v['passes_per_decision']:.2f}", f"{v['latency_ms']:.2f}",
                          f"{v['invalid_fraction']:.3f}"] for k, v in gen.items()]))
    tables.append(Table("Viewport prediction, MAE in degrees (history 2 s, future 4 s)",
                        ["predictor", "MAE"], [[k, f"{v:.2f}"] for k, v in vp_mae.items()]))
    mpc = qoe["RobustMPC"]
    claims = [
        Claim.holds("adapted model's actions are always valid", m_test["valid_fraction"] == 1.0
                    and m_unseen["valid_fraction"] == 1.0,
                    measured=m_test["valid_fraction"], expected="1.0",
                    paper="networking head: 100% valid answers"),
        Claim.at_least("adapted QoE / BBA QoE (test)", m_test["qoe"] / qoe["BBA"]["test"]["qoe"],
                       1.0, paper="+14.5-36.6% QoE over the best baseline (Llama2-7B)"),
        Claim.at_least("adapted QoE / RobustMPC QoE (test)", m_test["qoe"] / mpc["test"]["qoe"],
                       0.9, paper="above MPC; spec prototype: within ~10%"),
    ]
    if cfg.check_unseen:
        claims.append(Claim.at_least(
            "adapted QoE / RobustMPC QoE (unseen, harder traces)",
            m_unseen["qoe"] / mpc["unseen"]["qoe"], 0.7,
            paper="+3.9-24.8% in unseen settings (slides); spec prototype: below RobustMPC "
                  "(0.92-0.95 vs 1.01)"))
    claims += [
        Claim.holds("networking head: one pass per decision; text answer needs more",
                    gen["text"]["passes_per_decision"] > 1.0,
                    measured=f"{gen['text']['passes_per_decision']:.2f} passes",
                    expected="> 1", paper="token-by-token answers 3.84 s > 1 s deadline"),
        Claim.at_least("text answer latency / head latency",
                       gen["text"]["latency_ms"] / gen["head"]["latency_ms"], 1.5,
                       paper="head answers in one inference"),
        Claim.at_most("VP MAE adapted / linear regression",
                      vp_mae["NetLLM (tiny GPT-2 + LoRA)"] / vp_mae["linear regression"], 1.0,
                      paper="-10.1-36.6% MAE vs best baseline"),
    ]
    metrics = {"qoe": qoe, "models": {n: {k: v for k, v in m.items() if k != "loss"}
                                      for n, m in models.items()},
               "generation": gen, "vp_mae": vp_mae, "pool": {"trajectories": len(pool),
                                                            "steps": pool.steps,
                                                            "seconds": pool_s},
               "decisions_per_s": {"adapted": rate, "RobustMPC": mpc_rate},
               "vp_train_steps": vh["steps"], "seconds": time.perf_counter() - t_start}
    gap = (m_test["qoe"] / mpc["test"]["qoe"] - 1) * 100
    return Result(
        summary=(f"Adapted tiny GPT-2 (frozen, LoRA r={cfg.lora_rank}) QoE {m_test['qoe']:.3f} "
                 f"vs RobustMPC {mpc['test']['qoe']:.3f} ({gap:+.1f}%), BBA "
                 f"{qoe['BBA']['test']['qoe']:.3f} on same-generator traces; unseen "
                 f"{m_unseen['qoe']:.3f} vs {mpc['unseen']['qoe']:.3f} / "
                 f"{qoe['BBA']['unseen']['qoe']:.3f}. Networking head: 1 pass, 100% valid; text "
                 f"answers: {gen['text']['passes_per_decision']:.1f} passes, "
                 f"{100 * gen['text']['invalid_fraction']:.1f}% invalid. VP MAE "
                 f"{vp_mae['NetLLM (tiny GPT-2 + LoRA)']:.2f} vs LR "
                 f"{vp_mae['linear regression']:.2f} deg."),
        setup=(f"Synthetic traces: {cfg.n_train_traces} train (U[0.5,5] Mbps, hold 1-5), "
               f"{cfg.n_test_traces} test (same generator), {cfg.n_unseen_traces} unseen "
               "(U[0.2,2.5] Mbps, hold 1-2); synthetic VBR video, 48 x 4 s chunks, 6 levels. "
               f"Pool: RobustMPC, BBA, rate-based, eps-MPC ({cfg.epsilon}) with delay noise, "
               f"{len(pool)} trajectories / {pool.steps} steps. Model: GPT-2 {cfg.n_layer} "
               f"layers d={cfg.n_embd} random init, frozen, peft LoRA r={cfg.lora_rank} on "
               f"c_attn; one MLP state token per step (R, s, a); window {cfg.window}; AdamW "
               f"{cfg.lr}, batch {cfg.batch_size}, clip 0.25, {cfg.train_steps} steps, best of the "
               f"evaluations every {cfg.eval_every} steps on {cfg.n_valid_traces} validation "
               "traces (train generator); greedy; "
               "target return = pool max. VP: synthetic head motion 5 Hz, 10 -> 20 samples."),
        claims=claims, metrics=metrics, tables=tables,
        figures=["qoe.png", "timeline.png", "training_vp.png"],
        deviations=[
            "Backbone: a 2-layer, 64-wide GPT-2 with random weights (and, in the ablation, the "
            "22.7M-parameter pre-trained all-MiniLM-L6-v2 made causal) instead of Llama2-7B; "
            "the paper's +14.5-36.6% over baselines relies on a 7B pre-trained model and real "
            "FCC/Norway traces with GENET in the pool and is not expected here.",
            "Traces and video are synthetic (the paper uses FCC/Norway traces and two real "
            "videos); the loaders for cooked/Mahimahi traces and video_size files exist and are "
            "tested on small files.",
            "The state is one token (an MLP over the flattened Pensieve state) instead of six "
            "per-component tokens (the encoder supports both); window 10 instead of 20; "
            "returns-to-go scaled by 10 instead of 1000; lr 1e-3 instead of 1e-4; a wall-clock "
            "budget of seconds instead of 80 epochs; greedy actions instead of sampling.",
            "The pool has no GENET/Pensieve policy (TF1 code); eps-MPC adds exploration.",
            "Text answers: a tiny LM head over digits trained briefly on the same pool, "
            "greedy, no KV cache; it shows the pass count and invalid-answer mechanism, not "
            "the paper's 3.84 s.",
            "VP uses synthetic head motion and one-pass prediction of all 20 future samples "
            "(the official code predicts auto-regressively); no saliency images.",
        ],
    )


__all__ = ["Config", "run"]
