"""A ready-made Flower App (digits, MLP) for ``flwr run``: ``server_app`` and ``client_app``.

Point a Flower App's ``pyproject.toml`` at these objects::

    [tool.flwr.app.components]
    serverapp = "dnnkit.feddip.app:server_app"
    clientapp = "dnnkit.feddip.app:client_app"

    [tool.flwr.app.config]
    num-server-rounds = 20
    clients-per-round = 2
    target-sparsity = 0.9
    checkpoint = ""               # a path: per-round server checkpoint, resumes if present

Each SuperNode loads its own (IID) shard of scikit-learn's digits from its node config
(``--node-config "partition-id=0 num-partitions=2"``); the split is seeded, so every node
computes the same partition without exchanging data. Copy this file to build an app on your
own data: only ``_load_partition`` and ``_model`` change.
"""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from dnnkit.core.data import load_digits_split
from dnnkit.core.models import mlp
from dnnkit.core.training import accuracy
from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.data import partition_dirichlet, partition_iid
from dnnkit.feddip.flower import FedDIPStrategy, make_client_app

__all__ = ["client_app", "server_app"]


def _model() -> torch.nn.Module:
    return mlp(64, [128, 64], 10)


def _split(seed: int = 0):
    return load_digits_split(test_fraction=0.2, seed=seed, flat=True)


def _load_partition(partition_id: int, num_partitions: int, partitioning: str = "iid"):
    sp = _split()
    if partitioning == "dirichlet":
        parts = partition_dirichlet(sp.y_train, num_partitions, alpha=0.5, seed=0)
    else:
        parts = partition_iid(len(sp.y_train), num_partitions, seed=0)
    idx = torch.as_tensor(parts[partition_id], dtype=torch.long)
    return sp.x_train[idx], sp.y_train[idx]


def _cfg(run_config: dict[str, Any]) -> FedDIPConfig:
    rounds = int(run_config.get("num-server-rounds", 20))
    return FedDIPConfig(rounds=rounds,
                        clients_per_round=int(run_config.get("clients-per-round", 2)),
                        local_epochs=int(run_config.get("local-epochs", 1)), batch_size=32,
                        target_sparsity=float(run_config.get("target-sparsity", 0.9)),
                        reconfig_interval=int(run_config.get("reconfig-interval", 5)),
                        lambda_segments=min(20, rounds), seed=int(run_config.get("seed", 0)))


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    rc = dict(context.run_config)
    cfg = _cfg(rc)
    sp = _split()
    model = _model()

    def evaluate(done: int, arrays: ArrayRecord) -> MetricRecord | None:
        if done == 0:
            return None
        model.load_state_dict(arrays.to_torch_state_dict())
        return MetricRecord({"accuracy": accuracy(model, sp.x_test, sp.y_test)})

    ck = str(rc.get("checkpoint", "")) or None
    strategy = FedDIPStrategy(_model(), cfg, checkpoint=ck,
                              node_wait_timeout=float(rc.get("node-wait-timeout", 120.0)))
    strategy.start(grid, timeout=float(rc.get("reply-timeout", 600.0)), evaluate_fn=evaluate)


def _client_partition(pid: int, n: int):
    return _load_partition(pid, n)


client_app = make_client_app(_model, _client_partition)
