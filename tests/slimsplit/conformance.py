"""Bad-input table of dnnkit.slimsplit for the conformance suite."""

from __future__ import annotations

import torch
from torch import nn

from dnnkit.core.validation import Example
from dnnkit.slimsplit import (
    BandwidthEstimator,
    BottleneckQuantizer,
    ModeController,
    ModeStats,
    Payload,
    SlimmableConv2d,
    SlimmableEnsembleEncoder,
    SlimmableLinear,
    SplitModel,
    SwitchableBatchNorm2d,
    bandwidth_trace,
    pack_bits,
    payload_nbytes,
    profile_modes,
    read_bandwidth_trace,
    read_mode_table,
    set_width,
    simulate_stream,
    train_split,
    unpack_bits,
)
from dnnkit.slimsplit.models import digits_decoder, digits_member, digits_split_model


def examples(tmp: str | None = None) -> list[Example]:
    import tempfile
    from pathlib import Path

    folder = Path(tmp or tempfile.mkdtemp(prefix="slimsplit-conf-"))
    modes_csv = folder / "modes.csv"
    modes_csv.write_text("k,bits,accuracy,payload_bytes,encoder_ms\n1,1,0.5,10,1.0\n")
    bw_csv = folder / "bw.csv"
    bw_csv.write_text("bytes_per_s\n1000\n")
    model = digits_split_model(seed=0)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    q = BottleneckQuantizer(2)
    z = torch.randn(1, 1, 4, 4)
    payload = q.encode(z)
    table = {(k, b): ModeStats(0.5 + 0.1 * b, 10 * b, 1.0 * k) for k in (1, 2) for b in (1, 2)}
    ctrl = ModeController(table)
    slim = nn.Sequential(SlimmableConv2d([1, 2], [2, 4], 3, width_mult_list=[0.5, 1.0]))
    member = digits_member
    return [
        Example(SlimmableConv2d, args=([1, 2], [2, 4], 3), kwargs={"width_mult_list": [0.5, 1.0]}),
        Example(SlimmableLinear, args=([1, 2], [2, 4]), kwargs={"width_mult_list": [0.5, 1.0]}),
        Example(SwitchableBatchNorm2d, args=([2, 4],), kwargs={"width_mult_list": [0.5, 1.0]}),
        Example(set_width, args=(slim, 0.5)),
        Example(SlimmableEnsembleEncoder, args=(member, 2),
                kwargs={"combine": "weighted", "weights": [1.0, 2.0],
                        "example_input": torch.zeros(1, 1, 8, 8)}),
        Example(BottleneckQuantizer, kwargs={"bits": 3, "mode": "torchdistill",
                                             "per_sample": True}),
        Example(q.encode, args=(z,), kwargs={"bits": 3}),
        Example(q.decode, args=(payload,)),
        Example(Payload.from_bytes, args=(payload.to_bytes(),)),
        Example(pack_bits, args=(torch.tensor([1, 2, 3], dtype=torch.uint8), 2)),
        Example(unpack_bits, args=(b"\x6c", 3, 2)),
        Example(payload_nbytes, args=((1, 1, 4, 4), 3), kwargs={"header": True}),
        Example(SplitModel, args=(model.encoder, digits_decoder(1)),
                kwargs={"bits_options": [1, 2], "quant_mode": "minmax"}),
        Example(model.device_side, args=(x[:1],)),
        Example(model.server_side, args=(model.device_side(x[:1]),)),
        Example(train_split, args=(model, x, y),
                kwargs={"epochs": 1, "batch_size": 4, "lr": 1e-3, "sandwich": True,
                        "modes": [(1, 1), (4, 4)], "seed": 0}),
        Example(profile_modes, args=(model, x, y),
                kwargs={"modes": [(1, 1)], "repeats": 1, "batch_size": 4}),
        Example(BandwidthEstimator, kwargs={"alpha": 0.4, "initial_Bps": 1e3}),
        Example(BandwidthEstimator().update, args=(100, 0.01)),
        Example(ModeController, args=(table,),
                kwargs={"safety": 0.8, "server_ms": 1.0, "required_modes": [(1, 1)]}),
        Example(ctrl.select, args=(1e3, 50.0)),
        Example(bandwidth_trace, args=(20,),
                kwargs={"high_Bps": 1e3, "low_Bps": 1e2, "period": 5, "noise": 0.1, "seed": 0}),
        Example(simulate_stream, args=(ctrl, [1e3, 5e2], 50.0),
                kwargs={"estimator": BandwidthEstimator(), "frame": None}),
        # hot paths that validate inline (declared with core.validation.declares)
        Example(model.encoder.set_mode, args=(2,)),
        Example(model.encoder.member_weights, args=(2,)),
        Example(model.encoder.forward, args=(x,), kwargs={"k": 2}),
        Example(q.forward, args=(z,), kwargs={"bits": 2}),
        Example(q.quantize, args=(z,), kwargs={"bits": 2, "per_sample": False}),
        Example(model.set_mode, args=(2, 2)),
        Example(model.forward, args=(x,), kwargs={"k": 1, "bits": 2}),
        Example(SlimmableConv2d([1, 2], [2, 4], 3, width_mult_list=[0.5, 1.0]).forward,
                args=(torch.zeros(1, 2, 5, 5),)),
        Example(SlimmableLinear([1, 2], [2, 4], width_mult_list=[0.5, 1.0]).forward,
                args=(torch.zeros(3, 2),)),
        Example(SwitchableBatchNorm2d([2, 4], width_mult_list=[0.5, 1.0]).forward,
                args=(torch.zeros(2, 4, 3, 3),)),
        Example(ctrl.predict_ms, args=((1, 2), 1e3)),
        Example(ctrl.predict_ms, args=((3, 3), 1e3), raises=KeyError, param="mode"),
        Example(ModeStats, args=(0.9, 10, 1.0)),
        Example(read_mode_table, args=(modes_csv,)),
        Example(read_bandwidth_trace, args=(bw_csv,)),
        # hand-written bad cases (cross-parameter rules and values the declarations cannot see)
        Example(model.set_mode, args=(5, 1), raises=ValueError, param="k"),
        Example(model.set_mode, args=(1, 6), raises=ValueError, param="bits"),
        Example(set_width, args=(slim, 0.25), raises=ValueError, param="width_mult"),
        Example(model.server_side, args=(q.encode(torch.randn(1, 2, 4, 4)),), raises=ValueError,
                param="payload"),
        Example(Payload.from_bytes, args=(payload.to_bytes()[:-1],), raises=ValueError,
                param="blob"),
        Example(SlimmableEnsembleEncoder, args=([nn.Conv2d(1, 2, 3), nn.Conv2d(1, 3, 3)],),
                kwargs={"example_input": torch.zeros(1, 1, 5, 5)}, raises=ValueError,
                param="members"),
        Example(model.device_side, args=(torch.full((1, 1, 8, 8), float("nan")),),
                raises=ValueError, param="x"),
        Example(ModeController, args=({},), raises=ValueError, param="table"),
        Example(ModeController, args=(table,), kwargs={"required_modes": [(3, 3)]},
                raises=ValueError, param="table"),
        Example(ctrl.select, args=(0.0, 50.0), raises=ValueError, param="bandwidth_Bps"),
        Example(ctrl.select, args=(1e3, 0.0), raises=ValueError, param="deadline_ms"),
        Example(train_split, args=(model, x, y[:3]), raises=ValueError, param="y"),
    ]
