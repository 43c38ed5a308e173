"""FedDIPStrategy on fabricated replies and the InProcessGrid (no Ray)."""

import pytest
import torch

from tests.feddip.helpers import require_flower

require_flower()  # the `fl` extra; installed by `make test`

from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.driver import InProcessGrid, quiet_flower, server_identity
from dnnkit.feddip.flower import (
    FedDIPStrategy,
    _mask_from_message,
    _mask_to_record,
    make_client_app,
)

from .helpers import error_reply, reply, tiny_clients, tiny_model


def _strategy(**kw):
    cfg = FedDIPConfig(**{"rounds": 10, "clients_per_round": 2, "lambda_segments": 2, **kw})
    with quiet_flower():
        return FedDIPStrategy(tiny_model(), cfg, node_wait_timeout=1.0)


def _perturbed(seed):
    g = torch.Generator().manual_seed(seed)
    return {k: v + torch.randn(v.shape, generator=g) for k, v in tiny_model().state_dict().items()}


@pytest.mark.oracle
def test_strategy_with_pruning_off_aggregates_exactly_like_flower_fedavg():
    from flwr.serverapp.strategy import FedAvg

    st = _strategy(prune=False, regularize=False)
    states = [_perturbed(i) for i in range(3)]
    replies = [reply(s, c, node=i + 1) for i, (s, c) in enumerate(zip(states, [4, 9, 2]))]
    with quiet_flower():
        ours, metrics = st.aggregate_train(1, replies)
        theirs, _ = FedAvg().aggregate_train(1, replies)
    a, b = ours.to_torch_state_dict(), theirs.to_torch_state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert metrics["clients_received"] == 3


def test_failed_reply_is_excluded_and_weights_renormalise():
    st = _strategy(prune=False, regularize=False)
    s1, s2 = _perturbed(1), _perturbed(2)
    with quiet_flower():
        ours, metrics = st.aggregate_train(1, [reply(s1, 1, node=1), error_reply(),
                                               reply(s2, 3, node=2)])
    got = ours.to_torch_state_dict()
    for k in got:
        torch.testing.assert_close(got[k], 0.25 * s1[k] + 0.75 * s2[k], rtol=0, atol=1e-6)
    assert metrics["clients_received"] == 2


def test_all_replies_failed_is_an_error_and_keeps_model_and_round():
    from dnnkit.feddip.flower import FederationError

    st = _strategy()
    before = {k: v.clone() for k, v in st.server.state.items()}
    with quiet_flower(), pytest.raises(FederationError, match="round 0: 0 valid .* boom"):
        st.aggregate_train(1, [error_reply(3), error_reply(4)])
    assert st.server.round == 0
    for k, v in st.server.state.items():
        assert torch.equal(v, before[k])


def test_waiting_for_too_few_nodes_times_out():
    app = make_client_app(tiny_model, lambda p, n: tiny_clients(1)[0])
    grid = InProcessGrid(app, [{"partition-id": 0, "num-partitions": 1}])
    st = _strategy(clients_per_round=3)
    with server_identity(1), quiet_flower(), pytest.raises(TimeoutError, match="only 1 node"):
        st.start(grid)


def test_duplicate_partition_ids_are_refused():
    app = make_client_app(tiny_model, lambda p, n: tiny_clients(1)[0])
    grid = InProcessGrid(app, [{"partition-id": 0}, {"partition-id": 0}])
    st = _strategy()
    with server_identity(1), quiet_flower(), pytest.raises(ValueError, match="same partition"):
        st.start(grid)


def test_train_message_carries_mask_and_round_settings():
    st = _strategy(target_sparsity=0.8)
    app = make_client_app(tiny_model, lambda p, n: tiny_clients(2)[p])
    grid = InProcessGrid(app, [{"partition-id": i, "num-partitions": 2} for i in range(2)])
    from flwr.app import ConfigRecord

    with server_identity(1), quiet_flower():
        msgs = list(st.configure_train(1, None, ConfigRecord(), grid))
    assert len(msgs) == 2
    c = msgs[0].content
    assert set(c.array_records) == {"arrays", "mask"}
    cfg = c["config"]
    assert cfg["round"] == 0 and cfg["lr"] == pytest.approx(0.1) and cfg["upload"] == "dense"
    # one packed bitmask (1 bit per weight) for all masked tensors, in cfg["mask-keys"] order
    assert list(cfg["mask-keys"]) == ["0.weight", "2.weight"]
    bits = c["mask"].to_torch_state_dict()
    assert list(bits) == ["bits"] and bits["bits"].dtype == torch.uint8
    assert bits["bits"].numel() == (12 * 6 + 3 * 12 + 7) // 8
    shapes = {k: v.shape for k, v in st.server.state.items()}
    got = _mask_from_message(c, cfg, shapes)
    assert set(got) == set(st.server.mask)
    for k, m in st.server.mask.items():
        assert got[k].dtype == torch.bool and torch.equal(got[k], m)


def test_client_reads_the_older_per_tensor_mask_format_and_refuses_a_bad_packed_mask():
    from flwr.app import ArrayRecord, ConfigRecord, RecordDict

    g = torch.Generator().manual_seed(0)
    mask = {"0.weight": torch.rand(12, 6, generator=g) > 0.5,
            "2.weight": torch.rand(3, 12, generator=g) > 0.5}
    shapes = {k: v.shape for k, v in tiny_model().state_dict().items()}
    old = RecordDict({"mask": ArrayRecord({k: m.to(torch.uint8) for k, m in mask.items()})})
    got = _mask_from_message(old, ConfigRecord(), shapes)
    assert all(torch.equal(got[k], mask[k]) for k in mask)
    new = RecordDict({"mask": _mask_to_record(mask)})
    got = _mask_from_message(new, ConfigRecord({"mask-keys": list(mask)}), shapes)
    assert all(torch.equal(got[k], mask[k]) for k in mask)
    with pytest.raises(ValueError, match="packed mask holds"):
        _mask_from_message(new, ConfigRecord({"mask-keys": ["0.weight"]}), shapes)
    with pytest.raises(KeyError, match="does not have"):
        _mask_from_message(new, ConfigRecord({"mask-keys": ["9.weight"]}), shapes)


def test_zero_example_reply_is_dropped_and_counted(caplog):
    st = _strategy(prune=False, regularize=False)
    s2 = _perturbed(2)
    with quiet_flower(), caplog.at_level("WARNING", logger="dnnkit"):
        ours, metrics = st.aggregate_train(1, [reply(_perturbed(1), 0, node=1),
                                               reply(s2, 3, node=2)])
    assert "0 training examples" in caplog.text
    assert metrics["clients_received"] == 1 and metrics["clients_invalid"] == 1
    for k, v in ours.to_torch_state_dict().items():
        torch.testing.assert_close(v, s2[k], rtol=0, atol=1e-6)
