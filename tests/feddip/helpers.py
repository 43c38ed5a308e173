"""Small shared builders for the FedDIP tests."""

from __future__ import annotations

import time

import torch
from torch import nn


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))


def tiny_clients(n: int = 4, size: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 3, generator=g)
    out = []
    for _ in range(n):
        x = torch.randn(size, 6, generator=g)
        out.append((x, (x @ w).argmax(1)))
    return out


def reply(state: dict, num_examples: float, node: int = 1, extra: dict | None = None):
    """A fabricated Flower train reply (public Message/Metadata API, no Ray)."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.app.metadata import Metadata

    metrics = {"num-examples": num_examples, **(extra or {})}
    return Message(content=RecordDict({"arrays": ArrayRecord({k: v.clone() for k, v in
                                                              state.items()}),
                                       "metrics": MetricRecord(metrics)}),
                   metadata=Metadata(run_id=1, message_id=f"m{node}", src_node_id=node,
                                     dst_node_id=0, reply_to_message_id="x", group_id="1",
                                     created_at=time.time(), ttl=60.0, message_type="train"))


def error_reply(node: int = 9):
    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.app.metadata import Metadata

    return Message(error=Error(code=2, reason="boom"),
                   metadata=Metadata(run_id=1, message_id=f"e{node}", src_node_id=node,
                                     dst_node_id=0, reply_to_message_id="x", group_id="1",
                                     created_at=time.time(), ttl=60.0, message_type="train"))


def require_flower() -> None:
    """Skip a test module without Flower on a laptop; under CI (``CI=true``) a missing Flower
    is an error, so the Flower oracle tests really run there (see tests/conftest.py)."""
    import os

    import pytest

    if os.environ.get("CI"):
        import flwr  # noqa: F401  (ImportError fails the CI run)
        return
    pytest.importorskip("flwr", reason="Flower (the `fl` extra) is not installed")
