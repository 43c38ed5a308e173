"""``dnnkit bench shortcut``: rendering, training and sphere-test throughput vs simple anchors."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.registry import register_bench
from dnnkit.core.training import fit
from dnnkit.shortcut.experiment import CUES, cnn
from dnnkit.shortcut.measures import sphere_flatness
from dnnkit.shortcut.protocol import make_wcst_ml
from dnnkit.shortcut.sources import DSpritesSource


class _PerItem(torch.utils.data.Dataset):
    """The official pipeline's structure: a Python ``__getitem__`` per image (uint8 -> float)."""

    def __init__(self, imgs: np.ndarray, labels: np.ndarray) -> None:
        self.imgs, self.labels = imgs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return (torch.from_numpy(self.imgs[i].astype(np.float32) / 255.0),
                torch.tensor(self.labels[i], dtype=torch.int64))


@register_bench("shortcut")
def bench(quick: bool = False) -> list[Timing]:
    n = 1000 if quick else 5000
    size = 64
    src = DSpritesSource(size=size)
    rng = np.random.default_rng(0)
    ids = src.draw([None] * 6, n, rng)
    pre = (src.take(ids) * 255).to(torch.uint8).numpy()
    labels = rng.integers(3, size=n)
    rep = 2 if quick else 3

    t_gen = time_call(lambda: src.take(ids), repeat=rep)
    t_read = time_call(lambda: torch.from_numpy(pre[rng.permutation(n)].astype(np.float32)
                                                / 255.0), repeat=rep)
    loader = torch.utils.data.DataLoader(_PerItem(pre, labels), batch_size=500, shuffle=True)
    t_item = time_call(lambda: [b for b in loader], repeat=rep)

    # training throughput: our fit on tensors vs a DataLoader over per-item reads (batch 500)
    splits = make_wcst_ml(DSpritesSource(size=32), CUES, n_train=n // 2, n_val=0, n_test=30,
                          seed=0)
    x, y = splits.train.x, splits.train.y
    torch.manual_seed(0)
    model = cnn(3)
    t_fit = time_call(lambda: fit(model, x, y, epochs=1, batch_size=64), repeat=rep, warmup=1)
    u8 = (x * 255).to(torch.uint8).numpy()
    dl = torch.utils.data.DataLoader(_PerItem(u8, y.numpy()), batch_size=64, shuffle=True)
    model2 = cnn(3)
    opt = torch.optim.Adam(model2.parameters(), 1e-3)

    def loop() -> None:
        model2.train()
        for xb, yb in dl:
            opt.zero_grad()
            nn.functional.cross_entropy(model2(xb), yb).backward()
            opt.step()

    t_loop = time_call(loop, repeat=rep, warmup=1)

    # sphere test: functional_call (model untouched) vs in-place perturb / restore
    m = 200 if quick else 1000
    data = (x[:m], y[:m])
    radii, dirs = (1.0, 4.0), 4
    t_sph = time_call(lambda: sphere_flatness(model, data, radii, n_dirs=dirs, seed=0),
                      repeat=rep, warmup=1)

    def inplace() -> None:
        params = [p for p in model.parameters()]
        saved = [p.detach().clone() for p in params]
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            model.eval()
            nn.functional.cross_entropy(model(data[0]), data[1])
            for _ in range(dirs):
                d = [torch.randn(p.shape, generator=g) for p in params]
                norm = torch.sqrt(sum((t**2).sum() for t in d))
                for r in radii:
                    for p, s, t in zip(params, saved, d):
                        p.copy_(s + r * t / norm)
                    nn.functional.cross_entropy(model(data[0]), data[1])
            for p, s in zip(params, saved):
                p.copy_(s)

    t_inp = time_call(inplace, repeat=rep, warmup=1)
    passes = 1 + len(radii) * dirs
    return [
        Timing(f"render {n} RGB {size}x{size} sprites", t_gen,
               "read a pre-rendered uint8 array (index + to float)", t_read,
               note=f"{n / t_gen:,.0f} images/s generated vs {n / t_read:,.0f} images/s read"),
        Timing(f"render {n} RGB {size}x{size} sprites", t_gen,
               "per-item __getitem__ DataLoader, batch 500 (official structure)", t_item,
               note=f"{n / t_item:,.0f} images/s through the per-item loader"),
        Timing(f"train 1 epoch on {len(y)} 32x32 images (fit, batch 64)", t_fit,
               "per-item DataLoader training loop, batch 64", t_loop,
               note=f"{len(y) / t_fit:,.0f} vs {len(y) / t_loop:,.0f} training images/s"),
        Timing(f"sphere test {passes} passes over {m} images", t_sph,
               "in-place perturb / restore of the parameters", t_inp,
               note=f"{passes / t_sph:,.1f} vs {passes / t_inp:,.1f} passes/s"),
    ]
