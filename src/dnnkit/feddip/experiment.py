"""Reproduction: FedDIP vs FedAvg on digits over 10 clients (IID and Dirichlet non-IID).

Every run goes through Flower's strategy and ClientApp on the in-process grid (no Ray).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from dnnkit.core.data import load_digits_split
from dnnkit.core.models import mlp
from dnnkit.core.progress import track
from dnnkit.core.registry import RunContext, register
from dnnkit.core.report import Claim, Result, Table
from dnnkit.feddip.config import FedDIPConfig, sparsity_schedule
from dnnkit.feddip.data import partition_dirichlet, partition_iid, split_clients


@dataclass(frozen=True)
class Config:
    rounds: int = 150
    num_clients: int = 10
    clients_per_round: int = 5
    local_epochs: int = 3
    batch_size: int = 32
    lr: float = 0.1
    lr_decay: float = 0.998
    hidden: tuple[int, ...] = (256, 128)
    sparsities: tuple[float, ...] = (0.9, 0.95)
    partitions: tuple[str, ...] = ("iid", "dirichlet")
    alpha: float = 0.5
    init_sparsity: float = 0.5
    reconfig_interval: int = 5
    prune_until: int = 120
    lambda_segments: int = 20
    test_fraction: float = 0.2
    evaluate_every: int = 5
    max_gap_pp: float = 2.5  # the issue: 'within about 2 points' of FedAvg

    @classmethod
    def quick(cls) -> Config:
        # smoke scale: 40 rounds leave FedDIP a few points short of FedAvg, hence 5 pp
        return cls(rounds=40, lr=0.2, sparsities=(0.9,), partitions=("iid",), prune_until=20,
                   lambda_segments=10, max_gap_pp=5.0)


def _model_fn(hidden: tuple[int, ...]):
    return lambda: mlp(64, list(hidden), 10)


def _tail_accuracy(hist, k: int = 3) -> float:
    acc = [a for a in hist.series("accuracy") if not math.isnan(a)]
    return float(np.mean(acc[-k:]))


def _oracle_checks(state: dict[str, torch.Tensor], names: list[str], seed: int,
                   hidden: tuple[int, ...]) -> tuple[str, bool, float]:
    """Agreement with torch's global pruning and Flower's FedAvg on this run's weights."""
    from torch.nn.utils import prune

    from dnnkit.feddip.masks import global_magnitude_mask
    from dnnkit.feddip.server import fedavg

    model = mlp(64, list(hidden), 10)
    model.load_state_dict(state)
    mods = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    ours = global_magnitude_mask(state, names, 0.93)
    prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured,
                              amount=0.93)
    same = all(torch.equal(ours[n], m.weight_mask.bool()) for n, m in zip(names, mods))

    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.app.metadata import Metadata
    from flwr.serverapp.strategy import FedAvg

    from dnnkit.feddip.driver import quiet_flower

    g = torch.Generator().manual_seed(seed)
    states = [{k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in state.items()}
              for _ in range(5)]
    counts = [int(c) for c in torch.randint(20, 200, (5,), generator=g)]
    replies = [Message(content=RecordDict({"arrays": ArrayRecord(s), "metrics": MetricRecord(
        {"num-examples": c})}), metadata=Metadata(1, f"m{i}", i + 1, 0, "x", "1", time.time(),
                                                  60.0, "train"))
        for i, (s, c) in enumerate(zip(states, counts))]
    with quiet_flower():
        flwr_arrays, _ = FedAvg().aggregate_train(1, replies)
    theirs = flwr_arrays.to_torch_state_dict()
    mine = fedavg(states, counts)
    err = max(float((mine[k] - theirs[k]).abs().max()) for k in mine)
    return (f"global magnitude mask at s=0.93 on the final FedAvg weights "
            f"{'selects the same weights as' if same else 'DIFFERS from'} "
            f"torch.nn.utils.prune.global_unstructured; fedavg vs Flower FedAvg.aggregate_train "
            f"on 5 perturbed copies: max abs error {err:.1e}"), same, err


@register("feddip", paper="Long et al. 2023, FedDIP: Federated Learning with Extreme Dynamic "
          "Pruning and Incremental Regularization, IEEE ICDM (arXiv:2309.06805)",
          claim="FedDIP reaches 90-95% sparsity at about FedAvg's accuracy while cutting the "
                "downlink to the model's density", config=Config, num_threads=1)
def run(cfg: Config, ctx: RunContext) -> Result:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dnnkit.feddip.driver import run_feddip

    split = load_digits_split(test_fraction=cfg.test_fraction, seed=ctx.seed, flat=True)
    test = (split.x_test, split.y_test)
    base = FedDIPConfig(rounds=cfg.rounds, clients_per_round=cfg.clients_per_round,
                        local_epochs=cfg.local_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                        lr_decay=cfg.lr_decay, init_sparsity=cfg.init_sparsity,
                        reconfig_interval=cfg.reconfig_interval, prune_until=cfg.prune_until,
                        lambda_segments=cfg.lambda_segments, seed=ctx.seed)
    methods = [("FedAvg", base.replace(prune=False, regularize=False))]
    methods += [(f"FedDIP s={s:g}", base.replace(target_sparsity=s)) for s in cfg.sparsities]
    model_fn = _model_fn(cfg.hidden)
    runs: dict[tuple[str, str], dict] = {}
    jobs = [(p, name, fc) for p in cfg.partitions for name, fc in methods]
    for part, name, fcfg in track(jobs, description="feddip runs", enabled=ctx.progress):
        if part == "iid":
            parts = partition_iid(len(split.y_train), cfg.num_clients, seed=ctx.seed)
        else:
            parts = partition_dirichlet(split.y_train, cfg.num_clients, alpha=cfg.alpha,
                                        seed=ctx.seed)
        clients = split_clients(split.x_train, split.y_train, parts)
        torch.manual_seed(ctx.seed)  # every method starts from the same initial model
        t0 = time.perf_counter()
        hist = run_feddip(model_fn, clients, test, fcfg, evaluate_every=cfg.evaluate_every)
        runs[(part, name)] = {"hist": hist, "seconds": time.perf_counter() - t0, "cfg": fcfg}

    n_prunable = sum(v.numel() for k, v in runs[(cfg.partitions[0], "FedAvg")]["hist"]
                     .state.items() if k.endswith("weight"))
    rows, claims, metrics = [], [], {}
    for part in cfg.partitions:
        ref = runs[(part, "FedAvg")]["hist"]
        ref_acc = _tail_accuracy(ref)
        ref_down = ref.final["cum_down_bytes"]
        ref_total = ref_down + ref.final["cum_up_bytes"]
        ref_mbit = ref.final["cum_official_mbit"]
        for name, fcfg in methods:
            r = runs[(part, name)]
            h = r["hist"]
            acc = _tail_accuracy(h)
            down = h.final["cum_down_bytes"]
            up = h.final["cum_up_bytes"]
            masked_up = sum(rec["down_bytes"] * rec["clients_received"] / rec["clients_sent"]
                            for rec in h.rounds)
            row = {"accuracy": acc, "gap_pp": 100 * (ref_acc - acc),
                   "sparsity": h.final["sparsity"], "down_MB": down / 1e6, "up_MB": up / 1e6,
                   "down_ratio": down / ref_down, "total_ratio": (down + up) / ref_total,
                   "total_ratio_masked_upload": (down + masked_up) / ref_total,
                   "official_mbit": h.final["cum_official_mbit"],
                   "official_ratio": h.final["cum_official_mbit"] / ref_mbit,
                   "seconds": r["seconds"], "sec_per_round": r["seconds"] / cfg.rounds}
            metrics[f"{part}/{name}"] = row
            rows.append([part, name, round(acc, 4), round(row["gap_pp"], 2),
                         round(row["sparsity"], 5), round(row["down_MB"], 2),
                         round(row["up_MB"], 2), round(row["down_ratio"], 3),
                         round(row["total_ratio"], 3), round(row["total_ratio_masked_upload"], 3),
                         round(row["official_ratio"], 3), round(row["sec_per_round"], 3)])
            if name == "FedAvg":
                continue
            s = fcfg.target_sparsity
            claims.append(Claim.holds(
                f"{part} {name}: final sparsity = target", abs(h.final["sparsity"] - s)
                <= 1.0 / n_prunable + 1e-12, measured=round(h.final["sparsity"], 6),
                expected=f"{s} (to 1/{n_prunable})", paper=f"s_p = {s}"))
            claims.append(Claim.at_most(
                f"{part} {name}: accuracy loss vs FedAvg (pp)", row["gap_pp"], cfg.max_gap_pp,
                paper="similar accuracy (abstract); spec range 0-4 pp"))
            mean_density = float(np.mean([
                1 - (sparsity_schedule((t - 1) - (t - 1) % fcfg.reconfig_interval,
                                       fcfg.rounds, fcfg.init_sparsity, s,
                                       end=fcfg.pruning_end)
                     if t > 0 else fcfg.init_sparsity) for t in range(fcfg.rounds)]))
            claims.append(Claim.at_most(
                f"{part} {name}: downlink bytes / FedAvg", row["down_ratio"],
                mean_density + 1 / 32 + 0.01,
                paper="downlink = model density (+1 bit/weight mask here)"))
    figure = _figure(plt, ctx, cfg, runs, methods)
    oracle_text, same, err = _oracle_checks(runs[(cfg.partitions[0], "FedAvg")]["hist"].state,
                                            [k for k in runs[(cfg.partitions[0], "FedAvg")][
                                                "hist"].state if k.endswith("weight")], ctx.seed,
                                            cfg.hidden)
    claims.append(Claim.holds("global mask == torch global_unstructured", same))
    claims.append(Claim.at_most("fedavg vs Flower FedAvg max abs error", err, 1e-6))
    table = Table("Final accuracy (mean of the last 3 evaluations), sparsity and traffic",
                  ["partition", "method", "accuracy", "loss vs FedAvg (pp)", "sparsity",
                   "down MB", "up MB", "down / FedAvg", "total / FedAvg",
                   "total / FedAvg (masked upload)", "official Mbit / FedAvg", "s / round"],
                  rows)
    total_s = sum(r["seconds"] for r in runs.values())
    return Result(
        summary=("FedDIP (dynamic pruning with error feedback + incremental regularisation + "
                 "global magnitude re-pruning on a cubic schedule) against FedAvg on 10 digits "
                 "clients; every run uses Flower's strategy/ClientApp on the in-process grid."),
        setup=(f"sklearn digits ({len(split.y_train)} train / {len(split.y_test)} test), MLP "
               f"64-{'-'.join(map(str, cfg.hidden))}-10 (Linear weights prunable), "
               f"{cfg.num_clients} clients ({', '.join(cfg.partitions)}; Dirichlet alpha="
               f"{cfg.alpha}), {cfg.clients_per_round} per round, {cfg.rounds} rounds, "
               f"E={cfg.local_epochs}, B={cfg.batch_size}, lr {cfg.lr}*{cfg.lr_decay}^t, "
               f"wd 5e-4, s0={cfg.init_sparsity}, R={cfg.reconfig_interval}, target reached at "
               f"round {cfg.prune_until}, lambda 0 -> 5e-4 .. 1e-3 in {cfg.lambda_segments} "
               f"steps. Total training time {total_s:.0f} s."),
        claims=claims, metrics=metrics, tables=[table], figures=[figure],
        deviations=[
            ("CPU scale: digits + MLP instead of Fashion-MNIST/LeNet-5, CIFAR-10/AlexNet, "
             f"CIFAR-100/ResNet-18; {cfg.num_clients} clients x {cfg.clients_per_round} per round, "
             f"E={cfg.local_epochs} (code 5), "
             f"{cfg.rounds} rounds (README 1000)."),
            (f"The cubic schedule ends at round {cfg.prune_until} (prune_until) so the final "
             "sparsity equals the target exactly and the model is fine-tuned for the last "
             "rounds; the official code ends it at T and never quite reaches s_p."),
            ("Round-0 mask: one seeded ERK mask broadcast by the server (round0_mask="
             "'server_erk'); the code draws an independent ERK mask per client."),
            ("The paper's accuracy tables could not be read here (spec section 5); the claim "
             "checked is the qualitative 'similar accuracy at high sparsity'. Accuracy is the "
             "mean of the last 3 evaluations (every 5 rounds) to damp the 360-sample test noise."),
            ("Bytes: payload = 4 B per kept value + 1 bit per prunable weight (bitmask); dense "
             "FedAvg = 4 B per value. The official formula (Mbit, no index overhead) is also "
             "reported. Clients upload dense models (code); 'masked upload' is accounted "
             "analytically (same payload as the downlink; the global model is identical because "
             "the server masks the aggregate anyway)."),
        ],
        oracle=oracle_text)


def _figure(plt, ctx: RunContext, cfg: Config, runs: dict, methods: list) -> str:
    fig, axes = plt.subplots(1, len(cfg.partitions) + 1,
                             figsize=(4.2 * (len(cfg.partitions) + 1), 3.4))
    for ax, part in zip(axes, cfg.partitions):
        for name, _ in methods:
            h = runs[(part, name)]["hist"]
            pts = [(r["round"] + 1, r["accuracy"]) for r in h.rounds if "accuracy" in r]
            ax.plot(*zip(*pts), label=name)
        ax.set_title(f"test accuracy ({part})")
        ax.set_xlabel("round")
        ax.set_ylim(0.5, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[-1]
    part = cfg.partitions[0]
    for name, _ in methods[1:]:
        h = runs[(part, name)]["hist"]
        ax.plot([r["round"] + 1 for r in h.rounds], h.series("sparsity"), label=f"{name} global")
        ax.plot([r["round"] + 1 for r in h.rounds], h.series("scheduled_sparsity"), "--",
                label=f"{name} schedule s_t")
    ax.set_title("sparsity of the global model")
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.path("feddip_accuracy_sparsity.png"), dpi=110)
    plt.close(fig)
    return "feddip_accuracy_sparsity.png"
