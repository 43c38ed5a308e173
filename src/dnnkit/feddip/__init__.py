"""FedDIP: federated learning with extreme dynamic pruning and incremental regularisation.

Long, Anagnostopoulos, Puthiya Parambath, Bi, "FedDIP: Federated Learning with Extreme Dynamic
Pruning and Incremental Regularization", IEEE ICDM 2023, pp. 1187-1192 (arXiv:2309.06805).
Algorithmic details follow the official code (github ``EricLoong/feddip``).

Clients train with dynamic pruning and error feedback (masked forward, dense update) plus an
incremental L2 penalty; the server averages (FedAvg), masks, and every ``R`` rounds re-prunes
the global model by global magnitude on a cubic sparsity schedule. The federation runs on
Flower: :class:`FedDIPStrategy` (a ``flwr`` ``FedAvg``) and :func:`make_client_app` work in
Flower's simulation engine and in a deployment; :func:`run_feddip` runs the same strategy and
client code in-process (no Ray) for fast experiments.

Failure semantics: a round needs ``min_fit_clients`` valid client updates (NaN or wrongly shaped
replies are dropped with a logged reason and counted); after ``round_retries`` retries a round
without them raises ``dnnkit.feddip.FederationError``.

Public API: :class:`FedDIPConfig`, :class:`FedDIPServer` (engine-agnostic server state),
:func:`dpf_local_train` (the client update on any ``nn.Module``), :class:`FedDIPStrategy`,
:func:`make_client_app`, :func:`run_feddip`. Building blocks (schedules, masks, ``fedavg``,
byte accounting, data partitioning) live in ``dnnkit.feddip.config``, ``.masks``, ``.server``
and ``.data``. The Flower names need the ``fl`` extra (``pip install dnnkit[fl]``).

Examples
--------
>>> import torch
>>> from torch import nn
>>> from dnnkit.feddip import FedDIPConfig, run_feddip
>>> g = torch.Generator().manual_seed(0)
>>> clients = [(torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g))
...            for _ in range(4)]
>>> cfg = FedDIPConfig(rounds=6, clients_per_round=2, local_epochs=1, batch_size=32,
...                    target_sparsity=0.9, reconfig_interval=3, prune_until=3,
...                    lambda_segments=3)
>>> hist = run_feddip(lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3)),
...                   clients, clients[0], cfg)
>>> abs(hist.final["sparsity"] - 0.9) < 0.01     # exactly round(0.9 * n) weights pruned
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.local import dpf_local_train
from dnnkit.feddip.server import FedDIPServer

__all__ = [
    "FedDIPConfig",
    "FedDIPServer",
    "FedDIPStrategy",
    "dpf_local_train",
    "make_client_app",
    "run_feddip",
]

_FLOWER = {"FedDIPStrategy": "dnnkit.feddip.flower", "make_client_app": "dnnkit.feddip.flower",
           "FederationError": "dnnkit.feddip.flower", "run_feddip": "dnnkit.feddip.driver"}

if TYPE_CHECKING:  # pragma: no cover
    from dnnkit.feddip.driver import run_feddip
    from dnnkit.feddip.flower import FedDIPStrategy, make_client_app
    from dnnkit.feddip.flower import FederationError as FederationError


def __getattr__(name: str) -> Any:
    """Import the Flower-based names on first use (they need ``flwr``, the ``fl`` extra)."""
    if name in _FLOWER:
        import importlib

        try:
            module = importlib.import_module(_FLOWER[name])
        except ImportError as exc:
            raise ImportError(f"dnnkit.feddip.{name} needs Flower: pip install 'dnnkit[fl]' "
                              f"({exc}).") from exc
        return getattr(module, name)
    raise AttributeError(f"module 'dnnkit.feddip' has no attribute {name!r}")
