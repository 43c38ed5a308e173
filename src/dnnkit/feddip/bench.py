"""``dnnkit bench feddip``: time per round of FedDIP vs FedAvg in the same in-process driver,
bytes per round, and (when Ray is installed) the Flower simulation's start-up and per-round
cost for the same configuration."""

from __future__ import annotations

import statistics
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


def _overhead(clients, cfg: FedDIPConfig, fedavg_cfg: FedDIPConfig, repeats: int):
    """FedDIP and FedAvg runs alternated (order swapped every pair, so background load on a
    shared machine hits both alike); medians of CPU and wall time and of the per-pair
    ratios. Returns the medians and the last FedDIP and FedAvg histories."""
    from dnnkit.feddip.driver import run_feddip

    times: dict[str, list[tuple[float, float]]] = {"dip": [], "avg": []}
    hist = {}
    for r in range(repeats):
        order = ("dip", "avg") if r % 2 == 0 else ("avg", "dip")
        for name in order:
            c0, w0 = time.process_time(), time.perf_counter()
            hist[name] = run_feddip(_model, clients, None, cfg if name == "dip" else fedavg_cfg)
            times[name].append((time.process_time() - c0, time.perf_counter() - w0))
    med = statistics.median
    res = {f"{n}_{kind}": med(t[i] for t in times[n]) for n in times
           for i, kind in enumerate(("cpu", "wall"))}
    for i, kind in enumerate(("cpu", "wall")):
        res[f"ratio_{kind}"] = med(d[i] / a[i] for d, a in zip(times["dip"], times["avg"]))
    return res, hist["dip"], hist["avg"]


@register_bench("feddip")
def bench(quick: bool = False) -> list[Timing]:
    from dnnkit.feddip.driver import run_feddip
    from dnnkit.feddip.simulation import ray_available, run_flower_simulation

    torch.set_num_threads(1)
    rounds = 10 if quick else 40
    repeats = 2 if quick else 5
    clients, cfg = _setup(rounds)
    fedavg_cfg = cfg.replace(prune=False, regularize=False)
    run_feddip(_model, clients, None, cfg.replace(rounds=5, lambda_segments=5))  # warm-up
    run_feddip(_model, clients, None, fedavg_cfg.replace(rounds=5, lambda_segments=5))
    res, dip, avg = _overhead(clients, cfg, fedavg_cfg, repeats)
    out: list[Timing] = []
    ratio = res["ratio_cpu"]
    out.append(Timing(
        f"in-process round (digits MLP, 5 of 10 clients, E=1, {rounds} rounds, 1 thread, "
        "CPU s): FedDIP s_p=0.95", res["dip_cpu"] / rounds, "FedAvg, same driver",
        res["avg_cpu"] / rounds,
        note=f"FedDIP overhead ratio {ratio:.3f}x per round (goal <= 1.25x, issue 20; median "
             f"of {repeats} back-to-back pairs, CPU time); wall {res['ratio_wall']:.3f}x "
             f"({1e3 * res['dip_wall'] / rounds:.0f} vs {1e3 * res['avg_wall'] / rounds:.0f} "
             "ms per round)"))
    out.append(Timing("FedDIP / FedAvg time per round (CPU), as 'time' = the ratio; anchor = "
                      "the goal", ratio, "goal <= 1.25x (issue 20)", 1.25,
                      note=f"speedup >= 1 meets the goal; wall-time ratio "
                           f"{res['ratio_wall']:.3f}x"))
    t_dip = res["dip_wall"] / rounds
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
