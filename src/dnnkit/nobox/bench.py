"""Benchmark: surrogate training and crafting cost vs white-box torchattacks.PGD; fused decoders.

Rows (one process, same thread settings):

- training one digits surrogate (per group) and crafting one group, next to one
  ``torchattacks.PGD`` run on a victim CNN with the same number of gradient evaluations;
- the fused K-decoder stack vs K separate decoder modules (forward + backward);
- the 32x32 colour preset (train + craft per group);
- the paper's 224x224 setting: one Adam iteration measured on a small batch, extrapolated to the
  official schedule (15000 iterations on 20 images, 200 + 100 crafting iterations) per group
  and to 250 groups (5000 ImageNet images). No anchor exists for that row (NaN).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.models import small_cnn
from dnnkit.core.registry import register_bench
from dnnkit.nobox.attack import craft_nobox
from dnnkit.nobox.presets import preset
from dnnkit.nobox.surrogate import (
    NoBoxSurrogate,
    _FusedDecoders,
    _proto_width,
    _separate_decoder,
    train_surrogate,
)


def _pgd_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                 eps: float) -> tuple[str, float]:
    try:
        import torchattacks
    except ImportError:
        return "torchattacks.PGD (not installed)", math.nan
    atk = torchattacks.PGD(model, eps=eps, alpha=eps / 10, steps=steps, random_start=True)
    return f"torchattacks.PGD ({steps} steps)", time_call(lambda: atk(x, y), repeat=1, warmup=0)


def _group(shape: tuple[int, int, int], n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *shape, generator=g), torch.arange(n) % 2


@register_bench("nobox")
def bench(quick: bool = False) -> list[Timing]:
    rows: list[Timing] = []
    # --- digits preset: training and crafting per 20-image group vs white-box PGD
    scfg, acfg = preset("digits8")
    if quick:
        scfg = replace(scfg, iters=40)
        acfg = replace(acfg, stage1_iters=20, ila_iters=10)
    x, y = _group((1, 8, 8))
    t0 = time.perf_counter()
    sur = train_surrogate(x, y, scfg, seed=0)
    t_train = time.perf_counter() - t0
    torch.manual_seed(0)
    victim = small_cnn(1, 10, width=16, input_size=8).eval()
    name, t_pgd = _pgd_seconds(victim, x, y, scfg.n_iters, acfg.eps)
    rows.append(Timing(f"train prototypical surrogate, digits8, {scfg.n_iters} Adam its / group",
                       t_train, name, t_pgd,
                       note=f"{t_train / scfg.n_iters * 1e3:.2f} ms per iteration"))
    t_craft = time_call(lambda: craft_nobox(sur, x, y, acfg), repeat=1, warmup=0)
    steps = acfg.stage1_iters + acfg.ila_iters
    name, t_pgd = _pgd_seconds(victim, x, y, steps, acfg.eps)
    rows.append(Timing(f"craft 20 images, digits8, {acfg.stage1_iters} + {acfg.ila_iters} its",
                       t_craft, name, t_pgd,
                       note=f"{t_craft / len(x) * 1e3:.1f} ms per image"))
    # --- fused K-decoder stack vs K separate decoders (forward + backward)
    k, c_h, mid = scfg.n_decoders, scfg.feature_channels, _proto_width(scfg)
    torch.manual_seed(0)
    fused = _FusedDecoders(c_h, mid, 1, k)
    separate = torch.nn.ModuleList([_separate_decoder(c_h, mid, 1) for _ in range(k)])
    h = torch.randn(20, c_h, 8, 8)

    def run_fused() -> None:
        fused.zero_grad()
        fused(h).sum().backward()

    def run_separate() -> None:
        separate.zero_grad()
        torch.stack([d(h) for d in separate], 1).sum().backward()

    rep = 5 if quick else 30
    rows.append(Timing(f"{k} decoders fwd+bwd, 20 x {c_h}x8x8 features", time_call(run_fused,
                       repeat=rep), f"{k} separate decoder modules", time_call(run_separate,
                                                                               repeat=rep),
                       note="identical outputs (tests/nobox/test_surrogate.py)"))
    # --- colour 32x32 preset
    scfg_c, acfg_c = preset("colour32")
    iters_c = 20 if quick else 200
    scfg_c = replace(scfg_c, iters=iters_c)
    acfg_c = replace(acfg_c, stage1_iters=10 if quick else 100, ila_iters=5 if quick else 50)
    xc, yc = _group((3, 32, 32))
    t0 = time.perf_counter()
    sur_c = train_surrogate(xc, yc, scfg_c, seed=0)
    t_train_c = time.perf_counter() - t0
    torch.manual_seed(0)
    victim_c = small_cnn(3, 10, width=32, input_size=32).eval()
    name, t_pgd = _pgd_seconds(victim_c, xc, yc, iters_c, acfg_c.eps)
    rows.append(Timing(f"train prototypical surrogate, colour32, {iters_c} its / group",
                       t_train_c, name, t_pgd,
                       note=f"preset default {preset('colour32')[0].n_iters} its -> "
                            f"{t_train_c / iters_c * preset('colour32')[0].n_iters:.0f} s"))
    t_craft_c = time_call(lambda: craft_nobox(sur_c, xc, yc, acfg_c), repeat=1, warmup=0)
    steps_c = acfg_c.stage1_iters + acfg_c.ila_iters
    name, t_pgd = _pgd_seconds(victim_c, xc, yc, steps_c, acfg_c.eps)
    rows.append(Timing(f"craft 20 images, colour32, {steps_c} its", t_craft_c, name, t_pgd,
                       note=f"{t_craft_c / 20 * 1e3:.1f} ms per image"))
    # --- ImageNet-size extrapolation (official iteration counts)
    scfg_i, acfg_i = preset("imagenet224", warn=False)
    size = 32 if quick else 64          # measured small, scaled by area (224x224 takes minutes)
    nb = 2
    xi, yi = _group((3, size, size), nb)
    model = NoBoxSurrogate(3, scfg_i)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tgt = torch.rand(nb, scfg_i.n_decoders, 3, size // 4, size // 4)

    def one_iter() -> None:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(xi), tgt).backward()
        opt.step()

    per_image_iter = time_call(one_iter, repeat=1, warmup=0) / nb * (224 / size) ** 2
    # official schedule: prototypical training draws 2 images per iteration (we use all 20:
    # 10x more work per iteration), crafting 200 + 100 iterations on 20 images (ILA: encoder only)
    official = per_image_iter * (2 * scfg_i.n_iters
                                 + 20 * (acfg_i.stage1_iters + 0.5 * acfg_i.ila_iters) * 0.7)
    rows.append(Timing("imagenet224 group, official schedule (extrapolated)", official,
                       "no anchor (extrapolation)", math.nan,
                       note=f"{per_image_iter:.2f} s per image-iteration (measured at "
                            f"{size}x{size}, scaled by area); 250 groups (5000 images) = "
                            f"{official * 250 / 86400:.0f} CPU-days; full-batch training "
                            f"(our default) costs 10x the official training"))
    return rows
