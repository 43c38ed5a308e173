"""Checkpoints as safetensors, never pickles, written atomically (tmp file + ``os.replace``).

A checkpoint is a flat ``{name: tensor}`` dict plus JSON metadata. Helpers flatten a model, an
optimizer and a ``torch.Generator`` into that form so a run can resume bit for bit.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "save_tensors",
    "load_tensors",
    "save_training_state",
    "load_training_state",
    "CheckpointError",
]

_META_KEY = "dnnkit"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or does not match the model."""


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> Path:
    """Write ``tensors`` (+ JSON-able ``metadata``) to ``path`` atomically.

    The file is written next to the target and moved into place with ``os.replace``, so a crash
    leaves either the old checkpoint or the new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {_META_KEY: json.dumps(metadata or {}, sort_keys=True)}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(clean, tmp, metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_tensors(path: str | Path, device: str | torch.device = "cpu"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors checkpoint; raise :class:`CheckpointError` on a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {str(path)!r} does not exist.")
    try:
        tensors = load_file(str(path), device=str(device))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(_META_KEY, "{}")
        meta = json.loads(raw)
    except (SafetensorError, json.JSONDecodeError, OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"Checkpoint file {str(path)!r} is truncated or corrupt and was not loaded ({exc})."
        ) from None
    return tensors, meta


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            key = f"optim.{idx}.{k}"
            if isinstance(v, torch.Tensor):
                tensors[key] = v
            else:
                scalars[key] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_training_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    generator: torch.Generator | None = None,
    step: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save model weights, optimizer state, RNG state and a step counter in one atomic file."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"step": int(step), "extra": extra or {}}
    if optimizer is not None:
        t, m = _optimizer_to_flat(optimizer)
        tensors.update(t)
        meta["optimizer"] = m
    if generator is not None:
        tensors["rng.generator"] = generator.get_state()
    return save_tensors(path, tensors, meta)


def load_training_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote; returns the metadata (``step``, ``extra``).

    Raises :class:`CheckpointError` when the file is bad or its tensors do not match ``model``.
    """
    tensors, meta = load_tensors(path)
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    own = model.state_dict()
    missing = sorted(set(own) - set(model_sd))
    unexpected = sorted(set(model_sd) - set(own))
    shape_bad = [k for k in own if k in model_sd and own[k].shape != model_sd[k].shape]
    if missing or unexpected or shape_bad:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not match the model: missing={missing[:5]}, "
            f"unexpected={unexpected[:5]}, wrong shape={shape_bad[:5]}."
        )
    model.load_state_dict(model_sd)
    if optimizer is not None and "optimizer" in meta:
        _optimizer_from_flat(optimizer, tensors, meta["optimizer"])
    if generator is not None and "rng.generator" in tensors:
        generator.set_state(tensors["rng.generator"])
    return meta
