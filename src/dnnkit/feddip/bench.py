"""``dnnkit bench feddip``: time per round of FedDIP vs FedAvg in the same in-process driver,
bytes per round, and (when Ray is installed) the Flower simulation's start-up and per-round
cost for the same configuration."""

from __future__ import annotations

import time

import torch

from dnnkit.core.benchmark import Timing
from dnnkit.core.data import load_digits_split
from dnnkit.core.models import mlp
from dnnkit.core.registry import register_bench
from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.data import partition_iid, split_clients


def _setup(rounds: int):
    split = load_digits_split(test_fraction=0.2, seed=0, flat=True)
    clients = split_clients(split.x_train, split.y_train,
                            partition_iid(len(split.y_train), 10, seed=0))
    cfg = FedDIPConfig(rounds=rounds, clients_per_round=5, local_epochs=1, batch_size=32,
                       target_sparsity=0.95, reconfig_interval=5, lambda_segments=min(20, rounds))
    return clients, cfg


def _model():
    return mlp(64, [256, 128], 10)


@register_bench("feddip")
def bench(quick: bool = False) -> list[Timing]:
    from dnnkit.feddip.driver import run_feddip
    from dnnkit.feddip.simulation import ray_available, run_flower_simulation

    torch.set_num_threads(1)
    rounds = 10 if quick else 40
    clients, cfg = _setup(rounds)
    fedavg_cfg = cfg.replace(prune=False, regularize=False)
    run_feddip(_model, clients, None, cfg.replace(rounds=5, lambda_segments=5))  # warm-up
    out: list[Timing] = []
    t0 = time.perf_counter()
    dip = run_feddip(_model, clients, None, cfg)
    t_dip = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    avg = run_feddip(_model, clients, None, fedavg_cfg)
    t_avg = (time.perf_counter() - t0) / rounds
    out.append(Timing("in-process round (digits MLP, 5 of 10 clients, E=1): FedDIP s_p=0.95",
                      t_dip, "FedAvg, same driver", t_avg,
                      note=f"FedDIP overhead {100 * (t_dip / t_avg - 1):+.0f}% per round"))
    down = dip.final["cum_down_bytes"] / avg.final["cum_down_bytes"]
    total = ((dip.final["cum_down_bytes"] + dip.final["cum_up_bytes"])
             / (avg.final["cum_down_bytes"] + avg.final["cum_up_bytes"]))
    last = dip.rounds[-1]["down_bytes"] / avg.rounds[-1]["down_bytes"]
    out.append(Timing("bytes per round (FedDIP / FedAvg), as 'time' = bytes ratio", down,
                      "FedAvg bytes", 1.0,
                      note=f"downlink {down:.3f}, total with dense upload {total:.3f}, "
                           f"last-round downlink {last:.3f} over {rounds} rounds"))
    if quick or not ray_available():
        why = "quick mode" if quick else "Ray not installed: pip install 'flwr[simulation]'"
        out[0].note += f"; Flower simulation row skipped ({why})"
        return out
    times = {}
    for n in (2, 6):
        _, c = _setup(n)
        t0 = time.perf_counter()
        run_flower_simulation(_model, clients, c.replace(lambda_segments=n))
        times[n] = time.perf_counter() - t0
    per_round = (times[6] - times[2]) / 4
    startup = times[2] - 2 * per_round
    out.append(Timing("Flower simulation per round (Ray, 10 virtual SuperNodes)", per_round,
                      "in-process driver per round", t_dip,
                      note=f"start-up {startup:.1f} s (Ray + ServerApp), measured from 2 and "
                           "6-round runs"))
    return out
