"""Multimodal encoder, networking heads and the return-conditioned policy (spec 2.2-2.4).

Each task input component becomes one token of the backbone's width: a modality-specific
feature encoder, a linear projection to ``d_model``, a learned timestep embedding shared by all
tokens of one decision step, and a LayerNorm over the stacked sequence. The networking head
replaces the LM head and answers in one forward pass, always inside the valid range.
"""

from __future__ import annotations

import logging
import warnings
from collections import deque

import torch
from torch import nn

from dnnkit.core.validation import (
    Instance,
    Int,
    Options,
    Real,
    Tensor,
    check_int,
    param_error,
    validate_params,
)
from dnnkit.netllm.backbone import _check_backbone, max_positions

__all__ = ["ScalarEncoder", "SeriesConv1dEncoder", "MLPEncoder", "PrecomputedEmbedding",
           "MultimodalEncoder", "NetworkingHead", "NetLLMPolicy"]

log = logging.getLogger("dnnkit")


@validate_params({"features": Int(1, 1 << 16)})
class ScalarEncoder(nn.Module):
    """``(B, T, 1)`` or ``(B, T)`` scalar -> ``(B, T, F)``: Linear(1, F) + LeakyReLU."""

    def __init__(self, features: int = 64):
        super().__init__()
        self.out_features = check_int(features, "features", 1, 1 << 16,
                                      where="netllm.ScalarEncoder")
        self.net = nn.Sequential(nn.Linear(1, features), nn.LeakyReLU())

    @validate_params({"x": Tensor()})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(-1)
        return self.net(x[..., :1])


@validate_params({"length": Int(1, 1 << 16), "features": Int(1, 1 << 16),
                  "kernel": Int(1, 1 << 16), "channels": Int(1, 1 << 12)})
class SeriesConv1dEncoder(nn.Module):
    """``(B, T, L)`` series -> ``(B, T, F)``: Conv1d(1, C, kernel) + LeakyReLU + flatten + Linear.

    The official ABR encoder uses Conv1d(1, F, 4) over the 6-sample histories and kernel 6 over
    the next-chunk sizes; the flattened map is projected back to ``features``.
    """

    def __init__(self, length: int, features: int = 64, *, kernel: int = 4, channels: int = 16):
        super().__init__()
        where = "netllm.SeriesConv1dEncoder"
        length = check_int(length, "length", 1, 1 << 16, where=where)
        kernel = check_int(kernel, "kernel", 1, length, where=where)
        self.out_features = check_int(features, "features", 1, 1 << 16, where=where)
        channels = check_int(channels, "channels", 1, 1 << 12, where=where)
        self.length = length
        self.conv = nn.Conv1d(1, channels, kernel)
        self.proj = nn.Linear(channels * (length - kernel + 1), features)
        self.act = nn.LeakyReLU()

    @validate_params({"x": Tensor()})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        h = self.act(self.conv(x.reshape(-1, 1, x.shape[-1])))
        return self.act(self.proj(h.flatten(1))).reshape(*lead, -1)


@validate_params({"in_features": Int(1, 1 << 20), "features": Int(1, 1 << 16),
                  "hidden": Int(1, 1 << 16)})
class MLPEncoder(nn.Module):
    """``(B, T, in)`` -> ``(B, T, F)``: a 2-layer MLP (e.g. a flattened 6 x 6 ABR state)."""

    def __init__(self, in_features: int, features: int = 64, *, hidden: int = 128):
        super().__init__()
        where = "netllm.MLPEncoder"
        in_features = check_int(in_features, "in_features", 1, 1 << 20, where=where)
        self.out_features = check_int(features, "features", 1, 1 << 16, where=where)
        hidden = check_int(hidden, "hidden", 1, 1 << 16, where=where)
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.LeakyReLU(),
                                 nn.Linear(hidden, features), nn.LeakyReLU())

    @validate_params({"x": Tensor()})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@validate_params({"features": Int(1, 1 << 20)})
class PrecomputedEmbedding(nn.Module):
    """Already-computed features (e.g. ViT image embeddings of size 768) passed through as is."""

    def __init__(self, features: int):
        super().__init__()
        self.out_features = check_int(features, "features", 1, 1 << 20,
                                      where="netllm.PrecomputedEmbedding")

    @validate_params({"x": Tensor()})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.out_features:
            raise ValueError(param_error("x", "netllm.PrecomputedEmbedding",
                                         f"features of size {self.out_features}",
                                         f"shape {tuple(x.shape)}"))
        return x


@validate_params({"encoders": Instance(dict), "d_model": Int(1, 1 << 16),
                  "max_steps": Int(1, 1 << 20), "layernorm": Instance(bool)})
class MultimodalEncoder(nn.Module):
    """Task inputs -> token embeddings of the backbone's width (spec section 2.2).

    Parameters
    ----------
    encoders : dict[str, nn.Module]
        One feature encoder per input component, in token order; each maps ``(B, T, ...)`` to
        ``(B, T, F_i)`` and exposes ``out_features`` (or pass any module and its width is probed
        on first use).
    d_model : int
        Backbone hidden size.
    max_steps : int
        Size of the timestep embedding (``nn.Embedding(max_steps + 1, d_model)``).
    layernorm : bool
        LayerNorm over the stacked token sequence (official ``embed_ln``).
    """

    def __init__(self, encoders: dict[str, nn.Module], d_model: int, *, max_steps: int = 1000,
                 layernorm: bool = True):
        super().__init__()
        where = "netllm.MultimodalEncoder"
        if not isinstance(encoders, dict) or not encoders:
            raise ValueError(param_error("encoders", where, "a non-empty dict name -> module",
                                         encoders))
        for k, e in encoders.items():
            if not isinstance(e, nn.Module):
                raise TypeError(param_error("encoders", where, "a dict of nn.Module",
                                            f"{k!r}: {type(e).__name__}"))
            if not isinstance(getattr(e, "out_features", None), int):
                raise TypeError(param_error("encoders", where, "modules with an int "
                                            "`out_features`", f"{k!r}: {type(e).__name__}"))
        self.d_model = check_int(d_model, "d_model", 1, 1 << 16, where=where)
        self.max_steps = check_int(max_steps, "max_steps", 1, 1 << 20, where=where)
        self.keys = list(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.proj = nn.ModuleDict({k: nn.Linear(e.out_features, d_model)
                                   for k, e in encoders.items()})
        self.time_embedding = nn.Embedding(max_steps + 1, d_model)
        self.norm = nn.LayerNorm(d_model) if layernorm else nn.Identity()

    @property
    def n_tokens(self) -> int:
        return len(self.keys)

    @validate_params({"inputs": Instance(dict), "timesteps": Tensor()})
    def tokens(self, inputs: dict[str, torch.Tensor], timesteps: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_components, d_model)`` before the LayerNorm, timestep embedding added."""
        missing = [k for k in self.keys if k not in inputs]
        if missing:
            raise KeyError(f"The 'inputs' parameter of netllm.MultimodalEncoder lacks components "
                           f"{missing}; expected {self.keys}.")
        t = self.time_embedding(timesteps.clamp(0, self.max_steps))
        toks = [self.proj[k](self.encoders[k](inputs[k])) for k in self.keys]
        return torch.stack(toks, dim=-2) + t.unsqueeze(-2)

    @validate_params({"inputs": Instance(dict), "timesteps": Tensor()})
    def forward(self, inputs: dict[str, torch.Tensor], timesteps: torch.Tensor) -> torch.Tensor:
        """-> ``(B, T * n_components, d_model)``, component order = dict order."""
        x = self.tokens(inputs, timesteps)
        return self.norm(x.flatten(1, 2))


@validate_params({"d_model": Int(1, 1 << 16), "out_dim": Int(1, 1 << 20),
                  "kind": Options("categorical", "regression"), "bounded": Instance(bool)})
class NetworkingHead(nn.Module):
    """Replaces the LM head: categorical logits or a (bounded) regression vector."""

    def __init__(self, d_model: int, out_dim: int, *, kind: str = "categorical",
                 bounded: bool = True):
        super().__init__()
        where = "netllm.NetworkingHead"
        d_model = check_int(d_model, "d_model", 1, 1 << 16, where=where)
        self.out_dim = check_int(out_dim, "out_dim", 1, 1 << 20, where=where)
        if kind not in ("categorical", "regression"):
            raise ValueError(param_error("kind", where, "'categorical' or 'regression'", kind))
        self.kind = kind
        self.linear = nn.Linear(d_model, out_dim)
        self.bounded = bool(bounded) and kind == "regression"

    @classmethod
    @validate_params({"d_model": Int(1, 1 << 16), "n_actions": Int(1, 1 << 20)})
    def categorical(cls, d_model: int, n_actions: int) -> NetworkingHead:
        """Logits over ``n_actions`` legal actions (ABR: 6 bitrate levels)."""
        return cls(d_model, n_actions, kind="categorical")

    @classmethod
    @validate_params({"d_model": Int(1, 1 << 16), "out_dim": Int(1, 1 << 20),
                      "bounded": Instance(bool)})
    def regression(cls, d_model: int, out_dim: int, *, bounded: bool = True) -> NetworkingHead:
        """``out_dim`` numbers, in (-1, 1) through Tanh when ``bounded`` (VP viewports)."""
        return cls(d_model, out_dim, kind="regression", bounded=bounded)

    @validate_params({"h": Tensor()})
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.linear(h)
        return torch.tanh(y) if self.bounded else y


def _run_backbone(backbone: nn.Module, embeds: torch.Tensor) -> torch.Tensor:
    out = backbone(inputs_embeds=embeds)
    h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return h


@validate_params({"backbone": Instance(nn.Module), "encoder": Instance(MultimodalEncoder),
                  "head": Instance(NetworkingHead), "window": Int(1, 100_000)})
class NetLLMPolicy(nn.Module):
    """Return-conditioned sequence policy: ``(R_t, s_t^1..s_t^n, a_t)`` tokens per step
    (Decision-Transformer layout, spec 2.4 step 3); the action of step ``t`` is read at its last
    state token.

    Parameters
    ----------
    backbone : nn.Module
        A transformers model accepting ``inputs_embeds`` (possibly peft-wrapped).
    encoder : MultimodalEncoder
        Builds the state tokens; its timestep embedding and LayerNorm are shared with the return
        and action tokens.
    head : NetworkingHead
        Categorical head over ``n_actions``.
    window : int
        Steps of context (official ABR: 20).
    """

    def __init__(self, backbone: nn.Module, encoder: MultimodalEncoder, head: NetworkingHead, *,
                 window: int = 20):
        super().__init__()
        where = "netllm.NetLLMPolicy"
        d = _check_backbone(backbone)
        if not isinstance(encoder, MultimodalEncoder):
            raise TypeError(param_error("encoder", where, "a MultimodalEncoder",
                                        type(encoder).__name__))
        if not isinstance(head, NetworkingHead) or head.kind != "categorical":
            raise TypeError(param_error("head", where, "a categorical NetworkingHead",
                                        type(head).__name__))
        if encoder.d_model != d:
            raise ValueError(param_error("encoder", where, f"d_model equal to the backbone's "
                                         f"hidden size {d}", encoder.d_model))
        self.window = check_int(window, "window", 1, 100_000, where=where)
        self.backbone, self.encoder, self.head = backbone, encoder, head
        self.n_actions = head.out_dim
        self.return_embedding = nn.Linear(1, d)
        self.action_embedding = nn.Embedding(head.out_dim, d)
        self.per_step = encoder.n_tokens + 2
        limit = max_positions(backbone.get_base_model() if hasattr(backbone, "get_base_model")
                              else backbone)
        if limit is not None and encoder.n_tokens + 1 > limit:
            raise ValueError(param_error("window", where, "a context where the current step "
                                         f"fits in the backbone's {limit} positions",
                                         f"{encoder.n_tokens + 1} tokens per step"))
        self.max_tokens = limit
        if limit is not None and self.window * self.per_step - 1 > limit:
            new = (limit + 1) // self.per_step
            warnings.warn(f"NetLLMPolicy: a window of {self.window} steps needs "
                          f"{self.window * self.per_step - 1} tokens but the backbone allows "
                          f"{limit}; the context is truncated from the left to {new} steps.",
                          UserWarning, stacklevel=2)
            self.window = max(new, 1)
        # normalisation used to turn raw rewards into returns-to-go (set by the trainer/dataset)
        # reward min, max, return scale, gamma, best return-to-go of the pool (set by training)
        self.register_buffer("reward_stats", torch.tensor([0.0, 1.0, 1.0, 1.0, float("nan")]))
        self.reset()

    # -- training-time forward -------------------------------------------------------------
    def _step_tokens(self, states, returns_to_go, timesteps, actions=None) -> torch.Tensor:
        s = self.encoder.tokens(states, timesteps)                      # (B, T, n, d)
        t = self.encoder.time_embedding(timesteps.clamp(0, self.encoder.max_steps))
        r = self.return_embedding(returns_to_go.unsqueeze(-1).to(s.dtype)) + t
        parts = [r.unsqueeze(-2), s]
        if actions is not None:
            parts.append((self.action_embedding(actions) + t).unsqueeze(-2))
        return torch.cat(parts, dim=-2)                                 # (B, T, n+1[+1], d)

    @validate_params({"states": Instance(dict), "actions": Tensor(), "returns_to_go": Tensor(),
                      "timesteps": Tensor()})
    def forward(self, states: dict[str, torch.Tensor], actions: torch.Tensor,
                returns_to_go: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Action logits ``(B, T, n_actions)``; the logits of step t do not see ``a_t``."""
        tok = self._step_tokens(states, returns_to_go, timesteps, actions)
        B, T, k, d = tok.shape
        x = self.encoder.norm(tok.reshape(B, T * k, d))
        h = _run_backbone(self.backbone, x)
        idx = torch.arange(T, device=h.device) * k + self.encoder.n_tokens
        return self.head(h[:, idx])

    # -- decision time ---------------------------------------------------------------------
    def reset(self) -> None:
        """Clear the context deque (start of an episode)."""
        self._context: deque = deque(maxlen=max(self.window - 1, 0))
        self._bcontext: deque = deque(maxlen=max(self.window - 1, 0))

    @torch.no_grad()
    @validate_params({"state": Instance(dict), "return_to_go": Real(), "timestep": Int(0, 1 << 30),
                      "sample": Instance(bool)})
    def act(self, state: dict[str, torch.Tensor], return_to_go: float, timestep: int, *,
            sample: bool = False, generator: torch.Generator | None = None) -> int:
        """One decision with exactly one backbone forward pass.

        ``state`` maps each component to a tensor without batch/time axes; ``return_to_go`` is
        in the dataset's normalised units (see :meth:`normalize_reward`). The chosen action's
        embedding is appended to the context deque (last ``window - 1`` steps kept).
        """
        p = next(self.encoder.parameters())
        st = {k: torch.as_tensor(state[k], dtype=p.dtype, device=p.device).reshape(1, 1, -1)
              for k in self.encoder.keys}
        ts = torch.tensor([[timestep]], device=p.device)
        rt = torch.tensor([[float(return_to_go)]], dtype=p.dtype, device=p.device)
        cur = self._step_tokens(st, rt, ts)[0, 0]                       # (n+1, d)
        seq = torch.cat([*self._context, cur], 0) if self._context else cur
        x = self.encoder.norm(seq.unsqueeze(0))
        h = _run_backbone(self.backbone, x)[0, -1]
        logits = self.head(h)
        if sample:
            a = int(torch.multinomial(torch.softmax(logits.float(), -1), 1,
                                      generator=generator).item())
        else:
            a = int(torch.argmax(logits).item())
        a_tok = self.action_embedding(torch.tensor(a, device=p.device)) + \
            self.encoder.time_embedding(ts.clamp(0, self.encoder.max_steps))[0, 0]
        if self._context.maxlen:
            self._context.append(torch.cat([cur, a_tok.unsqueeze(0)], 0))
        return a

    @torch.no_grad()
    @validate_params({"states": Instance(dict), "returns_to_go": Tensor(ndim=1),
                      "timestep": Int(0, 1 << 30)})
    def act_batch(self, states: dict[str, torch.Tensor], returns_to_go: torch.Tensor,
                  timestep: int) -> torch.Tensor:
        """Greedy decisions for ``N`` synchronised episodes (one backbone pass for all of them).

        ``states[k]`` has shape ``(N, ...)``; the batched context is cleared by :meth:`reset`.
        Used by :func:`evaluate_abr` to evaluate many traces in lockstep; each episode still gets
        exactly one backbone forward pass per decision.
        """
        p = next(self.encoder.parameters())
        N = len(returns_to_go)
        st = {k: torch.as_tensor(states[k], dtype=p.dtype, device=p.device).reshape(N, 1, -1)
              for k in self.encoder.keys}
        ts = torch.full((N, 1), int(timestep), device=p.device)
        rt = torch.as_tensor(returns_to_go, dtype=p.dtype, device=p.device).reshape(N, 1)
        cur = self._step_tokens(st, rt, ts)[:, 0]                       # (N, n+1, d)
        if self._bcontext and self._bcontext[0].shape[0] != N:
            self._bcontext.clear()
        seq = torch.cat([*self._bcontext, cur], 1) if self._bcontext else cur
        h = _run_backbone(self.backbone, self.encoder.norm(seq))[:, -1]
        a = torch.argmax(self.head(h), -1)
        a_tok = self.action_embedding(a) + self.encoder.time_embedding(
            ts.clamp(0, self.encoder.max_steps))[:, 0]
        if self._bcontext.maxlen:
            self._bcontext.append(torch.cat([cur, a_tok.unsqueeze(1)], 1))
        return a

    @validate_params({"r": Real()})
    def normalize_reward(self, r: float) -> float:
        """Raw reward -> the units of the returns-to-go the policy was trained on."""
        lo, hi, scale = self.reward_stats.tolist()[:3]
        return (r - lo) / (hi - lo) / scale
