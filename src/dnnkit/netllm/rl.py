"""Offline RL as return-conditioned sequence modelling (NetLLM DD-LRNA, spec section 2.4).

Experience pool (collected from existing policies, saved as safetensors + JSON), returns-to-go
with min-max reward normalisation and the official scaling, fixed-length windows, and a
resumable trainer (AdamW, linear warm-up, gradient accumulation, clipping, time budget, best
checkpoint by an evaluation callback).
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dnnkit.core.checkpoint import (
    load_tensors,
    load_training_state,
    save_tensors,
    save_training_state,
)
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    PathArg,
    Real,
    Seed,
    Sequence_,
    Tensor,
    check_int,
    check_interval,
    param_error,
    validate_params,
)
from dnnkit.netllm._loop import seeded_training
from dnnkit.netllm.model import NetLLMPolicy

__all__ = ["Trajectory", "ExperiencePool", "discount_returns", "ReturnConditionedDataset",
           "train_offline_rl", "NetLLMAgent"]

log = logging.getLogger("dnnkit")


@validate_params({"rewards": Tensor(ndim=1), "gamma": Real(0.0, 1.0),
                  "scale": Real(0.0, None, closed="neither")})
def discount_returns(rewards, gamma: float = 1.0, scale: float = 1.0) -> torch.Tensor:
    """Returns-to-go ``R_t = sum_{i >= t} gamma^(i-t) r_i``, divided by ``scale`` (the official
    ``discount_returns``; spec 2.4 step 2). ``rewards`` is 1-D."""
    r = torch.as_tensor(rewards, dtype=torch.float64)
    where = "netllm.discount_returns"
    gamma = check_interval(gamma, "gamma", 0.0, 1.0, where=where)
    scale = check_interval(scale, "scale", 0.0, None, closed="neither", where=where)
    if r.ndim != 1:
        raise ValueError(param_error("rewards", where, "a 1-D sequence", f"shape {tuple(r.shape)}"))
    out = torch.empty_like(r)
    acc = 0.0
    for i in range(len(r) - 1, -1, -1):
        acc = float(r[i]) + gamma * acc
        out[i] = acc
    return out / scale


@validate_params({"states": Instance(dict)})
@dataclass
class Trajectory:
    """One episode: ``states[k]`` of shape ``(T, ...)``, ``actions`` ``(T,)`` int, ``rewards``
    ``(T,)``."""

    states: dict[str, torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor

    def __post_init__(self):
        where = "netllm.Trajectory"
        if not isinstance(self.states, dict) or not self.states:
            raise ValueError(param_error("states", where, "a non-empty dict of tensors",
                                         type(self.states).__name__))
        self.states = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32)
                       if not isinstance(v, torch.Tensor) else v.float()
                       for k, v in self.states.items()}
        self.actions = torch.as_tensor(self.actions).long().reshape(-1)
        self.rewards = torch.as_tensor(self.rewards, dtype=torch.float32).reshape(-1)
        T = len(self.actions)
        if T == 0:
            raise ValueError(param_error("actions", where, "a non-empty sequence", "length 0"))
        bad = {k: len(v) for k, v in self.states.items() if len(v) != T}
        if len(self.rewards) != T or bad:
            raise ValueError(param_error("rewards", where, f"length {T} like actions (and every "
                                         "state component)",
                                         {"rewards": len(self.rewards), **bad}))
        if not torch.isfinite(self.rewards).all():
            raise ValueError(param_error("rewards", where, "finite", "non-finite values"))
        for k, v in self.states.items():
            if not torch.isfinite(v).all():
                raise ValueError(param_error("states", where, "finite", f"non-finite {k!r}"))

    def __len__(self) -> int:
        return len(self.actions)


@validate_params({"n_actions": Int(1, 1 << 20)})
class ExperiencePool:
    """A list of trajectories with a fixed action count; saved as safetensors + JSON metadata."""

    def __init__(self, n_actions: int, trajectories: Sequence[Trajectory] = ()):
        self.n_actions = check_int(n_actions, "n_actions", 1, 1 << 20,
                                   where="netllm.ExperiencePool")
        self.trajectories: list[Trajectory] = []
        for t in trajectories:
            self.add(t)

    @validate_params({"traj": Instance(Trajectory)})
    def add(self, traj: Trajectory) -> None:
        """Append a trajectory (actions must lie in ``[0, n_actions)``, same state keys)."""
        where = "netllm.ExperiencePool.add"
        if not isinstance(traj, Trajectory):
            raise TypeError(param_error("traj", where, "a Trajectory", type(traj).__name__))
        a = traj.actions
        if a.min() < 0 or a.max() >= self.n_actions:
            raise ValueError(param_error("traj", where, f"actions in [0, {self.n_actions})",
                                         f"range [{int(a.min())}, {int(a.max())}]"))
        if self.trajectories and set(traj.states) != set(self.trajectories[0].states):
            raise ValueError(param_error("traj", where, "the state keys of the pool "
                                         f"{sorted(self.trajectories[0].states)}",
                                         sorted(traj.states)))
        self.trajectories.append(traj)

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def steps(self) -> int:
        return sum(len(t) for t in self.trajectories)

    def returns(self) -> torch.Tensor:
        """Undiscounted raw episode returns."""
        return torch.stack([t.rewards.sum() for t in self.trajectories])

    @validate_params({"path": PathArg()})
    def save(self, path: str | Path) -> Path:
        """Write the pool as one safetensors file (concatenated along time + offsets)."""
        if not self.trajectories:
            raise ValueError(param_error("pool", "netllm.ExperiencePool.save", "non-empty", 0))
        keys = sorted(self.trajectories[0].states)
        tensors = {f"states.{k}": torch.cat([t.states[k] for t in self.trajectories])
                   for k in keys}
        tensors["actions"] = torch.cat([t.actions for t in self.trajectories])
        tensors["rewards"] = torch.cat([t.rewards for t in self.trajectories])
        tensors["lengths"] = torch.tensor([len(t) for t in self.trajectories])
        return save_tensors(path, tensors, {"n_actions": self.n_actions, "keys": keys,
                                            "format": "dnnkit.netllm.ExperiencePool/1"})

    @classmethod
    @validate_params({"path": PathArg()})
    def load(cls, path: str | Path) -> ExperiencePool:
        """Read a pool written by :meth:`save` (no pickle)."""
        tensors, meta = load_tensors(path)
        if meta.get("format") != "dnnkit.netllm.ExperiencePool/1":
            raise ValueError(param_error("path", "netllm.ExperiencePool.load",
                                         "an experience pool file", str(path)))
        pool = cls(meta["n_actions"])
        start = 0
        for n in tensors["lengths"].tolist():
            sl = slice(start, start + n)
            pool.add(Trajectory({k: tensors[f"states.{k}"][sl] for k in meta["keys"]},
                                tensors["actions"][sl], tensors["rewards"][sl]))
            start += n
        return pool

    @classmethod
    @validate_params({"episodes_per_policy": Int(1, 1 << 20)})
    def collect(cls, env, policies: Sequence, episodes_per_policy: int, *,
                state_keys: Sequence[str] | None = None) -> ExperiencePool:
        """Run each policy for ``episodes_per_policy`` episodes on ``env`` (random trace and
        offset from the env's own seeded generator) and store ``(s_t, a_t, r_t)``.

        ``env`` follows the ``reset() -> obs`` / ``step(a) -> (obs, r, done, info)`` protocol
        with dict observations; array-valued entries (or ``state_keys``) are stored.
        """
        where = "netllm.ExperiencePool.collect"
        episodes_per_policy = check_int(episodes_per_policy, "episodes_per_policy", 1, 1 << 20,
                                        where=where)
        if not policies:
            raise ValueError(param_error("policies", where, "a non-empty sequence", policies))
        pool = cls(env.n_actions)
        for pol in policies:
            for _ in range(episodes_per_policy):
                obs = env.reset()
                pol.reset()
                keys = list(state_keys) if state_keys is not None else [
                    k for k, v in obs.items() if isinstance(v, np.ndarray)]
                states = {k: [] for k in keys}
                acts, rews = [], []
                done = False
                while not done:
                    a = int(pol.act(obs))
                    for k in keys:
                        states[k].append(np.asarray(obs[k], dtype=np.float32))
                    obs, r, done, _ = env.step(a)
                    acts.append(a)
                    rews.append(r)
                pool.add(Trajectory({k: np.stack(v) for k, v in states.items()}, acts, rews))
        return pool


@validate_params({"pool": Instance(ExperiencePool), "window": Int(1, 100_000),
                  "gamma": Real(0.0, 1.0), "return_scale": Real(0.0, 1e12, closed="right"),
                  "normalize_rewards": Instance(bool)})
class ReturnConditionedDataset(torch.utils.data.Dataset):
    """Windows of ``window`` consecutive steps with normalised returns-to-go (spec 2.4 step 2-3).

    Rewards are min-max normalised to [0, 1] over the whole pool (``normalize_rewards``), then
    ``R_t = sum_{i>=t} gamma^(i-t) r_i / return_scale``. Every start index of every trajectory
    gives one window; windows of short trajectories are padded on the right and masked.
    """

    def __init__(self, pool: ExperiencePool, *, window: int = 20, gamma: float = 1.0,
                 return_scale: float = 1000.0, normalize_rewards: bool = True,
                 state_keys: Sequence[str] | None = None):
        where = "netllm.ReturnConditionedDataset"
        if not isinstance(pool, ExperiencePool):
            raise TypeError(param_error("pool", where, "an ExperiencePool", type(pool).__name__))
        if len(pool) == 0:
            raise ValueError(param_error("pool", where, "a non-empty experience pool",
                                         "an empty pool"))
        self.window = check_int(window, "window", 1, 100_000, where=where)
        self.gamma = check_interval(gamma, "gamma", 0.0, 1.0, where=where)
        self.return_scale = check_interval(return_scale, "return_scale", 0.0, 1e12,
                                           closed="neither", where=where)
        self.n_actions = pool.n_actions
        allr = torch.cat([t.rewards for t in pool.trajectories])
        lo, hi = float(allr.min()), float(allr.max())
        if normalize_rewards:
            if not hi > lo:
                raise ValueError(param_error("pool", where, "rewards that are not all equal "
                                             "(min-max normalisation)", f"all rewards = {lo}"))
        else:
            lo, hi = 0.0, 1.0
        self.reward_min, self.reward_max = lo, hi
        keys = list(state_keys) if state_keys is not None else sorted(pool.trajectories[0].states)
        self.keys = keys
        self.trajs = []
        self.index: list[tuple[int, int]] = []
        max_ret = -math.inf
        for ti, t in enumerate(pool.trajectories):
            r = (t.rewards.double() - lo) / (hi - lo)
            rtg = discount_returns(r, self.gamma, self.return_scale).float()
            max_ret = max(max_ret, float(rtg[0]))
            self.trajs.append(({k: t.states[k] for k in keys}, t.actions, rtg))
            for s in range(max(len(t) - self.window, 0) + 1):
                self.index.append((ti, s))
        self.max_return = max_ret
        self.max_len = max(len(t) for t in pool.trajectories)

    @validate_params({"r": Real()})
    def normalize_reward(self, r: float) -> float:
        return (r - self.reward_min) / (self.reward_max - self.reward_min) / self.return_scale

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        ti, s = self.index[i]
        states, actions, rtg = self.trajs[ti]
        e = min(s + self.window, len(actions))
        n, pad = e - s, self.window - (e - s)

        def cut(x):
            x = x[s:e]
            if pad:
                x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
            return x

        return {"states": {k: cut(v) for k, v in states.items()}, "actions": cut(actions),
                "returns_to_go": cut(rtg), "timesteps": cut(torch.arange(len(actions))),
                "mask": torch.arange(self.window) < n}

    @validate_params({"indices": Instance(list, tuple, range, torch.Tensor, np.ndarray)})
    def batch(self, indices) -> dict:
        items = [self[int(i)] for i in indices]
        return {"states": {k: torch.stack([it["states"][k] for it in items]) for k in self.keys},
                **{f: torch.stack([it[f] for it in items])
                   for f in ("actions", "returns_to_go", "timesteps", "mask")}}


def _trainable_state(policy: nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in policy.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in policy.state_dict().items()
            if k in names or k == "reward_stats"}


@validate_params({"policy": Instance(NetLLMPolicy), "lr": Real(0.0, 10.0, closed="right"),
                  "weight_decay": Real(0.0, 10.0), "warmup_steps": Int(0, 1 << 30),
                  "batch_size": Int(1, 1 << 16), "grad_accum": Int(1, 1 << 16),
                  "clip": Real(0.0, 1e6, closed="right"), "steps": Int(0, 1 << 30),
                  "time_budget_s": Optional_(Real(0.0, 1e7)), "eval_fn": Optional_(Callable_()),
                  "eval_every": Int(1, 1 << 30), "checkpoint": Optional_(PathArg()),
                  "checkpoint_every": Int(1, 1 << 30), "seed": Seed()})
def train_offline_rl(policy: NetLLMPolicy, data: ReturnConditionedDataset, *, lr: float = 1e-4,
                     weight_decay: float = 1e-4, warmup_steps: int = 2000, batch_size: int = 1,
                     grad_accum: int = 32, clip: float = 0.25, steps: int = 1000,
                     time_budget_s: float | None = None,
                     eval_fn: Callable[[NetLLMPolicy], float] | None = None,
                     eval_every: int = 100, checkpoint: str | Path | None = None,
                     checkpoint_every: int = 100, seed=0) -> dict:
    """Train the policy by cross-entropy on the actions of pool windows (spec 2.4 step 3).

    ``L = (1/w) sum_i CE(a_i, a_hat_i)`` per window; AdamW, linear warm-up then constant,
    ``grad_accum`` micro-batches of ``batch_size`` windows per optimizer step, gradient-norm clip.
    Stops after ``steps`` optimizer steps or ``time_budget_s`` seconds. With ``eval_fn`` (higher
    is better) the best evaluated trainable state is restored at the end. With ``checkpoint``
    the full training state (weights, optimizer, RNG, step) is saved every ``checkpoint_every``
    steps and an existing file is resumed from.

    Returns ``{"loss": [...], "steps": n, "evals": [(step, score)], "best_score", "seconds"}``.
    """
    where = "netllm.train_offline_rl"
    if not isinstance(policy, NetLLMPolicy):
        raise TypeError(param_error("policy", where, "a NetLLMPolicy", type(policy).__name__))
    if not isinstance(data, ReturnConditionedDataset):
        raise TypeError(param_error("data", where, "a ReturnConditionedDataset",
                                    type(data).__name__))
    if data.n_actions != policy.n_actions:
        raise ValueError(param_error("data", where, f"{policy.n_actions} actions like the policy",
                                     data.n_actions))
    lr = check_interval(lr, "lr", 0.0, 10.0, closed="right", where=where)
    weight_decay = check_interval(weight_decay, "weight_decay", 0.0, 10.0, where=where)
    warmup_steps = check_int(warmup_steps, "warmup_steps", 0, 1 << 30, where=where)
    batch_size = check_int(batch_size, "batch_size", 1, 1 << 16, where=where)
    grad_accum = check_int(grad_accum, "grad_accum", 1, 1 << 16, where=where)
    clip = check_interval(clip, "clip", 0.0, 1e6, closed="right", where=where)
    steps = check_int(steps, "steps", 0, 1 << 30, where=where)
    if time_budget_s is not None:
        time_budget_s = check_interval(time_budget_s, "time_budget_s", 0.0, 1e7, where=where)
    eval_every = check_int(eval_every, "eval_every", 1, 1 << 30, where=where)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", 1, 1 << 30, where=where)
    if policy.window < data.window:
        raise ValueError(param_error("data", where, f"windows of at most the policy's "
                                     f"{policy.window} steps", data.window))

    p0 = next(policy.parameters())
    dev = p0.device
    policy.reward_stats.copy_(torch.tensor([data.reward_min, data.reward_max, data.return_scale,
                                            data.gamma, data.max_return]))
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps else 1.0)
    gen = make_generator(seed)
    start, hist = 0, {"loss": [], "evals": [], "best_score": None}
    best_state = None
    if checkpoint is not None and Path(checkpoint).is_file():
        meta = load_training_state(checkpoint, policy, opt, generator=gen)
        start = int(meta["step"])
        extra = meta.get("extra", {})
        hist.update(extra.get("hist", {}))
        sched.last_epoch = start - 1
        for g in opt.param_groups:
            g["lr"] = lr * (min(1.0, start / warmup_steps) if warmup_steps else 1.0)
        log.info("netllm: resumed offline RL from step %d", start)

    t0 = time.perf_counter()
    step = start
    with seeded_training(policy, gen, dev) as reseed:
        while step < steps:
            reseed()
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(grad_accum):
                idx = torch.randint(len(data), (batch_size,), generator=gen)
                b = data.batch(idx)
                st = {k: v.to(dev, p0.dtype) for k, v in b["states"].items()}
                logits = policy(st, b["actions"].to(dev), b["returns_to_go"].to(dev, p0.dtype),
                                b["timesteps"].to(dev))
                m = b["mask"].to(dev)
                ce = nn.functional.cross_entropy(logits[m].float(), b["actions"].to(dev)[m])
                (ce / grad_accum).backward()
                total += float(ce.detach()) / grad_accum
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
            step += 1
            hist["loss"].append(total)
            if eval_fn is not None and (step % eval_every == 0 or step == steps):
                policy.eval()
                score = float(eval_fn(policy))
                policy.train()
                hist["evals"].append((step, score))
                if hist["best_score"] is None or score > hist["best_score"]:
                    hist["best_score"] = score
                    best_state = _trainable_state(policy)
            if checkpoint is not None and step % checkpoint_every == 0:
                save_training_state(checkpoint, policy, opt, generator=gen, step=step,
                                    extra={"hist": hist})
    if best_state is not None:
        policy.load_state_dict(best_state, strict=False)
    hist["steps"] = step
    hist["seconds"] = time.perf_counter() - t0
    return hist


@validate_params({"policy": Instance(NetLLMPolicy), "target_return": Real(),
                  "sample": Instance(bool), "seed": Seed(),
                  "max_return": Optional_(Real())})
class NetLLMAgent:
    """Adapter from :class:`NetLLMPolicy` to the environment's ``reset()/act(obs)`` protocol.

    Conditions on ``target_return`` (normalised units; default: the pool's maximum return times
    ``target_return_scale``) and updates ``R_{t+1} = R_t - r_t`` with each observed reward
    (``obs["reward"]``), spec 2.4 step 4. Warns when the target is more than twice the best
    return of the pool (``max_return``, default: the one recorded in the policy by training).
    """

    def __init__(self, policy: NetLLMPolicy, target_return: float, *, sample: bool = False,
                 seed=0, max_return: float | None = None):
        if not isinstance(policy, NetLLMPolicy):
            raise TypeError(param_error("policy", "netllm.NetLLMAgent", "a NetLLMPolicy",
                                        type(policy).__name__))
        self.policy = policy
        self.target = check_interval(target_return, "target_return", None, None,
                                     where="netllm.NetLLMAgent")
        if max_return is None and math.isfinite(float(policy.reward_stats[4])):
            max_return = float(policy.reward_stats[4])
        if max_return is not None and self.target > 2.0 * max(max_return, 1e-12):
            warnings.warn(f"NetLLMAgent: target return {self.target:.4g} is far above the "
                          f"pool's maximum {max_return:.4g} (out-of-distribution conditioning).",
                          UserWarning, stacklevel=2)
        self.sample = bool(sample)
        self.gen = make_generator(seed)
        self.keys = policy.encoder.keys
        self.reset()

    def reset(self) -> None:
        self.policy.reset()
        self.R = self.target
        self.Rb: torch.Tensor | None = None
        self.t = 0

    @validate_params({"obs_list": Sequence_(Instance(dict))})
    def act_batch(self, obs_list: list[dict]) -> list[int]:
        """Greedy decisions for synchronised episodes (see :meth:`NetLLMPolicy.act_batch`)."""
        if self.t == 0:
            self.Rb = torch.full((len(obs_list),), self.target, dtype=torch.float64)
        elif self.Rb is None:
            raise RuntimeError("netllm.NetLLMAgent.act_batch: this episode was started with "
                               "act(); call reset() before batched episodes.")
        elif len(obs_list) != len(self.Rb):
            raise ValueError(param_error("obs_list", "netllm.NetLLMAgent.act_batch",
                                         f"{len(self.Rb)} observations (one per running "
                                         "episode; reset() starts new ones)", len(obs_list)))
        else:
            self.Rb -= torch.tensor([self.policy.normalize_reward(float(o["reward"]))
                                     for o in obs_list], dtype=torch.float64)
        st = {k: np.stack([np.asarray(o[k], np.float32) for o in obs_list]) for k in self.keys}
        a = self.policy.act_batch(st, self.Rb, self.t)
        self.t += 1
        return [int(x) for x in a.tolist()]

    @validate_params({"obs": Instance(dict)})
    def act(self, obs: dict) -> int:
        if self.t > 0:
            self.R -= self.policy.normalize_reward(float(obs["reward"]))
        a = self.policy.act({k: obs[k] for k in self.keys}, self.R, self.t, sample=self.sample,
                            generator=self.gen)
        self.t += 1
        return a


def clone_policy(policy: nn.Module) -> nn.Module:
    return copy.deepcopy(policy)
