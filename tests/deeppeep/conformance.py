"""Bad-input table of dnnkit.deeppeep for the project's conformance suite."""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from dnnkit.core.validation import Example
from dnnkit.deeppeep import (
    BlockGuess,
    LatencyModel,
    Trace,
    TraceEvent,
    capture_trace,
    deeppeep,
    ground_truth_blocks,
    harden_depthwise,
    identify_blocks,
    infer_hyperparameters,
    layer_table,
    profile_latency_model,
    random_compact_cnn,
    score,
    secure_mobilenet_v1,
)

SHAPE = (2, 3, 8, 8)
_TMP = Path(tempfile.mkdtemp(prefix="dnnkit-conformance-deeppeep-"))


def _toy_lm() -> LatencyModel:
    coef = {c: [20.0, 1e-3, 1e-3] for c in ("conv1", "gconv1", "conv3", "dw3", "gconv3")}
    coef.update({e: [3.0, 3e-4] for e in ("batch_norm", "relu", "hardtanh", "add", "cat")})
    return LatencyModel(batch=2, coef=coef)


def _trace() -> Trace:
    ev = [TraceEvent("aten::conv2d", 50.0, "aten::mkldnn_convolution"),
          TraceEvent("aten::batch_norm", 5.0), TraceEvent("aten::relu_", 3.0),
          TraceEvent("aten::linear", 4.0)]
    return Trace(ev, "kernel", SHAPE, 3, 1, "min", 0.0, False)


def examples() -> list[Example]:
    model = random_compact_cnn(0, 2, channels=(16,))
    lm, tr = _toy_lm(), _trace()
    blocks = [BlockGuess("standard", {"out_channels": 16}, 1.0, (0,), ("std3",))]
    saved = _TMP / "saved.json"
    lm.save(saved)
    tiny = {"batch": 2, "channels": (8, 16), "sizes": (4,), "samples_per_class": 3}
    return [
        Example(capture_trace, args=(model, SHAPE), kwargs={"repeats": 3}),
        Example(capture_trace, args=(model, (2, 5, 8, 8)), kwargs={"repeats": 3},
                raises=ValueError, param="input_shape"),
        Example(capture_trace, args=(nn.Conv2d(3, 4, 3, device="meta"), SHAPE),
                kwargs={"repeats": 3}, raises=ValueError, param="model"),
        Example(profile_latency_model, args=(tiny,), kwargs={"repeats": 3}),
        Example(identify_blocks, args=(tr, lm), kwargs={"input_shape": SHAPE}),
        Example(identify_blocks, args=(tr.timing_only(),), raises=ValueError,
                param="latency_model"),
        Example(infer_hyperparameters, args=(tr, blocks, lm, SHAPE)),
        Example(infer_hyperparameters, args=(tr, "blocks", lm, SHAPE), raises=TypeError,
                param="blocks"),
        Example(deeppeep, args=(model, SHAPE, lm), kwargs={"repeats": 3}),
        Example(ground_truth_blocks, args=(model, SHAPE)),
        Example(ground_truth_blocks, args=(model, (2, 4, 8, 8)), raises=ValueError,
                param="input_shape"),
        Example(layer_table, args=(model, SHAPE)),
        Example(score, args=(blocks, blocks)),
        Example(BlockGuess, args=("dwsep", {"out_channels": 16}, 0.5, (1, 2), ("dw3", "pw")),
                kwargs={"path": "features.1"}),
        Example(BlockGuess, args=("mystery",), raises=ValueError, param="block_type"),
        Example(TraceEvent, args=("aten::conv2d", 50.0),
                kwargs={"kernel": "aten::mkldnn_convolution", "cv": 0.1, "kind": "conv"}),
        Example(Trace, args=(tr.events, "kernel", SHAPE, 3, 1, "min", 0.0, False),
                kwargs={"meta": {"num_threads": 1}}),
        Example(LatencyModel, args=(2, lm.coef),
                kwargs={"kernels": {}, "meta": {}, "fit_error": {}, "samples": 10,
                        "profile_s": 1.0}),
        Example(lm.conv_us, args=(3, 16, 16, 16, 8), kwargs={"stride": 2}),
        Example(lm.conv_us, args=(3, 16, 16, 3, 8), raises=ValueError, param="groups"),
        Example(lm.elementwise_us, args=("relu", 1000)),
        Example(lm.predict, args=("conv",),
                kwargs={"k": 1, "cin": 8, "cout": 16, "groups": 1, "h": 8, "stride": 1}),
        Example(lm.predict, args=("add",), kwargs={"numel": 100}),
        Example(lm.predict, args=("add",), kwargs={"n": 100}, raises=TypeError, param="shape"),
        Example(lm.kernel_ok, args=("conv3", 1, "aten::mkldnn_convolution")),
        Example(lm.compatible, args=({"torch": "0"},), kwargs={"batch": 2}),
        Example(lm.warn_if_incompatible, args=({},), kwargs={"batch": 2}),
        Example(LatencyModel.from_dict, args=(lm.to_dict(),)),
        Example(LatencyModel.from_dict, args=({"batch": 2},), raises=KeyError, param="d"),
        Example(LatencyModel.from_dict, args=({"batch": 2, "coef": [1.0]},), raises=ValueError,
                param="d"),
        Example(lm.save, args=(_TMP / "lm.json",)),
        Example(LatencyModel.load, args=(saved,)),
        Example(random_compact_cnn, args=(0,), kwargs={"n_blocks": 2}),
        Example(random_compact_cnn, args=(0,), kwargs={"channels": (18,)}, raises=ValueError,
                param="channels"),
        Example(secure_mobilenet_v1, args=(0.25,), kwargs={"group_width": 8}),
        Example(harden_depthwise, args=(model,), kwargs={"group_width": 4}),
    ]
