"""Server side of FedDIP, engine-agnostic (no Flower import): weighted FedAvg, masking, global
magnitude re-pruning on the cubic schedule, communication accounting, checkpoints."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dnnkit.core.checkpoint import CheckpointError, load_tensors, save_tensors
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    PathArg,
    Real,
    Sequence_,
    Str,
    check_int,
    param_error,
    validate_params,
)
from dnnkit.feddip.config import FedDIPConfig, round_plan
from dnnkit.feddip.masks import (
    check_mask,
    erk_mask,
    global_magnitude_mask,
    payload_bytes,
    prunable_parameters,
)

__all__ = ["FedDIPServer", "fedavg", "official_mbit", "sample_clients", "upload_stats"]


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
           ) -> dict[str, torch.Tensor]:
    """Weighted average of state dicts: ``sum_k p_k w_k / sum_k p_k`` (FedAvg).

    Floating tensors are averaged (accumulated in float64, returned in their dtype); integer
    tensors such as ``num_batches_tracked`` are copied from the first state.

    Parameters
    ----------
    states : sequence of mappings
        Client state dicts with the same keys and shapes.
    weights : sequence of float
        Non-negative weights (e.g. sample counts) with a positive sum.

    Returns
    -------
    dict of str to Tensor

    Examples
    --------
    >>> import torch
    >>> fedavg([{"w": torch.ones(2)}, {"w": torch.zeros(2)}], [10, 30])["w"].tolist()
    [0.25, 0.25]
    """
    where = "fedavg"
    if len(states) == 0:
        raise ValueError(f"The 'states' parameter of {where} must hold at least one state. "
                         "Got an empty sequence instead.")
    if len(weights) != len(states):
        raise ValueError(param_error("weights", where, f"of length {len(states)}", len(weights)))
    w = [float(x) for x in weights]
    if any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(param_error("weights", where,
                                     "finite, non-negative numbers with a positive sum", w))
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if set(s) != set(keys):
            diff = sorted(set(s) ^ set(keys))[:5]
            raise ValueError(f"{where}: state {i} has different keys than state 0 ({diff}).")
        bad = [k for k in keys if tuple(s[k].shape) != tuple(states[0][k].shape)]
        if bad:
            raise ValueError(f"{where}: state {i} has different shapes for {bad[:5]}.")
    total = sum(w)
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        ref = states[0][k]
        if not (ref.is_floating_point() or ref.is_complex()):
            out[k] = ref.detach().clone()
            continue
        acc = torch.zeros(ref.shape, dtype=torch.float64, device=ref.device)
        for s, wk in zip(states, w):
            acc += s[k].detach().to(device=ref.device, dtype=torch.float64) * (wk / total)
        out[k] = acc.to(ref.dtype)
    return out


def official_mbit(num_clients: int, n_params: int, local_sparsity: float,
                  scheduled_sparsity: float) -> float:
    """Per-round communication of the official code (``comm_costs_in_mb``; unit is Mbit):
    ``m * 32 * n * ((1 - s_local) + (1 - s_t)) / 2**20`` (no index or mask overhead)."""
    return num_clients * 32 * n_params * ((1 - local_sparsity) + (1 - scheduled_sparsity)) / 2**20


def upload_stats(state: Mapping[str, torch.Tensor],
                 mask: Mapping[str, torch.Tensor] | None) -> dict[str, int]:
    """What one upload costs: ``bytes`` (dense, or values + bitmask for masked tensors),
    ``zeros`` and ``numel`` over the floating tensors (for the official formula)."""
    floats = {k: v for k, v in state.items() if v.is_floating_point()}
    return {"bytes": payload_bytes(floats, mask),
            "zeros": int(sum(int((v == 0).sum()) for v in floats.values())),
            "numel": int(sum(v.numel() for v in floats.values()))}


def sample_clients(available: Sequence[int], k: int, *, seed: int, round_index: int) -> list[int]:
    """``k`` distinct clients drawn uniformly from ``available``, seeded by ``(seed, round)``;
    the same inputs give the same sample on every engine (sorted output)."""
    pool = sorted(int(a) for a in available)
    if k > len(pool):
        raise ValueError(f"Cannot sample {k} clients per round from {len(pool)} available "
                         f"clients ({pool[:10]}{'...' if len(pool) > 10 else ''}): lower "
                         "clients_per_round or add clients.")
    rng = np.random.default_rng([seed, round_index])
    return sorted(pool[i] for i in rng.choice(len(pool), size=k, replace=False))


def client_seed(seed: int, round_index: int, client: int) -> int:
    """Seed of a client's randomness (batch order, round-0 ERK mask) in one round."""
    return int(np.random.SeedSequence([seed, round_index, client, 7]).generate_state(1)[0])


_T = Int(0, 10_000_000)
_COUNT = Int(0, 10**15)


@validate_params({"model": Instance(nn.Module), "config": Instance(FedDIPConfig),
                  "prunable": Optional_(Sequence_(Str(), min_len=0))})
class FedDIPServer:
    """The FedDIP server state and round logic, independent of the federation engine.

    Holds the global state dict, the current mask and the per-round history. Each round:
    :meth:`broadcast` what clients need, then :meth:`aggregate` their local states (or
    :meth:`finish_round` with an aggregate computed elsewhere, e.g. by Flower's FedAvg):
    weighted mean, ``w <- M * w``, and every ``R`` rounds a new global magnitude mask at the
    scheduled sparsity ``s_t``.

    Parameters
    ----------
    model : nn.Module
        Supplies the initial global weights (copied; the model itself is never modified).
    config : FedDIPConfig
        Hyper-parameters.
    prunable : sequence of str, optional
        Prunable state-dict entries (default: all Conv/Linear weights).

    Notes
    -----
    Deviations available from the official code (see :class:`FedDIPConfig`): ``reprune_from=
    "dense"`` computes the new mask from the unmasked aggregate, so pruned weights can regrow;
    ``round0_mask="server_erk"`` broadcasts one seeded ERK mask in round 0 instead of one
    random mask per client.
    """

    def __init__(self, model: nn.Module, config: FedDIPConfig, *,
                 prunable: Sequence[str] | None = None) -> None:
        if not isinstance(config, FedDIPConfig):
            raise TypeError(param_error("config", "FedDIPServer", "a FedDIPConfig",
                                        type(config).__name__))
        if not isinstance(model, nn.Module):
            raise TypeError(param_error("model", "FedDIPServer", "a torch.nn.Module",
                                        type(model).__name__))
        self.config = config
        self.state: dict[str, torch.Tensor] = {k: v.detach().clone()
                                               for k, v in model.state_dict().items()}
        names = list(prunable) if prunable is not None else prunable_parameters(model)
        if not names:
            raise ValueError("The model has nothing to prune (empty 'prunable' list).")
        bad = [n for n in names if n not in self.state or not self.state[n].is_floating_point()]
        if bad:
            raise KeyError(f"FedDIPServer: prunable entries {bad[:5]} are not floating tensors "
                           "of the model's state dict.")
        self.prunable: list[str] = names
        self.mask: dict[str, torch.Tensor] | None = None
        self.round = 0
        self.history: list[dict[str, Any]] = []
        self.n_params = sum(v.numel() for v in self.state.values() if v.is_floating_point())
        self.n_prunable = sum(self.state[n].numel() for n in names)
        if config.prune and config.round0_mask == "server_erk":
            shapes = {n: self.state[n].shape for n in names}
            self.mask = {k: m.to(self.state[k].device) for k, m in
                         erk_mask(shapes, 1.0 - config.init_sparsity,
                                  seed=client_seed(config.seed, 0, 1 << 20)).items()}

    # --- what a round sends -------------------------------------------------------------
    @validate_params({"t": _T})
    def round_config(self, t: int) -> dict[str, Any]:
        """Learning rate, lambda, scheduled sparsity and the client settings of round ``t``."""
        cfg = self.config
        plan = round_plan(cfg, t)
        round0_erk = bool(cfg.prune and t == 0 and self.mask is None
                          and cfg.round0_mask == "client_erk")
        return {**plan, "local_epochs": cfg.local_epochs, "batch_size": cfg.batch_size,
                "weight_decay": cfg.weight_decay, "momentum": cfg.momentum,
                "norm_p": cfg.norm_p, "prox_mu": cfg.prox_mu, "upload": cfg.upload,
                "seed": cfg.seed, "round0_erk": round0_erk,
                "erk_density": 1.0 - cfg.init_sparsity, "prunable": list(self.prunable)}

    def broadcast(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """The global state and the current mask (``None`` before the first pruning)."""
        return self.state, self.mask

    @validate_params({"available": Sequence_(Int(0, 2**63 - 1)), "t": Optional_(_T)})
    def sample(self, available: Sequence[int], t: int | None = None) -> list[int]:
        """The clients of round ``t`` (default: the next round), drawn from ``available``."""
        t = self.round if t is None else t
        return sample_clients(available, self.config.clients_per_round, seed=self.config.seed,
                              round_index=t)

    # --- what a round receives ----------------------------------------------------------
    @validate_params({"t": _T, "states": Sequence_(Instance(Mapping)),
                      "num_examples": Sequence_(Real(0.0, None)), "num_sent": Optional_(_COUNT)})
    def aggregate(self, t: int, states: Sequence[Mapping[str, torch.Tensor]],
                  num_examples: Sequence[int | float], *, num_sent: int | None = None
                  ) -> dict[str, Any]:
        """Weighted FedAvg of the clients' ``states`` then :meth:`finish_round`.

        Clients with 0 examples are refused (``ValueError``) rather than silently dropped.
        """
        if len(states) == 0:
            raise ValueError(f"Round {t}: no client states to aggregate.")
        zero = [i for i, n in enumerate(num_examples) if float(n) <= 0]
        if zero:
            raise ValueError(f"Round {t}: clients at positions {zero} report 0 training "
                             "examples; every client needs data.")
        agg = fedavg(states, num_examples)
        mask_up = self.mask if self.config.upload == "masked" else None
        ups = [upload_stats(s, mask_up) for s in states]
        return self.finish_round(
            t, agg, num_sent=len(states) if num_sent is None else num_sent,
            num_received=len(states), upload_bytes=sum(u["bytes"] for u in ups),
            upload_zeros=sum(u["zeros"] for u in ups), upload_numel=sum(u["numel"] for u in ups))

    @validate_params({"t": _T, "aggregate": Optional_(Instance(Mapping)), "num_sent": _COUNT,
                      "num_received": _COUNT, "upload_bytes": _COUNT, "upload_zeros": _COUNT,
                      "upload_numel": _COUNT})
    def finish_round(self, t: int, aggregate: Mapping[str, torch.Tensor] | None, *,
                     num_sent: int, num_received: int, upload_bytes: int,
                     upload_zeros: int, upload_numel: int) -> dict[str, Any]:
        """Mask the aggregate, re-prune on schedule, account bytes; return the round record.

        ``aggregate=None`` (every client failed) keeps the previous global model; the
        schedule (re-pruning) still advances.

        Raises
        ------
        ValueError
            Wrong round order, keys/shapes that do not match the model, or NaN/inf in the
            aggregate (the round is named).
        """
        cfg = self.config
        check_int(t, "t", 0, cfg.rounds - 1, where="FedDIPServer.finish_round")
        if t != self.round:
            raise ValueError(f"FedDIPServer expected round {self.round}, got round {t}.")
        plan = round_plan(cfg, t)
        down_state, down_mask = self.state, self.mask
        down_bytes = num_sent * payload_bytes(
            {k: v for k, v in down_state.items() if v.is_floating_point()}, down_mask)
        if aggregate is not None:
            new = self._checked_aggregate(t, aggregate)
        else:
            new = {k: v.clone() for k, v in self.state.items()}
        # the unmasked aggregate is only needed to re-prune from it ("dense")
        dense = ({k: new[k].clone() for k in self.prunable}
                 if plan["reprune"] and cfg.reprune_from == "dense" else None)
        if self.mask is not None:
            for k, m in self.mask.items():
                new[k] = new[k] * m.to(new[k].dtype)
        if plan["reprune"]:
            source = dense if dense is not None else new
            self.mask = global_magnitude_mask(source, self.prunable, plan["sparsity"])
            for k, m in self.mask.items():
                new[k] = source[k] * m.to(new[k].dtype)
        self.state = new
        zeros = sum(int((new[k] == 0).sum()) for k in self.prunable)
        local_sparsity = upload_zeros / upload_numel if upload_numel else 0.0
        prev = self.history[-1] if self.history else {}
        mbit = official_mbit(num_received, self.n_params, local_sparsity,
                             plan["sparsity"] if cfg.prune else 0.0)
        record = {
            "round": t, "lr": plan["lr"], "lambda": plan["lambda"],
            "scheduled_sparsity": plan["sparsity"], "repruned": plan["reprune"],
            "sparsity": zeros / self.n_prunable,
            "mask_sparsity": (1.0 - sum(int(m.sum()) for m in self.mask.values())
                              / self.n_prunable) if self.mask is not None else 0.0,
            "clients_sent": int(num_sent), "clients_received": int(num_received),
            "down_bytes": int(down_bytes), "up_bytes": int(upload_bytes),
            "official_mbit": mbit, "local_zero_fraction": local_sparsity,
        }
        record["cum_down_bytes"] = prev.get("cum_down_bytes", 0) + record["down_bytes"]
        record["cum_up_bytes"] = prev.get("cum_up_bytes", 0) + record["up_bytes"]
        record["cum_official_mbit"] = prev.get("cum_official_mbit", 0.0) + mbit
        self.history.append(record)
        self.round = t + 1
        return record

    def _checked_aggregate(self, t: int, aggregate: Mapping[str, torch.Tensor]
                           ) -> dict[str, torch.Tensor]:
        missing = sorted(set(self.state) - set(aggregate))
        extra = sorted(set(aggregate) - set(self.state))
        if missing or extra:
            raise ValueError(f"Round {t}: the aggregate does not match the model: missing "
                             f"{missing[:5]}, unexpected {extra[:5]}.")
        out = {}
        for k, ref in self.state.items():
            v = torch.as_tensor(aggregate[k])
            if tuple(v.shape) != tuple(ref.shape):
                raise ValueError(f"Round {t}: aggregated {k!r} has shape {tuple(v.shape)}, the "
                                 f"model expects {tuple(ref.shape)}.")
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                bad = [n for n in self.state if torch.as_tensor(aggregate[n]).is_floating_point()
                       and not bool(torch.isfinite(torch.as_tensor(aggregate[n])).all())]
                raise ValueError(f"Round {t}: the aggregated global model has NaN/inf values "
                                 f"in {bad[:5]} (a client diverged; lower the learning rate).")
            if not ref.is_floating_point() and v.is_floating_point():
                v = torch.round(v)
            out[k] = v.to(device=ref.device, dtype=ref.dtype).clone()
        return out

    # --- checkpoints ---------------------------------------------------------------------
    @validate_params({"path": PathArg()})
    def save(self, path: str | Path) -> Path:
        """Atomic safetensors checkpoint of the global model, mask, round and history."""
        tensors = {f"model.{k}": v for k, v in self.state.items()}
        if self.mask is not None:
            tensors.update({f"mask.{k}": m.to(torch.uint8) for k, m in self.mask.items()})
        meta = {"round": self.round, "history": self.history,
                "config": dataclasses.asdict(self.config), "prunable": self.prunable}
        return save_tensors(path, tensors, meta)

    @validate_params({"path": PathArg(must_exist=True, kind="file")})
    def load(self, path: str | Path) -> int:
        """Restore a :meth:`save` checkpoint; returns the next round to run.

        Raises :class:`~dnnkit.core.checkpoint.CheckpointError` when the file is bad or does
        not belong to this model / configuration.
        """
        tensors, meta = load_tensors(path)
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        mask = {k[5:]: v.bool() for k, v in tensors.items() if k.startswith("mask.")}
        if set(state) != set(self.state) or any(
                tuple(state[k].shape) != tuple(v.shape) for k, v in self.state.items()):
            raise CheckpointError(f"Checkpoint {str(path)!r} does not match the model.")
        saved_cfg = meta.get("config", {})
        mine = dataclasses.asdict(self.config)
        differ = sorted(k for k in mine if k in saved_cfg and saved_cfg[k] != mine[k])
        if differ:
            raise CheckpointError(f"Checkpoint {str(path)!r} was written with a different "
                                  f"FedDIPConfig (fields {differ}); refusing to resume.")
        try:
            mask_checked = check_mask(mask, self.state, where="FedDIPServer.load") if mask else None
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"Checkpoint {str(path)!r} holds a bad mask: {exc}") from None
        self.state = {k: state[k].to(self.state[k].device, self.state[k].dtype)
                      for k in self.state}
        self.mask = ({k: m.to(self.state[k].device) for k, m in mask_checked.items()}
                     if mask_checked else None)
        self.round = int(meta.get("round", 0))
        self.history = list(meta.get("history", []))
        return self.round
