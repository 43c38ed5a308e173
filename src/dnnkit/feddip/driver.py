"""A thin in-process driver: Flower's strategy and ``ClientApp`` without Ray or a SuperLink.

:class:`InProcessGrid` is a ``flwr.serverapp.Grid`` that hands each instruction message
straight to the ``ClientApp`` in this process, turns an exception into an error reply (as a
SuperNode does) and drops replies that arrive after the timeout. :func:`run_feddip` runs
:class:`~dnnkit.feddip.flower.FedDIPStrategy` with :func:`~dnnkit.feddip.flower.make_client_app`
on it: the same strategy and client code as Flower's simulation engine and a deployment.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.error import Error
from flwr.app.metadata import Metadata
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from torch import nn

from dnnkit.core.hooks import eval_mode
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    PathArg,
    Real,
    Sequence_,
    check_int,
    check_tensor,
    param_error,
    validate_params,
)
from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.flower import FedDIPStrategy, make_client_app

__all__ = ["History", "InProcessGrid", "quiet_flower", "run_feddip", "server_identity"]

_SERVER_NODE = 0


@contextlib.contextmanager
def server_identity(run_id: int) -> Iterator[None]:
    """Set Flower's task identity for a ServerApp running in this process (what the Flower
    runtime does before calling a ServerApp; its legacy ``start_grid`` sets the same dummy
    identity) and restore the previous one afterwards."""
    from flwr.supercore.task_identity import TaskIdentity

    old = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = _SERVER_NODE
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = old


def _array_bytes(content: RecordDict) -> int:
    return sum(int(r.count_bytes()) for r in content.array_records.values())


@contextlib.contextmanager
def quiet_flower(enabled: bool = True) -> Iterator[None]:
    """Raise Flower's logger to ERROR for the block (its INFO lines flood a fast run)."""
    from flwr.supercore.logger import FLOWER_LOGGER

    old = FLOWER_LOGGER.level
    if enabled:
        FLOWER_LOGGER.setLevel(logging.ERROR)
    try:
        yield
    finally:
        FLOWER_LOGGER.setLevel(old)


class InProcessGrid(Grid):
    """A Flower ``Grid`` whose nodes are ``ClientApp`` calls in this process.

    Parameters
    ----------
    client_app : callable
        A ``flwr.clientapp.ClientApp`` (anything called as ``app(message, context)``).
    node_configs : sequence of dict
        One node config per node, e.g. ``{"partition-id": i, "num-partitions": n}``.
    run_id : int
        Run id written into message metadata.
    node_ids : sequence of int, optional
        Node ids (default ``1001, 1002, ...``: deliberately not the partition ids).

    Notes
    -----
    Timeout semantics: Flower's ``send_and_receive(timeout=)`` bounds the exchange while the
    nodes work in parallel. Here clients run one after another, so each reply is judged on
    its own duration: a client that took longer than ``timeout`` is dropped (as its late reply
    would be on a real grid). A running client cannot be pre-empted.
    """

    def __init__(self, client_app: Callable[[Message, Context], Message],
                 node_configs: Sequence[Mapping[str, Any]], *, run_id: int = 1,
                 node_ids: Sequence[int] | None = None) -> None:
        if len(node_configs) == 0:
            raise ValueError("The 'node_configs' parameter of InProcessGrid must describe at "
                             "least one node.")
        ids = list(node_ids) if node_ids is not None else [1001 + i
                                                          for i in range(len(node_configs))]
        if len(ids) != len(node_configs) or len(set(ids)) != len(ids):
            raise ValueError("InProcessGrid: node_ids must be distinct, one per node config.")
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        self.contexts = {nid: Context(run_id=run_id, node_id=nid, node_config=dict(cfg),
                                      state=RecordDict(), run_config={})
                         for nid, cfg in zip(ids, node_configs)}
        self._pending: dict[str, Message] = {}
        self.offline: set[int] = set()
        self.bytes_sent = 0
        self.bytes_received = 0

    # --- Grid API ------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content=content,
                       metadata=self._metadata(dst_node_id, message_type, group_id, ttl))

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.contexts if n not in self.offline]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            md = msg.metadata
            stamped = Message(content=msg.content, metadata=Metadata(
                run_id=self._run.run_id, message_id=uuid.uuid4().hex, src_node_id=_SERVER_NODE,
                dst_node_id=md.dst_node_id, reply_to_message_id="", group_id=md.group_id,
                created_at=time.time(), ttl=md.ttl, message_type=md.message_type))
            self._pending[stamped.metadata.message_id] = stamped
            ids.append(stamped.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._deliver(self._pending.pop(i)) for i in list(message_ids)
                if i in self._pending]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        ids = list(self.push_messages(messages))
        replies = []
        for i in ids:
            msg = self._pending.pop(i)
            start = time.monotonic()
            reply = self._deliver(msg)
            if timeout is not None and time.monotonic() - start > timeout:
                continue  # arrived too late: Flower would not return it either
            replies.append(reply)
        return replies

    # --- delivery ----------------------------------------------------------------------
    def _metadata(self, dst: int, mtype: str, group: str, ttl: float | None) -> Metadata:
        return Metadata(run_id=self._run.run_id, message_id="", src_node_id=_SERVER_NODE,
                        dst_node_id=dst, reply_to_message_id="", group_id=group,
                        created_at=time.time(), ttl=ttl or 3600.0, message_type=mtype)

    def _deliver(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        if node not in self.contexts or node in self.offline:
            return Message(Error(code=ErrorCode.MESSAGE_UNAVAILABLE,
                                 reason=f"node {node} is not connected"), reply_to=msg)
        self.bytes_sent += _array_bytes(msg.content)
        try:
            reply = self.client_app(msg, self.contexts[node])
        except Exception as exc:  # noqa: BLE001  (a failing ClientApp becomes an error reply)
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                 reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
        if reply.has_content():
            self.bytes_received += _array_bytes(reply.content)
        return reply


@dataclass
class History:
    """What :func:`run_feddip` returns: one record per round, the final model and mask."""

    rounds: list[dict[str, Any]]
    state: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor] | None
    transport_bytes: dict[str, int] = field(default_factory=dict)

    def series(self, key: str) -> list[Any]:
        """The values of ``key`` over rounds (``nan`` where a round lacks it)."""
        return [r.get(key, float("nan")) for r in self.rounds]

    @property
    def final(self) -> dict[str, Any]:
        return self.rounds[-1] if self.rounds else {}


def _as_xy(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(d, torch.Tensor) for d in data):
        return data[0], data[1]
    raise TypeError(param_error(name, "run_feddip", "an (x, y) tuple of tensors",
                                type(data).__name__))


def _check_clients(model_fn: Callable[[], nn.Module], client_data: Sequence[Any]) -> None:
    """Refuse (x, y) clients that would fail every round: NaN/inf inputs, x/y lengths that
    differ, inputs the model cannot take (e.g. a wrong feature count), labels outside its
    outputs. One forward on one sample per client, before any round runs."""
    probe = None
    for i, d in enumerate(client_data):
        if not (isinstance(d, (tuple, list)) and len(d) == 2
                and all(isinstance(t, torch.Tensor) for t in d)):
            continue
        name = f"client_data[{i}]"
        x, y = d
        check_tensor(x, name, where="run_feddip")
        if len(x) != len(y):
            raise ValueError(param_error(name, "run_feddip", "an (x, y) pair of equal lengths",
                                         f"{len(x)} inputs and {len(y)} labels"))
        if probe is None:
            probe = model_fn()
        p = next(iter(probe.parameters()), None)
        try:
            with eval_mode(probe), torch.no_grad():
                out = probe(x[:1].to(p.device if p is not None else "cpu"))
        except Exception as exc:  # noqa: BLE001 - re-raised with the client named
            raise ValueError(param_error(name, "run_feddip",
                                         "inputs the model accepts",
                                         f"shape {tuple(x.shape)} ({exc})")) from exc
        if y.ndim == 1 and not y.is_floating_point() and out.ndim == 2 and len(y) and (
                int(y.min()) < 0 or int(y.max()) >= out.shape[1]):
            raise ValueError(param_error(name, "run_feddip",
                                         f"labels in [0, {out.shape[1] - 1}]",
                                         f"range [{int(y.min())}, {int(y.max())}]"))


@validate_params({"model_fn": Callable_(), "client_data": Sequence_(min_len=0),
                  "test_data": Optional_(Sequence_(min_len=2, max_len=2)),
                  "config": Instance(FedDIPConfig), "evaluate_every": Int(1, 10_000_000),
                  "checkpoint": Optional_(PathArg()),
                  "timeout": Optional_(Real(0.0, 1e7, closed="right")),
                  "client_app": Optional_(Callable_()), "log": Optional_(Callable_()),
                  "verbose": Instance(bool)})
def run_feddip(model_fn: Callable[[], nn.Module], client_data: Sequence[Any],
               test_data: tuple[torch.Tensor, torch.Tensor] | None, config: FedDIPConfig, *,
               evaluate_every: int = 1, checkpoint: str | Path | None = None,
               timeout: float | None = None,
               client_app: Callable[[Message, Context], Message] | None = None,
               log: Callable[[dict[str, Any]], None] | None = None,
               verbose: bool = False, min_fit_clients: int = 1,
               accept_failures: bool = True, round_retries: int = 2) -> History:
    """Run FedDIP in this process: Flower's strategy and ClientApp on an :class:`InProcessGrid`.

    Parameters
    ----------
    model_fn : callable
        Builds the model (called once for the server and once per client update).
    client_data : sequence
        One training set per client: a torch ``Dataset`` or an ``(x, y)`` tuple of tensors.
    test_data : (x, y) tensors or None
        Central test set; the masked global model's ``accuracy`` is recorded every
        ``evaluate_every`` rounds and at the last round.
    config : FedDIPConfig
        Hyper-parameters (``prune=False, regularize=False`` gives plain FedAvg).
    checkpoint : path, optional
        Per-round atomic checkpoint; an existing file resumes the run after its last round.
    timeout : float, optional
        Reply deadline per round (seconds); late replies are dropped.
    client_app : ClientApp, optional
        Replace the default client (e.g. to inject failures in tests).
    log : callable, optional
        Called with each round's record (after evaluation).
    verbose : bool
        Keep Flower's INFO logging (off by default: it prints several lines per round).
    min_fit_clients, accept_failures, round_retries
        Failure semantics (see :class:`~dnnkit.feddip.flower.FedDIPStrategy`): a round needs
        ``min_fit_clients`` valid updates (with ``accept_failures=False``: no failure at all);
        a failed round is retried ``round_retries`` times, then the run stops.

    Returns
    -------
    History

    Raises
    ------
    FederationError
        When a round still lacks enough valid client updates after its retries (for example
        when every client fails): the run never returns an untrained model as if trained.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from dnnkit.feddip import FedDIPConfig, run_feddip
    >>> g = torch.Generator().manual_seed(0)
    >>> data = [(torch.randn(40, 4, generator=g), torch.randint(0, 2, (40,), generator=g))
    ...         for _ in range(4)]
    >>> cfg = FedDIPConfig(rounds=4, clients_per_round=2, local_epochs=1, batch_size=20,
    ...                    lambda_segments=2, target_sparsity=0.8, reconfig_interval=2)
    >>> hist = run_feddip(lambda: nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)),
    ...                   data, data[0], cfg)
    >>> len(hist.rounds), hist.final["sparsity"] > 0.5
    (4, True)
    """
    if not isinstance(config, FedDIPConfig):
        raise TypeError(param_error("config", "run_feddip", "a FedDIPConfig",
                                    type(config).__name__))
    check_int(evaluate_every, "evaluate_every", 1, where="run_feddip")
    n = len(client_data)
    if n == 0:
        raise ValueError("The 'client_data' parameter of run_feddip must hold at least one "
                         "client. Got an empty sequence instead.")
    if config.clients_per_round > n:
        raise ValueError(param_error("clients_per_round", "FedDIPConfig",
                                     f"<= the number of clients ({n})",
                                     config.clients_per_round))
    for i, d in enumerate(client_data):
        size = len(d[0]) if isinstance(d, (tuple, list)) else len(d)
        if size == 0:
            raise ValueError(f"Client {i} of run_feddip has no training data (empty client).")
    _check_clients(model_fn, client_data)
    x_test = y_test = None
    if test_data is not None:
        x_test, y_test = _as_xy(test_data, "test_data")
    app = client_app or make_client_app(model_fn, lambda pid, _n: client_data[pid])
    grid = InProcessGrid(app, [{"partition-id": i, "num-partitions": n} for i in range(n)])
    with quiet_flower(not verbose):
        strategy = FedDIPStrategy(model_fn(), config, checkpoint=checkpoint,
                                  min_fit_clients=min_fit_clients,
                                  accept_failures=accept_failures, round_retries=round_retries)
    eval_model = model_fn()

    def evaluate_fn(done: int, arrays: ArrayRecord) -> MetricRecord | None:
        if done == 0 or x_test is None:
            return None
        if done % evaluate_every and done != config.rounds:
            return None
        eval_model.load_state_dict(arrays.to_torch_state_dict())
        dev = next(eval_model.parameters()).device
        with eval_mode(eval_model), torch.no_grad():
            pred = eval_model(x_test.to(dev)).argmax(1)
        return MetricRecord({"accuracy": float((pred == y_test.to(dev)).float().mean())})

    def logging_eval(done: int, arrays: ArrayRecord) -> MetricRecord | None:
        res = evaluate_fn(done, arrays)
        if log is not None and done > 0 and strategy.server.history:
            rec = dict(strategy.server.history[-1])
            if res is not None:
                rec.update({k: float(v) for k, v in res.items()})
            log(rec)
        return res

    with server_identity(grid.run.run_id), quiet_flower(not verbose):
        strategy.start(grid, timeout=timeout if timeout is not None else 3600.0,
                       evaluate_fn=logging_eval)
    server = strategy.server
    return History(rounds=[dict(r) for r in server.history],
                   state={k: v.clone() for k, v in server.state.items()},
                   mask=None if server.mask is None else dict(server.mask),
                   transport_bytes={"sent": grid.bytes_sent, "received": grid.bytes_received})
