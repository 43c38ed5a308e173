"""Checkpoints as safetensors, never pickles, written atomically (tmp file + ``os.replace``).

A checkpoint is a flat ``{name: tensor}`` dict plus JSON metadata. Helpers flatten a model, an
optimizer, ``torch.Generator`` objects and the global RNG states (torch CPU and CUDA, numpy,
Python's ``random``) into that form so a run can resume bit for bit, dropout included.

Safety guarantees:

- every file carries a SHA-256 checksum of its tensors and metadata (in the safetensors header);
  a file whose bytes changed is refused with :class:`CheckpointError` naming it;
- a save never leaves half a file under the final name; temporaries left by a killed save of the
  same checkpoint (``<name>.*.tmp``) are removed by the next save;
- :func:`load_training_state` can compare a *fingerprint* of the job (model structure, recipe,
  data) with the one stored in the file and refuse a checkpoint written by another job.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "save_tensors",
    "load_tensors",
    "save_training_state",
    "load_training_state",
    "CheckpointError",
    "fingerprint_json",
    "fingerprint_structure",
    "fingerprint_tensors",
]

_META_KEY = "dnnkit"
_SUM_KEY = "dnnkit.sha256"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or does not match the model."""


def _digest(tensors: dict[str, torch.Tensor], meta_json: str) -> str:
    h = hashlib.sha256(meta_json.encode())
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(f"|{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint_tensors(*tensors: torch.Tensor) -> str:
    """SHA-256 of the shapes, dtypes and bytes of ``tensors`` (a data hash for fingerprints)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint_json(obj: Any) -> str:
    """Short SHA-256 of a JSON-able description (keys sorted; other objects by ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint_structure(model: torch.nn.Module) -> str:
    """Hash of a model's state-dict names, shapes and dtypes (its structure, not its values)."""
    return fingerprint_json([[k, list(v.shape), str(v.dtype)]
                             for k, v in model.state_dict().items()])


def _remove_stale_temporaries(path: Path, keep: str) -> None:
    """Delete ``<name>.*.tmp`` left next to ``path`` by a save that was killed."""
    for tmp in path.parent.glob(path.name + ".*.tmp"):
        if str(tmp) != keep:
            try:
                tmp.unlink()
            except OSError:  # pragma: no cover - vanished or not ours to delete
                pass


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> Path:
    """Write ``tensors`` (+ JSON-able ``metadata``) to ``path`` atomically, with a checksum.

    The file is written next to the target and moved into place with ``os.replace``, so a crash
    leaves either the old checkpoint or the new one, never half a file. A SHA-256 of the tensors
    and metadata is stored in the header and verified by :func:`load_tensors`. Temporaries of the
    same checkpoint left by an earlier, killed save are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta_json = json.dumps(metadata or {}, sort_keys=True)
    meta = {_META_KEY: meta_json, _SUM_KEY: _digest(clean, meta_json)}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    _remove_stale_temporaries(path, tmp)
    try:
        save_file(clean, tmp, metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)            # mkstemp's 0600 -> the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_tensors(path: str | Path, device: str | torch.device = "cpu"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors checkpoint; raise :class:`CheckpointError` on a missing or bad file.

    When the file carries a checksum (every file written by :func:`save_tensors` does), it is
    verified: one changed byte in the tensors or the metadata is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {str(path)!r} does not exist.")
    try:
        tensors = load_file(str(path), device="cpu")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        raw = header.get(_META_KEY, "{}")
        meta = json.loads(raw)
    except (SafetensorError, json.JSONDecodeError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"Checkpoint file {str(path)!r} is truncated or corrupt and was not loaded ({exc})."
        ) from None
    expected = header.get(_SUM_KEY)
    if expected is not None and _digest(tensors, raw) != expected:
        raise CheckpointError(
            f"Checkpoint file {str(path)!r} is corrupt: its checksum does not match its "
            "contents (a byte changed on disk). It was not loaded; delete it or restore a copy.")
    if str(device) != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
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


Generators = torch.Generator | dict[str, torch.Generator] | None


def _generators(generator: Generators) -> dict[str, torch.Generator]:
    if generator is None:
        return {}
    if isinstance(generator, torch.Generator):
        return {"generator": generator}
    return dict(generator)


def _global_rng_to_flat() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global RNG states a training loop may draw from (dropout, augmentation, ...)."""
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = st
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, py_gauss = random.getstate()
    tensors["rng.python"] = torch.tensor(internal, dtype=torch.int64)
    meta = {"numpy": [name, int(pos), int(has_gauss), float(gauss)],
            "python": [int(version), py_gauss]}
    return tensors, meta


def _global_rng_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"].to(torch.uint8))
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in cuda[:torch.cuda.device_count()]])
    if "rng.numpy" in tensors and "numpy" in meta:
        name, pos, has_gauss, gauss = meta["numpy"]
        np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos,
                             has_gauss, gauss))
    if "rng.python" in tensors and "python" in meta:
        version, py_gauss = meta["python"]
        random.setstate((version, tuple(int(v) for v in tensors["rng.python"].tolist()),
                         py_gauss))


def save_training_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    generator: Generators = None,
    step: int = 0,
    extra: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
    global_rng: bool = True,
) -> Path:
    """Save model weights, optimizer state, RNG states and a step counter in one atomic file.

    Parameters
    ----------
    generator
        One ``torch.Generator`` or a ``{name: generator}`` dict the loop draws from.
    fingerprint
        JSON-able description of the job (see :func:`load_training_state`).
    global_rng
        Also save torch's global CPU (and CUDA) RNG, numpy's and Python's global RNG states:
        dropout and other layers draw from them, so an exact resume needs them.
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"step": int(step), "extra": extra or {}}
    if fingerprint is not None:
        meta["fingerprint"] = fingerprint
    if optimizer is not None:
        t, m = _optimizer_to_flat(optimizer)
        m["type"] = type(optimizer).__name__
        tensors.update(t)
        meta["optimizer"] = m
    for name, g in _generators(generator).items():
        tensors[f"rng.gen.{name}"] = g.get_state()
    if global_rng:
        t, m = _global_rng_to_flat()
        tensors.update(t)
        meta["rng"] = m
    return save_tensors(path, tensors, meta)


def _fingerprint_diff(saved: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(asked))
    return [f"{k}: checkpoint {saved.get(k, '<absent>')!r}, now {asked.get(k, '<absent>')!r}"
            for k in keys if saved.get(k) != asked.get(k)]


def load_training_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    generator: Generators = None,
    fingerprint: dict[str, Any] | None = None,
    global_rng: bool = True,
) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote; returns the metadata (``step``, ``extra``).

    When ``fingerprint`` is given it must equal the one stored in the file (JSON round trip):
    a checkpoint written by a different job (other model, data or hyper-parameters) is refused
    rather than silently resumed. ``global_rng`` restores the global RNG states saved with it.

    Raises :class:`CheckpointError` when the file is bad, was written by another job, or its
    tensors or optimizer do not match ``model`` / ``optimizer``.
    """
    tensors, meta = load_tensors(path)
    if fingerprint is not None:
        asked = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        saved = meta.get("fingerprint")
        if saved is None:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} has no job fingerprint (written by an older dnnkit or "
                "another tool), so it cannot be checked against this job. Delete it, or pass "
                "resume=False to start fresh.")
        diff = _fingerprint_diff(saved, asked)
        if diff:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} was written by a different job and was not resumed "
                f"({'; '.join(diff)}). Use another checkpoint path, delete the file, or pass "
                "resume=False to start fresh and overwrite it.")
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
    opt_meta = meta.get("optimizer")
    if optimizer is not None and opt_meta is not None:
        saved_type = opt_meta.get("type")
        if saved_type is not None and saved_type != type(optimizer).__name__:
            raise CheckpointError(
                f"Checkpoint {str(path)!r} holds {saved_type} state but the optimizer is "
                f"{type(optimizer).__name__}; resume with the same optimizer or start fresh.")
    model.load_state_dict(model_sd)
    if optimizer is not None and opt_meta is not None:
        try:
            _optimizer_from_flat(optimizer, tensors, opt_meta)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(
                f"Checkpoint {str(path)!r}: its optimizer state does not fit this optimizer "
                f"({exc!r}).") from None
    gens = _generators(generator)
    for name, g in gens.items():
        key = f"rng.gen.{name}"
        if key not in tensors and name == "generator":
            key = "rng.generator"  # files written before named generators
        if key in tensors:
            g.set_state(tensors[key])
    if global_rng:
        _global_rng_from_flat(tensors, meta.get("rng", {}))
    return meta
