"""Explicit seeds. Library code takes ``seed=`` arguments and never touches global RNG state;
only experiments call :func:`seed_everything`, once, and record the seed."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything", "make_generator", "make_rng", "SeedLike"]

SeedLike = int | torch.Generator | None


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch (the experiment entry point only)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def make_generator(seed: SeedLike = None, device: str | torch.device = "cpu") -> torch.Generator:
    """Return a ``torch.Generator``: a given one unchanged, an int seeds a new one, ``None`` draws
    a fresh seed from the operating system (like scikit-learn's ``check_random_state``)."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        g.manual_seed(int(seed))
    else:
        raise TypeError(f"The 'seed' parameter must be an int, a torch.Generator or None. "
                        f"Got {type(seed).__name__} instead.")
    return g


def make_rng(seed: int | np.random.Generator | torch.Generator | None = None
             ) -> np.random.Generator:
    """numpy counterpart of :func:`make_generator`.

    A ``torch.Generator`` (what ``validation.Seed`` accepts everywhere) seeds a new numpy
    generator from one draw, so the same torch generator gives the same numpy stream."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=seed)))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"The 'seed' parameter must be an int, a numpy or torch Generator or "
                        f"None. Got {type(seed).__name__} instead.")
    return np.random.default_rng(seed)
