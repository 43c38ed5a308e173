"""The in-process driver: FedDIP-off == Flower's FedAvg, failures, timeouts, resume."""

import time

import pytest
import torch
from torch import nn

from tests.feddip.helpers import require_flower

require_flower()

from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.driver import InProcessGrid, quiet_flower, run_feddip, server_identity
from dnnkit.feddip.flower import make_client_app

from .helpers import tiny_clients, tiny_model

CFG = {"rounds": 6, "clients_per_round": 2, "local_epochs": 1, "batch_size": 8,
       "lambda_segments": 3, "reconfig_interval": 2, "target_sparsity": 0.8, "prune_until": 4}


def _plain_sgd_client_app(clients, lr0, decay, wd, batch_size):
    """An independent FedAvg client: torch.optim.SGD, same seeded batch order."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from dnnkit.feddip.flower import shuffled_batches
    from dnnkit.feddip.server import client_seed

    app = ClientApp()

    @app.train()
    def train(msg, context):
        pid = int(context.node_config["partition-id"])
        t = int(msg.content["config"]["server-round"]) - 1
        model = tiny_model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=lr0 * decay**t, weight_decay=wd)
        ds = torch.utils.data.TensorDataset(*clients[pid])
        for x, y in shuffled_batches(ds, batch_size, torch.Generator().manual_seed(
                client_seed(0, t, pid))):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                   "metrics": MetricRecord({"num-examples": len(ds)})}),
                       reply_to=msg)

    return app


@pytest.mark.oracle
def test_feddip_switched_off_equals_flower_fedavg_run_for_run():
    from flwr.app import ArrayRecord
    from flwr.serverapp.strategy import FedAvg

    clients = tiny_clients(3, size=20)
    cfg = FedDIPConfig(**{**CFG, "clients_per_round": 3, "prune": False, "regularize": False})
    ours = run_feddip(tiny_model, clients, None, cfg)
    app = _plain_sgd_client_app(clients, cfg.lr, cfg.lr_decay, cfg.weight_decay, cfg.batch_size)
    grid = InProcessGrid(app, [{"partition-id": i} for i in range(3)])
    with server_identity(1), quiet_flower():
        res = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=3,
                     min_available_nodes=3).start(
            grid, ArrayRecord(tiny_model().state_dict()), num_rounds=cfg.rounds)
    theirs = res.arrays.to_torch_state_dict()
    for k, v in ours.state.items():
        torch.testing.assert_close(v, theirs[k], rtol=0, atol=1e-6)


def test_run_reaches_target_sparsity_and_accounts_bytes():
    clients = tiny_clients(4)
    hist = run_feddip(tiny_model, clients, clients[0], FedDIPConfig(**CFG))
    assert len(hist.rounds) == 6
    n = sum(m.numel() for m in hist.mask.values())
    assert abs(hist.final["sparsity"] - 0.8) <= 1 / n
    assert all("accuracy" in r for r in hist.rounds)
    assert hist.rounds[-1]["down_bytes"] < hist.rounds[0]["up_bytes"]
    for k, m in hist.mask.items():
        assert bool((hist.state[k][~m] == 0).all())


def test_masked_upload_gives_the_same_global_model_with_code_semantics():
    clients = tiny_clients(4)
    a = run_feddip(tiny_model, clients, None, FedDIPConfig(**CFG))
    b = run_feddip(tiny_model, clients, None, FedDIPConfig(**CFG, upload="masked"))
    for k in a.state:
        torch.testing.assert_close(a.state[k], b.state[k], rtol=0, atol=1e-6)
    assert b.final["cum_up_bytes"] < a.final["cum_up_bytes"]


class _Fail:
    """Wrap a ClientApp: raise for partition ``pid`` (Exception) or kill the run at a round."""

    def __init__(self, app, pid=None, kill_round=None, exc=RuntimeError):
        self.app, self.pid, self.kill_round, self.exc = app, pid, kill_round, exc

    def __call__(self, msg, context):
        if msg.metadata.message_type == "train":
            t = int(msg.content["config"]["round"])
            if self.kill_round is not None and t == self.kill_round:
                raise KeyboardInterrupt("killed")
            if int(context.node_config["partition-id"]) == self.pid:
                raise self.exc("client crashed")
        return self.app(msg, context)


def test_a_failing_client_does_not_stop_the_run():
    clients = tiny_clients(3)
    cfg = FedDIPConfig(**{**CFG, "clients_per_round": 3})
    app = _Fail(make_client_app(tiny_model, lambda p, n: clients[p]), pid=1)
    hist = run_feddip(tiny_model, clients, None, cfg, client_app=app)
    assert [r["clients_received"] for r in hist.rounds] == [2] * cfg.rounds
    assert all(r["clients_sent"] == 3 for r in hist.rounds)


def test_slow_client_is_dropped_after_the_timeout():
    clients = tiny_clients(2)
    base = make_client_app(tiny_model, lambda p, n: clients[p])

    def slow(msg, context):
        if msg.metadata.message_type == "train" and context.node_config["partition-id"] == 0:
            time.sleep(0.6)
        return base(msg, context)

    cfg = FedDIPConfig(**{**CFG, "rounds": 2, "lambda_segments": 2, "prune_until": None})
    hist = run_feddip(tiny_model, clients, None, cfg, client_app=slow, timeout=0.5)
    assert [r["clients_received"] for r in hist.rounds] == [1, 1]


def test_killed_run_resumes_at_the_last_round(tmp_path):
    clients = tiny_clients(4)
    cfg = FedDIPConfig(**CFG)
    straight = run_feddip(tiny_model, clients, None, cfg)
    ck = tmp_path / "server.safetensors"
    app = _Fail(make_client_app(tiny_model, lambda p, n: clients[p]), kill_round=3)
    with pytest.raises(KeyboardInterrupt):
        run_feddip(tiny_model, clients, None, cfg, checkpoint=ck, client_app=app)
    assert ck.is_file()
    resumed = run_feddip(tiny_model, clients, None, cfg, checkpoint=ck)
    assert [r["round"] for r in resumed.rounds] == list(range(cfg.rounds))
    for k in straight.state:
        torch.testing.assert_close(resumed.state[k], straight.state[k], rtol=0, atol=0)
    again = run_feddip(tiny_model, clients, None, cfg, checkpoint=ck)  # finished: no-op
    assert len(again.rounds) == cfg.rounds


def test_bad_inputs():
    clients = tiny_clients(2)
    with pytest.raises(ValueError, match="clients_per_round"):
        run_feddip(tiny_model, clients, None, FedDIPConfig(**{**CFG, "clients_per_round": 3}))
    empty = [clients[0], (torch.zeros(0, 6), torch.zeros(0, dtype=torch.long))]
    with pytest.raises(ValueError, match="Client 1.*no training data"):
        run_feddip(tiny_model, empty, None, FedDIPConfig(**CFG))
    with pytest.raises(ValueError, match="at least one client"):
        run_feddip(tiny_model, [], None, FedDIPConfig(**CFG))
    with pytest.raises(ValueError, match="nothing to prune"):
        run_feddip(lambda: nn.Sequential(nn.Flatten()), clients, None, FedDIPConfig(**CFG))
    with pytest.raises(TypeError, match="FedDIPConfig"):
        run_feddip(tiny_model, clients, None, {"rounds": 3})


@pytest.mark.parametrize("options", [
    {"round0_mask": "client_erk"}, {"round0_mask": "dense"}, {"reprune_from": "dense"},
    {"prox_mu": 0.01}, {"lambda_constant": True}, {"momentum": 0.9},
])
def test_options_run_end_to_end(options):
    clients = tiny_clients(4)
    hist = run_feddip(tiny_model, clients, clients[0], FedDIPConfig(**{**CFG, **options}))
    n = sum(m.numel() for m in hist.mask.values())
    assert abs(hist.final["sparsity"] - 0.8) <= 1 / n
    assert all(torch.isfinite(v).all() for v in hist.state.values())
