"""Issue 12, federations that fail loudly: every client failing is an error (after retries),
one NaN or wrongly shaped reply is dropped with a logged reason and counted, the rest are
aggregated; a flaky client succeeds on a retry."""

from __future__ import annotations

import pytest
import torch

from tests.feddip.helpers import require_flower

require_flower()

from dnnkit.feddip import FedDIPConfig, run_feddip  # noqa: E402
from tests.feddip.helpers import tiny_clients, tiny_model  # noqa: E402


def _cfg(**kw):
    return FedDIPConfig(**{"rounds": 2, "clients_per_round": 3, "local_epochs": 1,
                           "batch_size": 12, "lambda_segments": 2, "prune": False,
                           "regularize": False, **kw})


def _app(tamper):
    """The real ClientApp with ``tamper(partition, reply, calls)`` applied to its replies."""
    from dnnkit.feddip.flower import make_client_app

    data = tiny_clients(3)
    real = make_client_app(tiny_model, lambda pid, _n: data[pid])
    calls: dict[int, int] = {}

    def app(msg, context):
        pid = int(context.node_config["partition-id"])
        out = real(msg, context)
        if msg.metadata.message_type.startswith("train"):
            calls[pid] = calls.get(pid, 0) + 1
            tamper(pid, out, calls[pid])
        return out

    return app, data


def test_every_client_failing_is_an_error_not_an_untrained_model():
    from dnnkit.feddip import FederationError

    def boom(pid, out, n):
        raise RuntimeError(f"client {pid} crashed")

    app, data = _app(boom)
    with pytest.raises(FederationError, match=r"round 0: 0 valid .*after 2 retries.*crashed"):
        run_feddip(tiny_model, data, None, _cfg(), client_app=app)


def _poison(kind):
    def tamper(pid, out, n):
        if pid != 1:
            return
        arrays = out.content["arrays"]
        state = arrays.to_torch_state_dict()
        key = next(iter(state))
        if kind == "nan":
            state[key] = torch.full_like(state[key], float("nan"))
        else:
            state[key] = torch.zeros(2, 2)
        from flwr.app import ArrayRecord

        out.content["arrays"] = ArrayRecord(state)
    return tamper


@pytest.mark.parametrize("kind,reason", [("nan", "NaN"), ("shape", "shape")])
def test_one_bad_reply_is_dropped_counted_and_the_rest_aggregated(kind, reason, caplog):
    app, data = _app(_poison(kind))
    with caplog.at_level("WARNING", logger="dnnkit"):
        hist = run_feddip(tiny_model, data, None, _cfg(), client_app=app, round_retries=0)
    assert len(hist.rounds) == 2
    assert [r["clients_invalid"] for r in hist.rounds] == [1, 1]
    assert [r["clients_received"] for r in hist.rounds] == [2, 2]
    assert reason in caplog.text and "dropped invalid reply" in caplog.text
    assert all(bool(torch.isfinite(v).all()) for v in hist.state.values())
    init = tiny_model().state_dict()
    assert any(not torch.equal(v, init[k]) for k, v in hist.state.items())   # it trained


def test_strict_round_and_a_flaky_client_that_recovers_on_retry():
    def flaky(pid, out, n):
        if pid == 2 and n == 1:
            raise RuntimeError("transient")

    app, data = _app(flaky)
    hist = run_feddip(tiny_model, data, None, _cfg(rounds=1), client_app=app,
                      accept_failures=False)
    assert hist.rounds[0]["round_retries"] == 1 and hist.rounds[0]["clients_received"] == 3
    assert hist.rounds[0]["clients_failed"] == 1
