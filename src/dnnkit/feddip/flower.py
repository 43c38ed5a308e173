"""FedDIP on Flower (Message API, flwr >= 1.20): a ``FedAvg`` strategy and a ``ClientApp``.

The strategy is a thin adapter around :class:`~dnnkit.feddip.server.FedDIPServer`: Flower's
``FedAvg.aggregate_train`` computes the weighted mean (and drops failed replies), the server
masks it, re-prunes on schedule and accounts bytes. Clients are sampled by partition id with a
seeded generator, so every engine (simulation, deployment, the in-process driver) samples the
same clients. The ``ClientApp`` runs :func:`~dnnkit.feddip.local.dpf_local_train`.

Wire format of a train instruction: ``RecordDict({"arrays": ArrayRecord(global state),
"mask": ArrayRecord({"bits": packed bitmask}) [optional], "config": ConfigRecord(round
settings, with "mask-keys" when a mask is sent)})``: the keep-masks of the ``mask-keys``
tensors, flattened and concatenated in that order, packed 8 per byte (``numpy.packbits``,
big-endian bit order); the client takes the shapes from its own model. A client also accepts
the older format, one uint8 0/1 array per masked tensor; the
reply is ``RecordDict({"arrays": ArrayRecord(local state), "metrics": MetricRecord({
"num-examples", "train-loss", "upload-bytes", "upload-zeros", "upload-numel"})})``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy import Result as FlowerResult
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    AnyOf,
    Callable_,
    Instance,
    Optional_,
    PathArg,
    Real,
    Sequence_,
    Str,
    check_int,
    check_positive,
    param_error,
    validate_params,
)
from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.local import dpf_local_train
from dnnkit.feddip.masks import erk_mask
from dnnkit.feddip.server import FedDIPServer, client_seed, upload_stats

__all__ = ["QUERY_PARTITION", "FedDIPStrategy", "FederationError", "make_client_app",
           "make_server_app"]

log = logging.getLogger("dnnkit")

#: Message type of the partition-id query the strategy sends once to every new node.
QUERY_PARTITION = "query"

_CFG_KEYS = ("round", "lr", "lambda", "sparsity", "local_epochs", "batch_size", "weight_decay",
             "momentum", "norm_p", "prox_mu", "upload", "seed", "round0_erk", "erk_density",
             "prunable")


class FederationError(RuntimeError):
    """A round could not gather enough valid client updates, even after its retries."""


def _state_to_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord({k: v.detach().cpu() for k, v in state.items()})


def _mask_to_record(mask: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """The masks as ONE packed bitmask (1 bit per weight, the bytes the accounting counts):
    one array to (de)serialise per client instead of one per tensor."""
    flat = torch.cat([m.detach().reshape(-1).cpu().bool() for m in mask.values()])
    return ArrayRecord({"bits": torch.from_numpy(np.packbits(flat.numpy()))})


def _mask_from_message(content: RecordDict, config: ConfigRecord,
                       shapes: Mapping[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`_mask_to_record` (bool tensors on the CPU); also reads the older
    per-tensor uint8 format."""
    record = content["mask"]
    if "mask-keys" not in config:  # older wire format: one uint8 array per tensor
        return {k: v.bool() for k, v in record.to_torch_state_dict().items()}
    keys = [str(k) for k in config["mask-keys"]]
    unknown = [k for k in keys if k not in shapes]
    if unknown:
        raise KeyError(f"The server's mask names tensors {unknown[:5]} this client's model "
                       "does not have.")
    sizes = [math.prod(shapes[k]) for k in keys]
    bits = record["bits"].numpy()
    if bits.ndim != 1 or bits.size != (sum(sizes) + 7) // 8:
        raise ValueError(f"The server's packed mask holds {bits.size} bytes; the model's "
                         f"{len(keys)} masked tensors need {(sum(sizes) + 7) // 8}.")
    flat = torch.from_numpy(np.unpackbits(bits, count=sum(sizes))).view(torch.bool)
    return {k: part.reshape(shapes[k]) for k, part in zip(keys, torch.split(flat, sizes))}


@validate_params({"model": Instance(nn.Module), "config": Instance(FedDIPConfig),
                  "checkpoint": Optional_(PathArg()),
                  "node_wait_timeout": Real(0.0, 1e7, closed="right"),
                  "fraction_evaluate": Real(0.0, 1.0),
                  "prunable": Optional_(Sequence_(Str(), min_len=0))})
class FedDIPStrategy(FedAvg):
    """Flower strategy running FedDIP (a ``flwr.serverapp.strategy.FedAvg`` subclass).

    Parameters
    ----------
    model : nn.Module
        Initial global model (copied).
    config : FedDIPConfig
        FedDIP hyper-parameters; ``config.rounds`` is the number of rounds :meth:`start` runs.
    checkpoint : path, optional
        Safetensors file written atomically after every round (global model, mask, history).
        If it exists when the strategy is created, the run resumes after its last round.
    node_wait_timeout : float
        Seconds to wait for enough connected nodes before raising ``TimeoutError`` (Flower's
        own sampling waits forever).
    fraction_evaluate : float
        Fraction of nodes asked for federated evaluation (0 = only centralised evaluation via
        ``evaluate_fn``).
    prunable : list of str, optional
        Prunable state-dict entries (default: Conv/Linear weights).
    min_fit_clients : int
        Valid client updates a round needs to be aggregated (Flower's ``min_fit_clients``);
        at most ``config.clients_per_round``.
    accept_failures : bool
        As in Flower: when true, a round with failed or invalid replies aggregates the valid
        ones (if there are ``min_fit_clients``); when false, any failure fails the round.
    round_retries : int
        A round that failed is sent again to the clients without a valid reply this many
        times; after that :class:`FederationError` is raised (the last checkpoint stays at the
        previous round, so the run can be resumed).

    Notes
    -----
    Every reply is validated before aggregation: an error reply, missing or unexpected tensors,
    a wrong shape, NaN/inf values or a non-positive example count drop that reply (the reason is
    logged) and the rest are aggregated. Each round's record counts ``clients_failed`` (error
    replies and timeouts), ``clients_invalid`` and ``round_retries``.

    Attributes
    ----------
    server : FedDIPServer
        The engine-agnostic state (``server.state``, ``server.mask``, ``server.history``).
    """

    def __init__(self, model: nn.Module, config: FedDIPConfig, *,
                 checkpoint: str | Path | None = None, node_wait_timeout: float = 120.0,
                 fraction_evaluate: float = 0.0, prunable: list[str] | None = None,
                 min_fit_clients: int = 1, accept_failures: bool = True,
                 round_retries: int = 2) -> None:
        check_int(min_fit_clients, "min_fit_clients", 1, config.clients_per_round,
                  where="FedDIPStrategy")
        check_int(round_retries, "round_retries", 0, 100, where="FedDIPStrategy")
        if not isinstance(accept_failures, bool):
            raise TypeError(param_error("accept_failures", "FedDIPStrategy", "a bool",
                                        type(accept_failures).__name__))
        super().__init__(fraction_train=1.0, fraction_evaluate=fraction_evaluate,
                         min_train_nodes=config.clients_per_round,
                         min_evaluate_nodes=1 if fraction_evaluate > 0 else 0,
                         min_available_nodes=config.clients_per_round)
        self.server = FedDIPServer(model, config, prunable=prunable)
        self.config = config
        self.node_wait_timeout = check_positive(node_wait_timeout, "node_wait_timeout",
                                                where="FedDIPStrategy")
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        if self.checkpoint is not None and self.checkpoint.is_file():
            self.server.load(self.checkpoint)
            log.info("FedDIP: resuming from %s at round %d", self.checkpoint, self.server.round)
        self.min_fit_clients = min_fit_clients
        self.accept_failures = accept_failures
        self.round_retries = round_retries
        self.partition_of: dict[int, int] = {}
        self._offset = 0
        self._sent: dict[int, int] = {}
        self._round_msgs: dict[int, dict[int, RecordDict]] = {}
        self._grid: Grid | None = None

    def summary(self) -> None:
        log.info("FedDIPStrategy: %s", self.config)

    # --- nodes and partitions --------------------------------------------------------------
    def _wait_for_nodes(self, grid: Grid, needed: int) -> list[int]:
        deadline = time.monotonic() + self.node_wait_timeout
        while True:
            nodes = list(grid.get_node_ids())
            if len(nodes) >= needed:
                return nodes
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"FedDIPStrategy: only {len(nodes)} node(s) connected after "
                    f"{self.node_wait_timeout:.0f} s, {needed} are needed per round "
                    "(clients_per_round). Start more SuperNodes or lower clients_per_round.")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _discover(self, grid: Grid, nodes: list[int], timeout: float | None) -> None:
        new = [n for n in nodes if n not in self.partition_of]
        if not new:
            return
        msgs = [Message(RecordDict({"config": ConfigRecord({"ask": "partition-id"})}),
                        dst_node_id=n, message_type=QUERY_PARTITION, group_id="discover")
                for n in new]
        for reply in grid.send_and_receive(msgs, timeout=timeout):
            if reply.has_error():
                log.warning("FedDIP: node %s did not report its partition id: %s",
                            reply.metadata.src_node_id, reply.error.reason)
                continue
            info = next(iter(reply.content.metric_records.values()))
            self.partition_of[reply.metadata.src_node_id] = int(info["partition-id"])
        by_part: dict[int, list[int]] = {}
        for node, part in self.partition_of.items():
            by_part.setdefault(part, []).append(node)
        dup = {p: ns for p, ns in by_part.items() if len(ns) > 1}
        if dup:
            raise ValueError(f"FedDIPStrategy: several nodes report the same partition id "
                             f"{dup}; give every SuperNode its own 'partition-id'.")

    # --- training ----------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        t = server_round - 1 + self._offset
        k = self.config.clients_per_round
        nodes = self._wait_for_nodes(grid, k)
        self._discover(grid, nodes, self._timeout)
        node_of = {p: n for n, p in self.partition_of.items() if n in set(nodes)}
        if len(node_of) < k:
            raise ValueError(f"Round {t}: only {len(node_of)} nodes reported a partition id, "
                             f"{k} clients are needed per round.")
        parts = self.server.sample(sorted(node_of), t)
        state, mask = self.server.broadcast()
        settings = self.server.round_config(t)
        cfg = ConfigRecord({**{k_: v for k_, v in config.items()},
                            **{k_: settings[k_] for k_ in _CFG_KEYS},
                            "server-round": server_round})
        content = {"arrays": _state_to_record(state), "config": cfg}
        if mask is not None:
            content["mask"] = _mask_to_record(mask)
            cfg["mask-keys"] = list(mask)
        record = RecordDict(content)
        self._sent[t] = len(parts)
        self._grid = grid
        self._round_msgs = {t: {node_of[p]: record for p in parts}}
        log.info("FedDIP round %d: clients %s", t, parts)
        return [Message(record, dst_node_id=node_of[p], message_type=MessageType.TRAIN,
                        group_id=str(server_round)) for p in parts]

    def _screen(self, t: int, replies: Iterable[Message]
                ) -> tuple[list[Message], list[tuple[int, str, str]]]:
        """Split replies into valid ones and ``(node, kind, reason)`` for the dropped ones
        (kind ``failed`` for error replies, ``invalid`` for bad content)."""
        valid, dropped = [], []
        for m in replies:
            node = m.metadata.src_node_id
            if m.has_error():
                dropped.append((node, "failed", str(m.error.reason)))
                continue
            why = self._reply_problem(m)
            if why is None:
                valid.append(m)
            else:
                dropped.append((node, "invalid", why))
        for node, kind, why in dropped:
            log.warning("FedDIP round %d: dropped %s reply of node %s: %s", t, kind, node, why)
        return valid, dropped

    def _reply_problem(self, m: Message) -> str | None:
        try:
            arrays = m.content.array_records.get("arrays")
            if arrays is None:
                return "no 'arrays' record"
            state = arrays.to_torch_state_dict()
            rec = next(iter(m.content.metric_records.values()), {})
            n = float(rec.get("num-examples", 0))
        except Exception as exc:  # noqa: BLE001  (a malformed reply is dropped, not fatal)
            return f"unreadable ({type(exc).__name__}: {exc})"
        if not math.isfinite(n) or n <= 0:
            return f"reported {rec.get('num-examples', 0)} training examples"
        missing = sorted(set(self.server.state) - set(state))
        extra = sorted(set(state) - set(self.server.state))
        if missing or extra:
            return f"tensors do not match the model (missing {missing[:3]}, unexpected {extra[:3]})"
        for k, ref in self.server.state.items():
            v = state[k]
            if tuple(v.shape) != tuple(ref.shape):
                return f"{k!r} has shape {tuple(v.shape)}, the model's is {tuple(ref.shape)}"
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                return f"{k!r} holds NaN or infinite values"
        return None

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        t = server_round - 1 + self._offset
        valid, dropped = self._screen(t, list(replies))
        sent = self._round_msgs.get(t, {})
        retries = 0

        def short() -> list[int]:
            got = {m.metadata.src_node_id for m in valid}
            return [n for n in sent if n not in got] or [n for n, _, _ in dropped
                                                         if n not in got]

        def failing() -> bool:
            return len(valid) < self.min_fit_clients or (not self.accept_failures
                                                         and bool(short()))

        while failing() and sent and self._grid is not None and retries < self.round_retries:
            retries += 1
            redo = short()
            log.warning("FedDIP round %d: %d valid update(s), %d needed; retry %d/%d with "
                        "nodes %s", t, len(valid), self.min_fit_clients, retries,
                        self.round_retries, redo)
            msgs = [Message(sent[n], dst_node_id=n, message_type=MessageType.TRAIN,
                            group_id=str(server_round)) for n in redo]
            new_valid, new_dropped = self._screen(
                t, self._grid.send_and_receive(msgs, timeout=self._timeout))
            valid += new_valid
            dropped += new_dropped
        if failing():
            reasons = "; ".join(f"node {n} {k}: {w}" for n, k, w in dropped[-8:]) or "no reply"
            raise FederationError(
                f"FedDIP round {t}: {len(valid)} valid client update(s), "
                f"{self.min_fit_clients} needed"
                f"{'' if self.accept_failures else ' and no failure allowed'}, after "
                f"{retries} retr{'y' if retries == 1 else 'ies'} ({reasons}). The global model "
                "and the last checkpoint stay at the previous round.")
        # deterministic order (partition id) so every engine sums in the same order
        valid.sort(key=lambda m: self.partition_of.get(m.metadata.src_node_id, 1 << 30))
        arrays, metrics = super().aggregate_train(server_round, valid)
        sums = {"upload-bytes": 0, "upload-zeros": 0, "upload-numel": 0}
        for m in valid:
            rec = next(iter(m.content.metric_records.values()))
            for key in sums:
                sums[key] += int(rec.get(key, 0))
        agg = arrays.to_torch_state_dict() if arrays is not None else None
        record = self.server.finish_round(
            t, agg, num_sent=self._sent.get(t, len(valid) + len(dropped)),
            num_received=len(valid), upload_bytes=sums["upload-bytes"],
            upload_zeros=sums["upload-zeros"], upload_numel=sums["upload-numel"])
        replied = {m.metadata.src_node_id for m in valid} | {n for n, _, _ in dropped}
        timed_out = len(set(sent) - replied)
        record["clients_failed"] = sum(k == "failed" for _, k, _ in dropped) + timed_out
        record["clients_invalid"] = sum(k == "invalid" for _, k, _ in dropped)
        record["round_retries"] = retries
        self._round_msgs.pop(t, None)
        if self.checkpoint is not None:
            self.server.save(self.checkpoint)
        out = MetricRecord({k: float(v) for k, v in record.items()
                            if isinstance(v, (int, float))})
        if metrics is not None:
            for key, value in metrics.items():
                if key not in sums and isinstance(value, (int, float)):
                    out[f"client-{key}"] = float(value)
        return _state_to_record(self.server.state), out

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        if self.fraction_evaluate == 0.0:
            return []
        return super().configure_evaluate(server_round, _state_to_record(self.server.state),
                                          config, grid)

    # --- the run -----------------------------------------------------------------------------
    def start(self, grid: Grid, initial_arrays: ArrayRecord | None = None,
              num_rounds: int | None = None, timeout: float = 3600,
              train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
              ) -> FlowerResult:
        """Run the remaining rounds (all ``config.rounds``, or those after a checkpoint).

        ``initial_arrays`` (optional) replaces the initial global model when starting at round
        0; ``num_rounds`` must be ``None`` or equal ``config.rounds``. ``evaluate_fn(t, arrays)``
        receives the absolute round count (``t`` rounds done); its metrics are merged into
        ``server.history``.
        """
        if num_rounds is not None and num_rounds != self.config.rounds:
            raise ValueError(param_error("num_rounds", "FedDIPStrategy.start",
                                         f"None or config.rounds ({self.config.rounds})",
                                         num_rounds))
        if initial_arrays is not None and self.server.round == 0:
            given = initial_arrays.to_torch_state_dict()
            if set(given) != set(self.server.state):
                raise ValueError("FedDIPStrategy.start: initial_arrays do not match the model.")
            self.server.state = {k: given[k].to(v.dtype) for k, v in self.server.state.items()}
        self._offset = self.server.round
        self._timeout = timeout
        remaining = self.config.rounds - self.server.round
        if remaining <= 0:
            res = FlowerResult()
            res.arrays = _state_to_record(self.server.state)
            return res

        wrapped = None
        if evaluate_fn is not None:
            def wrapped(rnd: int, arrs: ArrayRecord) -> MetricRecord | None:
                done = rnd + self._offset
                res = evaluate_fn(done, arrs)
                if res is not None and done > 0 and len(self.server.history) >= done:
                    self.server.history[done - 1].update(
                        {k: float(v) for k, v in res.items() if isinstance(v, (int, float))})
                return res

        return super().start(grid, _state_to_record(self.server.state), num_rounds=remaining,
                             timeout=timeout, train_config=train_config,
                             evaluate_config=evaluate_config, evaluate_fn=wrapped)

    _timeout: float | None = None


def _as_dataset(data: Any) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(d, torch.Tensor) for d in data):
        return TensorDataset(data[0], data[1])
    raise TypeError(param_error("load_partition(...)", "make_client_app",
                                "a torch Dataset or an (x, y) tuple of tensors",
                                type(data).__name__))


class shuffled_batches:
    """Re-iterable shuffled mini-batches of a dataset, one new permutation per pass.

    Each pass draws ``torch.randperm(n, generator=generator)``; a ``TensorDataset`` is sliced
    directly instead of item by item (much faster for small models), other datasets go
    through a ``DataLoader`` with the same generator.
    """

    def __init__(self, data: Dataset, batch_size: int, generator: torch.Generator) -> None:
        self.data, self.batch_size, self.generator = data, batch_size, generator

    def __iter__(self):
        if not isinstance(self.data, TensorDataset):
            yield from DataLoader(self.data, batch_size=self.batch_size, shuffle=True,
                                  generator=self.generator)
            return
        n = len(self.data)
        perm = torch.randperm(n, generator=self.generator)
        for i in range(0, n, self.batch_size):
            idx = perm[i:i + self.batch_size]
            yield tuple(t[idx] for t in self.data.tensors)


@validate_params({"model_fn": Callable_(), "load_partition": Callable_(),
                  "load_test": Optional_(Callable_()),
                  "device": AnyOf(Str(), Instance(torch.device))})
def make_client_app(model_fn: Callable[[], nn.Module],
                    load_partition: Callable[[int, int], Any], *,
                    load_test: Callable[[int, int], Any] | None = None,
                    device: str | torch.device = "cpu") -> ClientApp:
    """A Flower ``ClientApp`` that trains with :func:`dpf_local_train`.

    Parameters
    ----------
    model_fn : callable
        Builds a fresh model (same architecture as the server's).
    load_partition : callable
        ``load_partition(partition_id, num_partitions)`` returns this node's training data: a
        torch ``Dataset`` or an ``(x, y)`` tuple of tensors. ``partition_id`` and
        ``num_partitions`` come from the node config (simulation sets them; a SuperNode gets
        them with ``--node-config "partition-id=0 num-partitions=10"``). Results are cached.
    load_test : callable, optional
        Same for a local test split; enables the ``evaluate`` handler (accuracy, loss).
    device : str or torch.device
        Where local training runs.

    All training settings (epochs, batch size, lr_t, lambda_t, ...) arrive from the server in
    the message's ``ConfigRecord``; batch order is seeded by ``(seed, round, partition)``.
    """
    app = ClientApp()
    cache: dict[tuple[str, int, int], Dataset] = {}

    def _data(kind: str, fn: Callable[[int, int], Any], pid: int, nparts: int) -> Dataset:
        key = (kind, pid, nparts)
        if key not in cache:
            cache[key] = _as_dataset(fn(pid, nparts))
            if len(cache[key]) == 0:
                raise ValueError(f"Partition {pid} of {nparts} has no {kind} data.")
        return cache[key]

    def _ids(context: Context) -> tuple[int, int]:
        if "partition-id" not in context.node_config:
            raise KeyError("This node has no 'partition-id' in its node config; start the "
                           "SuperNode with --node-config \"partition-id=<i> num-partitions=<n>\".")
        return (int(context.node_config["partition-id"]),
                int(context.node_config.get("num-partitions", 0)))

    def _model(msg: Message) -> nn.Module:
        model = model_fn().to(device)
        state = msg.content["arrays"].to_torch_state_dict()
        model.load_state_dict(state)
        return model

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        pid, nparts = _ids(context)
        return Message(RecordDict({"info": MetricRecord({"partition-id": pid,
                                                         "num-partitions": nparts})}),
                       reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        pid, nparts = _ids(context)
        c = msg.content["config"]
        model = _model(msg)
        mask = None
        if "mask" in msg.content:
            shapes = {k: v.shape for k, v in model.named_parameters()}  # masks: parameters
            mask = {k: v.to(device) for k, v in _mask_from_message(msg.content, c,
                                                                   shapes).items()}
        prunable = list(c["prunable"])
        t, seed = int(c["round"]), int(c["seed"])
        if mask is None and bool(c["round0_erk"]):
            params = dict(model.named_parameters())
            mask = {k: m.to(device) for k, m in
                    erk_mask({k: params[k].shape for k in prunable}, float(c["erk_density"]),
                             seed=client_seed(seed, t, pid)).items()}
        data = _data("train", load_partition, pid, nparts)
        loader = shuffled_batches(data, int(c["batch_size"]),
                                  make_generator(client_seed(seed, t, pid)))
        prox = float(c["prox_mu"])
        global_state = ({k: v.detach().clone() for k, v in model.named_parameters()}
                        if prox > 0 else None)
        stats = dpf_local_train(model, mask, loader, epochs=int(c["local_epochs"]),
                                lr=float(c["lr"]), lam=float(c["lambda"]),
                                weight_decay=float(c["weight_decay"]),
                                momentum=float(c["momentum"]), norm_p=float(c["norm_p"]),
                                prox_mu=prox, global_state=global_state, prunable=prunable)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        up_mask = mask if str(c["upload"]) == "masked" else None
        if up_mask is not None:
            for k, m in up_mask.items():
                state[k] = state[k] * m.to(state[k].dtype)
        up = upload_stats(state, up_mask)
        metrics = MetricRecord({"num-examples": int(stats["num_examples"]),
                                "train-loss": float(stats["loss"]),
                                "upload-bytes": up["bytes"], "upload-zeros": up["zeros"],
                                "upload-numel": up["numel"]})
        return Message(RecordDict({"arrays": _state_to_record(state), "metrics": metrics}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        if load_test is None:
            raise ValueError("This ClientApp has no local test data (pass load_test= to "
                             "make_client_app).")
        pid, nparts = _ids(context)
        model = _model(msg)
        data = _data("test", load_test, pid, nparts)
        correct, loss, n = 0, 0.0, 0
        model.eval()
        with torch.no_grad():
            for x, y in DataLoader(data, batch_size=512):
                out = model(x.to(device))
                y = y.to(device)
                loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
                correct += int((out.argmax(1) == y).sum())
                n += int(y.shape[0])
        metrics = MetricRecord({"num-examples": n, "accuracy": correct / n, "loss": loss / n})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def make_server_app(model_fn: Callable[[], nn.Module], config: FedDIPConfig, *,
                    checkpoint: str | Path | None = None,
                    evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
                    node_wait_timeout: float = 120.0, reply_timeout: float = 3600.0
                    ) -> ServerApp:
    """A Flower ``ServerApp`` whose ``main`` runs :class:`FedDIPStrategy` for
    ``config.rounds`` rounds (checkpointing to ``checkpoint`` if given)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedDIPStrategy(model_fn(), config, checkpoint=checkpoint,
                                  node_wait_timeout=node_wait_timeout)
        strategy.start(grid, timeout=reply_timeout, evaluate_fn=evaluate_fn)

    return app


def state_from_arrays(arrays: ArrayRecord) -> dict[str, torch.Tensor]:
    """Torch state dict of an ``ArrayRecord`` (helper for ``evaluate_fn`` callbacks)."""
    return arrays.to_torch_state_dict()

