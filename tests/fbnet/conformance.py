"""Bad-input table of dnnkit.fbnet for the conformance suite (one valid cheap call per API)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn as nn

try:
    from dnnkit.core.validation import Example
except ImportError:  # until the declarative validation lands on main
    from dataclasses import dataclass, field

    @dataclass
    class Example:  # type: ignore[no-redef]
        fn: object
        args: tuple = ()
        kwargs: dict = field(default_factory=dict)
        raises: type | None = None
        param: str | None = None

from dnnkit.fbnet import (
    DNASConfig,
    LatencyTable,
    LayerSlot,
    Shift2d,
    ShiftConvBlock,
    SuperNet,
    dnas_search,
    fbnet_candidates,
    fbnet_loss,
    fbnet_macro,
    flops_table,
    measure_latency_table,
    shift2d,
    systolic_table,
)

_TMP = Path(tempfile.mkdtemp(prefix="dnnkit-conformance-fbnet-"))   # one per process (xdist)


def _lut_file() -> Path:
    p = _TMP / "fbnet_conformance_load.json"
    LatencyTable(["a"], torch.tensor([[2.0]])).save(p)
    return p


def _tiny():
    stem = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU())
    slots = [LayerSlot(4, 4, 1, (4, 4))]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    return stem, slots, head


def examples() -> list[Example]:
    cands = fbnet_candidates(only=["k3_e1", "skip"])
    stem, slots, head = _tiny()
    lut = LatencyTable(["k3_e1", "skip"], torch.tensor([[50.0, 5.0]]), "us")
    net = SuperNet(stem, slots, cands, head, lut)
    x = torch.randn(2, 9, 4, 4)
    xs, ys = torch.randn(10, 1, 4, 4), torch.arange(10) % 2
    logits, y = torch.randn(3, 2), torch.tensor([0, 1, 0])
    cfg = DNASConfig(epochs=2, warmup_epochs=1, batch_size=4, theta_batch_size=2)
    return [
        Example(shift2d, args=(x,), kwargs={"kernel_size": 3, "dilation": 1}),
        Example(shift2d, args=(x,), kwargs={"kernel_size": 4}, raises=ValueError,
                param="kernel_size"),
        Example(shift2d, args=(x,), kwargs={"dilation": 0}, raises=ValueError, param="dilation"),
        Example(shift2d, args=(x[0],), raises=ValueError, param="x"),
        Example(Shift2d, kwargs={"kernel_size": 3, "dilation": 1}),
        Example(Shift2d, kwargs={"kernel_size": -1}, raises=ValueError, param="kernel_size"),
        Example(ShiftConvBlock, args=(4, 4), kwargs={"stride": 1, "expansion": 1.0}),
        Example(ShiftConvBlock, args=(4, 4), kwargs={"expansion": 0.0}, raises=ValueError,
                param="expansion"),
        Example(LayerSlot, args=(4, 4, 1, (4, 4))),
        Example(LayerSlot, args=(4, 4, 0, (4, 4)), raises=ValueError, param="stride"),
        Example(fbnet_candidates, kwargs={"include_shift": True}),
        Example(fbnet_candidates, kwargs={"only": ["k3_e9"]}, raises=KeyError),
        Example(fbnet_macro, kwargs={"input_size": 32, "num_classes": 10}),
        Example(fbnet_macro, kwargs={"width_mult": 0.0}, raises=ValueError, param="width_mult"),
        Example(LatencyTable, args=(["a"], torch.tensor([[2.0]]))),
        Example(LatencyTable, args=(["a"], torch.tensor([[float("nan")]])), raises=ValueError,
                param="values"),
        Example(LatencyTable, args=(["a"], torch.tensor([[0.0]])), raises=ValueError,
                param="values"),
        Example(LatencyTable, args=(["a", "b"], torch.tensor([[1.0]])), raises=ValueError,
                param="values"),
        Example(flops_table, args=(cands, slots), kwargs={"unit": "MAC"}),
        Example(flops_table, args=(cands, slots), kwargs={"unit": "GMAC"}, raises=ValueError,
                param="unit"),
        Example(systolic_table, args=(cands, slots)),
        Example(measure_latency_table, args=(cands, slots), kwargs={"warmup": 0, "runs": 1}),
        Example(measure_latency_table, args=(cands, slots), kwargs={"reducer": "max"},
                raises=ValueError, param="reducer"),
        Example(SuperNet, args=(stem, slots, cands, head, lut)),
        Example(SuperNet, args=(stem, slots, cands, head,
                                LatencyTable(["k3_e1", "skip"], torch.ones(2, 2) * 5)),
                raises=ValueError, param="lut"),
        Example(net.forward, args=(torch.randn(2, 1, 4, 4),), kwargs={"tau": 1.0}),
        Example(net.forward, args=(torch.randn(2, 1, 4, 4),), kwargs={"tau": 0.0},
                raises=ValueError, param="tau"),
        Example(net.derive, kwargs={"mode": "sample", "n": 2, "seed": 0}),
        Example(net.derive, kwargs={"mode": "best"}, raises=ValueError, param="mode"),
        Example(net.build_child, args=(["skip"],)),
        Example(fbnet_loss, args=(logits, y, torch.tensor(100.0)), kwargs={"beta": 0.6}),
        Example(fbnet_loss, args=(logits, y, torch.tensor(100.0)), kwargs={"alpha": 0.0},
                raises=ValueError, param="alpha"),
        Example(fbnet_loss, args=(logits, y, torch.tensor(100.0)), kwargs={"beta": -1.0},
                raises=ValueError, param="beta"),
        Example(fbnet_loss, args=(logits, y, torch.tensor(0.9)), raises=ValueError,
                param="latency"),
        Example(DNASConfig, kwargs={"epochs": 3, "warmup_epochs": 1}),
        Example(DNASConfig, kwargs={"tau0": 0.0}, raises=ValueError, param="tau0"),
        Example(DNASConfig, kwargs={"tau_decay": 1.2}, raises=ValueError, param="tau_decay"),
        Example(DNASConfig, kwargs={"epochs": 3, "warmup_epochs": 3}, raises=ValueError,
                param="warmup_epochs"),
        Example(Shift2d(3).forward, args=(x,)),
        Example(ShiftConvBlock(9, 9).forward, args=(x,)),
        Example(ShiftConvBlock(9, 9).forward, args=(x[0],), raises=ValueError, param="x"),
        Example(slots[0].output_shape, kwargs={"batch": 2}),
        Example(lut.total, args=(["skip"],)),
        Example(lut.total, args=(["skip", "skip"],), raises=ValueError, param="arch"),
        Example(lut.total, args=(["skp"],), raises=KeyError),
        Example(lut.save, args=(str(_TMP / "fbnet_conformance_lut.json"),)),
        Example(LatencyTable.load, args=(str(_lut_file()),)),
        Example(LatencyTable.load, args=(str(_TMP / "missing_lut.json"),), raises=ValueError,
                param="path"),
        Example(net.mixture_weights, args=(1.0,), kwargs={"hard": True}),
        Example(net.mixture_weights, args=(1.0,), kwargs={"noise": torch.zeros(3, 2)},
                raises=ValueError, param="noise"),
        Example(cfg.tau, args=(3,)),
        Example(dnas_search, args=(net, xs, ys, cfg)),
        Example(dnas_search, args=(net, xs[:1], ys[:1], cfg), raises=ValueError, param="x"),
    ]
