"""Flower's simulation engine (Ray) gives the same global model as the in-process driver."""

import os

import pytest
import torch

from tests.feddip.helpers import require_flower

require_flower()

from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.driver import run_feddip
from dnnkit.feddip.simulation import ray_available, run_flower_simulation

from .helpers import tiny_clients, tiny_model

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _need_ray():
    if not ray_available():
        from tests.conftest import missing_oracle

        missing_oracle("Ray (flwr[simulation])", "run `make test-slow` (mk/feddip.mk installs it)")


@pytest.mark.slow
def test_simulation_engine_equals_in_process_driver():
    _need_ray()
    clients = tiny_clients(4)
    cfg = FedDIPConfig(rounds=4, clients_per_round=2, local_epochs=1, batch_size=8,
                       lambda_segments=2, reconfig_interval=2, target_sparsity=0.8,
                       prune_until=2)
    path_before = os.environ.get("PYTHONPATH")
    state, mask, history = run_flower_simulation(tiny_model, clients, cfg)
    # Ray puts its site-packages on PYTHONPATH while it runs; that must not leak to later code
    assert os.environ.get("PYTHONPATH") == path_before
    ours = run_feddip(tiny_model, clients, None, cfg)
    for k in state:
        torch.testing.assert_close(state[k], ours.state[k], rtol=0, atol=1e-6)
    for k in mask:
        assert torch.equal(mask[k], ours.mask[k])
    assert [h["clients_received"] for h in history] == [2] * cfg.rounds
    assert [h["sparsity"] for h in history] == [r["sparsity"] for r in ours.rounds]
