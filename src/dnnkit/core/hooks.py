"""Hooks that never outlive the call that registered them, and models left as they were found."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["HookHandles", "registered_hooks", "preserved_mode", "eval_mode"]


class HookHandles(list):
    """A list of ``RemovableHandle`` with :meth:`remove_all` (idempotent)."""

    def remove_all(self) -> None:
        while self:
            self.pop().remove()


@contextmanager
def registered_hooks() -> Iterator[HookHandles]:
    """Yield a handle list; every handle appended to it is removed on exit, even on error.

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> with registered_hooks() as hs:
    ...     hs.append(m.register_forward_hook(lambda *a: None))
    >>> len(m._forward_hooks)
    0
    """
    handles = HookHandles()
    try:
        yield handles
    finally:
        handles.remove_all()


@contextmanager
def preserved_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Restore the ``training`` flag of every sub-module on exit (torchattacks' courtesy)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore every module's flag afterwards."""
    with preserved_mode(model):
        model.eval()
        yield model
