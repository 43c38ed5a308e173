"""Slimmable ensemble encoders for flexible split DNNs, with run-time mode switching.

Paper: J. S. Assine, J. C. S. Santos Filho, E. Valle, M. Levorato, "Slimmable Encoders for
Flexible Split DNNs in Bandwidth and Resource Constrained IoT Systems", IEEE WoWMoM 2023,
arXiv:2306.12691. Slimmable layers: J. Yu, L. Yang, N. Xu, J. Yang, T. Huang, "Slimmable Neural
Networks", ICLR 2019; sandwich rule: J. Yu, T. Huang, "Universally Slimmable Networks", ICCV 2019.

A weak device runs the head of a network and sends a small quantized tensor to an edge server.
One set of weights serves every operating point (k ensemble members, b bits), so switching the
operating point is an integer change, not a model reload.

What it gives:

- :class:`SlimmableEnsembleEncoder` — N identically shaped members (the user's modules);
  ``forward(x, k)`` runs and combines only the first k (mean, sum, fixed or learned weights).
- :class:`BottleneckQuantizer` — min-max uniform per-tensor quantizer, 1..8 bits, straight-through
  gradient, bit-packed :class:`Payload` (``encode`` / ``decode``); ``mode="torchdistill"`` is
  identical to torchdistill's ``quantize_tensor``; constant tensors decode exactly.
- :class:`SplitModel` — ``device_side(x) -> Payload``, ``server_side(payload) -> output``,
  ``set_mode(k, bits)``; :func:`train_split` (sandwich rule over modes), :func:`profile_modes`
  (accuracy, bytes, latency per mode -> :class:`ModeStats`).
- :class:`BandwidthEstimator` (EMA) and :class:`ModeController` (best accuracy within the
  safety-scaled deadline), :func:`bandwidth_trace` and :func:`simulate_stream` (closed loop).
- :func:`read_mode_table` / :func:`read_bandwidth_trace` (CSV) and :func:`paper_mode_table`
  (the authors' 16 measured modes) to drive the controller with measured numbers.
- Slimmable building blocks: :class:`SlimmableConv2d`, :class:`SlimmableLinear`,
  :class:`SwitchableBatchNorm2d`, :func:`set_width`.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from dnnkit.slimsplit import SlimmableEnsembleEncoder, SplitModel
>>> torch.manual_seed(0) is not None
True
>>> enc = SlimmableEnsembleEncoder(lambda: nn.Conv2d(1, 1, 3, stride=2, padding=1), 4,
...                                example_input=torch.zeros(1, 1, 8, 8))
>>> model = SplitModel(enc, nn.Sequential(nn.Flatten(), nn.Linear(16, 10)))
>>> model.set_mode(2, 3)                      # two members, 3 bits: no reload
>>> p = model.device_side(torch.rand(1, 1, 8, 8))
>>> p.shape, p.bits, len(p.data), p.nbytes()  # 16 values x 3 bits = 6 bytes + 17-byte header
((1, 1, 4, 4), 3, 6, 23)
>>> model.server_side(p).shape
torch.Size([1, 10])
"""

from dnnkit.slimsplit.control import (
    BandwidthEstimator,
    ModeChoice,
    ModeController,
    StreamTrace,
    bandwidth_trace,
    simulate_stream,
)
from dnnkit.slimsplit.ensemble import SlimmableEnsembleEncoder
from dnnkit.slimsplit.io import paper_mode_table, read_bandwidth_trace, read_mode_table
from dnnkit.slimsplit.quantize import (
    BottleneckQuantizer,
    Payload,
    pack_bits,
    payload_nbytes,
    unpack_bits,
)
from dnnkit.slimsplit.slimmable import (
    SlimmableConv2d,
    SlimmableLinear,
    SwitchableBatchNorm2d,
    set_width,
)
from dnnkit.slimsplit.split import ModeStats, SplitModel, profile_modes, train_split

__all__ = [
    "SlimmableEnsembleEncoder",
    "BottleneckQuantizer",
    "Payload",
    "SplitModel",
    "train_split",
    "profile_modes",
    "ModeStats",
    "BandwidthEstimator",
    "ModeController",
    "ModeChoice",
    "bandwidth_trace",
    "simulate_stream",
    "StreamTrace",
    "SlimmableConv2d",
    "SlimmableLinear",
    "SwitchableBatchNorm2d",
    "set_width",
    "pack_bits",
    "unpack_bits",
    "payload_nbytes",
    "read_mode_table",
    "read_bandwidth_trace",
    "paper_mode_table",
]
