"""FedDIP in Flower's simulation engine (needs Ray: ``pip install 'flwr[simulation]'``).

The same :class:`~dnnkit.feddip.flower.FedDIPStrategy` and ClientApp as the in-process driver
run on ``flwr.simulation.run_simulation``; the server checkpoints every round, and the final
checkpoint is read back as the result (the ServerApp may run in another thread or process).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.driver import quiet_flower
from dnnkit.feddip.flower import make_client_app, make_server_app
from dnnkit.feddip.server import FedDIPServer

__all__ = ["ray_available", "run_flower_simulation"]


def ray_available() -> bool:
    """Whether Flower's simulation backend (Ray) is importable."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_flower_simulation(model_fn: Callable[[], nn.Module], client_data: Sequence[Any],
                          config: FedDIPConfig, *, checkpoint: str | Path | None = None,
                          num_cpus_per_client: float = 1.0, node_wait_timeout: float = 300.0,
                          verbose: bool = False) -> tuple[dict[str, torch.Tensor],
                                                          dict[str, torch.Tensor] | None,
                                                          list[dict[str, Any]]]:
    """Run FedDIP for ``config.rounds`` rounds in Flower's simulation engine.

    One virtual SuperNode per entry of ``client_data`` (its ``partition-id`` is the index).
    Returns ``(state, mask, history)`` read from the server's final checkpoint.

    Raises
    ------
    ImportError
        If Ray (``flwr[simulation]``) is not installed.
    """
    if not ray_available():
        raise ImportError("Flower's simulation engine needs Ray: pip install 'flwr[simulation]' "
                          "(or use dnnkit.feddip.run_feddip, which needs no Ray).")
    from flwr.simulation import run_simulation

    if len(client_data) < config.clients_per_round:
        raise ValueError(f"The 'clients_per_round' parameter of FedDIPConfig must be <= the "
                         f"number of clients ({len(client_data)}). Got "
                         f"{config.clients_per_round} instead.")
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(checkpoint) if checkpoint is not None else Path(tmp) / "feddip.safetensors"
        server_app = make_server_app(model_fn, config, checkpoint=ck,
                                     node_wait_timeout=node_wait_timeout)
        client_app = make_client_app(model_fn, lambda pid, _n: client_data[pid])
        saved_env = os.environ.copy()  # Ray edits os.environ (PYTHONPATH, ...): leave no mark
        try:
            with quiet_flower(not verbose):
                run_simulation(server_app=server_app, client_app=client_app,
                               num_supernodes=len(client_data),
                               backend_config={"client_resources": {"num_cpus": num_cpus_per_client,
                                                                    "num_gpus": 0.0},
                                               "init_args": {"include_dashboard": False,
                                                             "log_to_driver": verbose}},
                               verbose_logging=verbose)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
        if not ck.is_file():
            raise RuntimeError("The Flower simulation ended without a server checkpoint; see "
                               "Flower's log for the ServerApp error.")
        server = FedDIPServer(model_fn(), config)
        done = server.load(ck)
        if done != config.rounds:
            raise RuntimeError(f"The Flower simulation stopped after {done} of {config.rounds} "
                               "rounds; see Flower's log for the error.")
        return server.state, server.mask, server.history
