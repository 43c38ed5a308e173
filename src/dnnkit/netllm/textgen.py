"""The text-answer baseline of NetLLM's motivation (spec 2.3, experiment N3).

The same backbone, with an LM head over a digit vocabulary instead of the networking head,
answers the bitrate in kbps as text (e.g. ``"1850<eos>"``) generated greedily token by token:
several backbone passes per decision, and the string may not parse to a legal bitrate.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Real,
    Seed,
    check_int,
    check_interval,
    param_error,
    validate_params,
)
from dnnkit.netllm._loop import seeded_training
from dnnkit.netllm.model import NetLLMPolicy, _run_backbone
from dnnkit.netllm.rl import ReturnConditionedDataset

__all__ = ["TextAnswerPolicy", "train_text_answers"]

EOS = 10
VOCAB = 11
MAX_DIGITS = 6


def _digits(kbps: float) -> list[int]:
    return [int(c) for c in str(int(round(kbps)))] + [EOS]


@validate_params({"core": Instance(NetLLMPolicy)})
class TextAnswerPolicy(nn.Module):
    """``core``'s backbone and tokens, answering with digit tokens through an LM head."""

    def __init__(self, core: NetLLMPolicy, bitrates_kbps):
        super().__init__()
        if not isinstance(core, NetLLMPolicy):
            raise TypeError(param_error("core", "netllm.TextAnswerPolicy", "a NetLLMPolicy",
                                        type(core).__name__))
        d = core.encoder.d_model
        self.core = core
        self.kbps = [float(b) for b in bitrates_kbps]
        if len(self.kbps) != core.n_actions:
            raise ValueError(param_error("bitrates_kbps", "netllm.TextAnswerPolicy",
                                         f"{core.n_actions} bitrates", len(self.kbps)))
        self.token_embedding = nn.Embedding(VOCAB, d)
        self.lm_head = nn.Linear(d, VOCAB)
        self.passes = 0
        self.invalid = 0
        self.decisions = 0

    @validate_params({"batch": Instance(dict)})
    def loss(self, batch: dict) -> torch.Tensor:
        """Teacher-forced CE of the last step's answer digits given the window before it."""
        c = self.core
        p = next(c.encoder.parameters())
        st = {k: v.to(p.device, p.dtype) for k, v in batch["states"].items()}
        acts = batch["actions"].to(p.device)
        mask = batch["mask"]
        last = mask.long().sum(1) - 1                                    # last valid step
        tok = c._step_tokens(st, batch["returns_to_go"].to(p.device, p.dtype),
                             batch["timesteps"].to(p.device), acts)      # (B, T, k, d)
        B, T, k, d = tok.shape
        losses = []
        for b in range(B):  # windows end at different steps when padded: one sequence each
            t = int(last[b])
            ctx = tok[b, :t].reshape(-1, d)
            cur = tok[b, t, :-1]
            digits = _digits(self.kbps[int(acts[b, t])])
            dig = self.token_embedding(torch.tensor(digits[:-1], device=p.device))
            seq = torch.cat([ctx, cur, dig], 0)
            h = _run_backbone(c.backbone, c.encoder.norm(seq.unsqueeze(0)))[0]
            pos = len(ctx) + len(cur) - 1 + torch.arange(len(digits), device=p.device)
            losses.append(nn.functional.cross_entropy(self.lm_head(h[pos]),
                                                      torch.tensor(digits, device=p.device)))
        return torch.stack(losses).mean()

    def reset(self) -> None:
        self.core.reset()

    @torch.no_grad()
    @validate_params({"state": Instance(dict), "return_to_go": Real(), "timestep": Int(0, 1 << 30),
                      "last_level": Int(0, 1 << 20)})
    def act_text(self, state: dict, return_to_go: float, timestep: int, last_level: int
                 ) -> tuple[int, bool, int]:
        """Generate the answer greedily; returns ``(level, valid, passes)``. An invalid answer
        falls back to ``last_level``."""
        c = self.core
        p = next(c.encoder.parameters())
        st = {k: torch.as_tensor(state[k], dtype=p.dtype, device=p.device).reshape(1, 1, -1)
              for k in c.encoder.keys}
        ts = torch.tensor([[timestep]], device=p.device)
        rt = torch.tensor([[float(return_to_go)]], dtype=p.dtype, device=p.device)
        cur = c._step_tokens(st, rt, ts)[0, 0]
        seq = torch.cat([*c._context, cur], 0) if c._context else cur
        out: list[int] = []
        passes = 0
        for _ in range(MAX_DIGITS):
            h = _run_backbone(c.backbone, c.encoder.norm(seq.unsqueeze(0)))[0, -1]
            passes += 1
            t = int(torch.argmax(self.lm_head(h)))
            if t == EOS:
                break
            out.append(t)
            seq = torch.cat([seq, self.token_embedding(torch.tensor([t], device=p.device))], 0)
        text = "".join(str(d) for d in out)
        valid = bool(text) and text[0] != "0" and float(text) in self.kbps
        level = self.kbps.index(float(text)) if valid else int(last_level)
        a_tok = c.action_embedding(torch.tensor(level, device=p.device)) + \
            c.encoder.time_embedding(ts.clamp(0, c.encoder.max_steps))[0, 0]
        if c._context.maxlen:
            c._context.append(torch.cat([cur, a_tok.unsqueeze(0)], 0))
        return level, valid, passes


class TextAgent:
    """Environment adapter for :class:`TextAnswerPolicy` (counts passes, invalid answers and
    decision time)."""

    def __init__(self, model: TextAnswerPolicy, target_return: float):
        self.model, self.target = model, float(target_return)
        self.passes = self.invalid = self.decisions = 0
        self.seconds = 0.0
        self.reset()

    def reset(self) -> None:
        self.model.reset()
        self.R, self.t = self.target, 0

    def act(self, obs: dict) -> int:
        t0 = time.perf_counter()
        if self.t > 0:
            self.R -= self.model.core.normalize_reward(float(obs["reward"]))
        lvl, ok, n = self.model.act_text({k: obs[k] for k in self.model.core.encoder.keys},
                                         self.R, self.t, int(obs["last_level"]))
        self.t += 1
        self.passes += n
        self.invalid += int(not ok)
        self.decisions += 1
        self.seconds += time.perf_counter() - t0
        return lvl


@validate_params({"model": Instance(TextAnswerPolicy), "data": Instance(ReturnConditionedDataset),
                  "lr": Real(0.0, 10.0, closed="right"), "steps": Int(0, 1 << 30),
                  "batch_size": Int(1, 1 << 16), "clip": Real(0.0, 1e6, closed="right"),
                  "time_budget_s": Optional_(Real(0.0, 1e7)), "seed": Seed()})
def train_text_answers(model: TextAnswerPolicy, data: ReturnConditionedDataset, *,
                       lr: float = 1e-3, steps: int = 200, batch_size: int = 8,
                       clip: float = 0.25, time_budget_s: float | None = None, seed=0) -> dict:
    """AdamW on the teacher-forced digit loss (same trainable parts as the head variant)."""
    where = "netllm.train_text_answers"
    lr = check_interval(lr, "lr", 0.0, 10.0, closed="right", where=where)
    steps = check_int(steps, "steps", 0, 1 << 30, where=where)
    batch_size = check_int(batch_size, "batch_size", 1, 1 << 16, where=where)
    model.core.reward_stats.copy_(torch.tensor([data.reward_min, data.reward_max,
                                                data.return_scale, data.gamma,
                                                data.max_return]))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    gen = make_generator(seed)
    losses = []
    t0 = time.perf_counter()
    with seeded_training(model, gen) as reseed:
        for _ in range(steps):
            reseed()
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
            idx = torch.randint(len(data), (batch_size,), generator=gen)
            loss = model.loss(data.batch(idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            losses.append(float(loss.detach()))
    return {"loss": losses, "steps": len(losses), "seconds": time.perf_counter() - t0,
            "final_loss": float(np.mean(losses[-10:])) if losses else float("nan")}
