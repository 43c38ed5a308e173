"""feddip's bad-input table for tests/test_conformance.py (issue 13)."""

from __future__ import annotations

import math
import os
import tempfile

import torch
from torch import nn

from dnnkit.core.validation import Example
from dnnkit.feddip import (
    FedDIPConfig,
    FedDIPServer,
    FedDIPStrategy,
    dpf_local_train,
    make_client_app,
    run_feddip,
)
from tests.feddip.helpers import tiny_clients, tiny_model

_TMP = tempfile.mkdtemp(prefix="dnnkit-conformance-")


def _load(pid: int, n: int):
    return tiny_clients(2)[pid]


def examples() -> list[Example]:
    cfg = FedDIPConfig(rounds=2, clients_per_round=2, local_epochs=1, batch_size=12,
                       lambda_segments=2, reconfig_interval=1)
    clients = tiny_clients(2)
    server = FedDIPServer(tiny_model(), cfg)
    state = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    path = os.path.join(_TMP, "server.safetensors")
    server.save(path)
    x, y = clients[0]
    loader = [(x[:12], y[:12])]
    nan_x = x.clone()
    nan_x[:] = math.nan
    fields = dict(rounds=2, clients_per_round=2, local_epochs=1, batch_size=12, lr=0.1,
                  lr_decay=0.99, weight_decay=0.0, momentum=0.0, init_sparsity=0.5,
                  target_sparsity=0.8, reconfig_interval=1, prune_until=2, lambda_max=1e-3,
                  lambda_init=5e-4, lambda_segments=2, norm_p=2.0, regularize=True, prune=True,
                  lambda_constant=False, prox_mu=0.0, reprune_from="masked", upload="dense",
                  round0_mask="server_erk", seed=0)
    return [
        Example(FedDIPConfig, kwargs=fields),
        Example(FedDIPServer, args=(tiny_model(), cfg), kwargs={"prunable": None}),
        Example(server.round_config, args=(1,)),
        Example(server.sample, args=([0, 1],), kwargs={"t": 1}),
        Example(FedDIPServer(tiny_model(), cfg).aggregate, args=(0, [state, state], [10, 12]), kwargs={"num_sent": 2}),
        Example(FedDIPServer(tiny_model(), cfg).finish_round, args=(0, state),
                kwargs={"num_sent": 2, "num_received": 2, "upload_bytes": 10,
                        "upload_zeros": 0, "upload_numel": 10}),
        Example(server.save, args=(os.path.join(_TMP, "again.safetensors"),)),
        Example(server.load, args=(path,)),
        Example(FedDIPStrategy, args=(tiny_model(), cfg),
                kwargs={"checkpoint": None, "node_wait_timeout": 5.0, "fraction_evaluate": 0.0,
                        "prunable": None}),
        Example(dpf_local_train, args=(tiny_model(), None, loader),
                kwargs={"epochs": 1, "lr": 0.1, "lam": 0.0, "weight_decay": 0.0,
                        "momentum": 0.0, "norm_p": 2.0, "prox_mu": 0.0, "global_state": None,
                        "prunable": None, "loss_fn": None}),
        Example(make_client_app, args=(tiny_model, _load),
                kwargs={"load_test": None, "device": "cpu"}),
        Example(run_feddip, args=(tiny_model, clients, clients[0], cfg),
                kwargs={"evaluate_every": 1, "checkpoint": None, "timeout": None,
                        "client_app": None, "log": None, "verbose": False}),
        # the examples
        Example(FedDIPConfig, kwargs={"lr": math.inf}, raises=ValueError, param="lr"),
        Example(make_client_app, args=(3, _load), raises=TypeError, param="model_fn"),
        Example(run_feddip, args=(tiny_model, [(nan_x, y), clients[1]], None, cfg),
                raises=ValueError, param="client_data[0]"),
        Example(run_feddip, args=(tiny_model, [(torch.randn(24, 5), y), clients[1]], None, cfg),
                raises=ValueError, param="client_data[0]"),
        Example(run_feddip, args=(tiny_model, [(x, y[:5]), clients[1]], None, cfg),
                raises=ValueError, param="client_data[0]"),
        Example(run_feddip, args=(tiny_model, [(x, y + 3), clients[1]], None, cfg),
                raises=ValueError, param="client_data[0]"),
        Example(run_feddip, args=(tiny_model, clients, None, "cfg"), raises=TypeError,
                param="config"),
        Example(dpf_local_train, args=(nn.ReLU(), None, loader), raises=ValueError,
                param="model"),
    ]
